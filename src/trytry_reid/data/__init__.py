"""Datasets as lists of (path, pid, camid) records, image decoding, P x K sampling, transforms, validation."""

from trytry_reid.data.batch_augment import BatchPhotometric
from trytry_reid.data.datasets import DATASETS, DatasetError, Record, Splits, build_dataset
from trytry_reid.data.images import ImageDataset, ImageReadError, read_image, relabel
from trytry_reid.data.sampler import PKSampler
from trytry_reid.data.transforms import build_test_transform, build_train_transform
from trytry_reid.data.validate import apply_bad_image_policy, check_identities, find_bad_images

__all__ = [
    "BatchPhotometric", "DATASETS", "DatasetError", "ImageDataset", "ImageReadError", "PKSampler",
    "Record", "Splits", "apply_bad_image_policy", "build_dataset", "build_test_transform",
    "build_train_transform", "check_identities", "find_bad_images", "read_image", "relabel",
]
