"""Datasets as lists of (path, pid, camid) records, image decoding, P x K sampling, transforms, validation."""

from .batch_augment import BatchPhotometric
from .datasets import DATASETS, DatasetError, Record, Splits, build_dataset
from .images import ImageDataset, ImageReadError, read_image, relabel
from .sampler import PKSampler
from .transforms import build_test_transform, build_train_transform
from .validate import apply_bad_image_policy, check_identities, find_bad_images

__all__ = [
    "BatchPhotometric", "DATASETS", "DatasetError", "ImageDataset", "ImageReadError", "PKSampler",
    "Record", "Splits", "apply_bad_image_policy", "build_dataset", "build_test_transform",
    "build_train_transform", "check_identities", "find_bad_images", "read_image", "relabel",
]
