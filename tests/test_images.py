"""Image decoding fails fast with the file's name; the Dataset returns (tensor, label, camid, index)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from trytry_reid.data import ImageDataset, ImageReadError, Record, read_image, relabel

from data_fixtures import colour, corrupt_name, make_market_tree, truncated_name, write_image


def test_read_image_gives_rgb_pixels(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((9, 8), 77, dtype=np.uint8)).save(grey)
    image = read_image(str(grey))
    assert image.mode == "RGB" and image.size == (8, 9)
    assert np.asarray(image).tolist() == [[[77, 77, 77]] * 8] * 9
    bmp = write_image(tmp_path / "x.bmp", (10, 20, 30))
    assert np.asarray(read_image(str(bmp)))[0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("make", ["corrupt", "truncated", "text", "missing"])
def test_bad_files_raise_naming_the_file(tmp_path, make):
    root = make_market_tree(tmp_path / "m", corrupt=True, truncated=True)
    paths = {"corrupt": root / "bounding_box_train" / corrupt_name(),
             "truncated": root / "bounding_box_train" / truncated_name(),
             "text": root / "bounding_box_train" / "Thumbs.db",
             "missing": root / "nothing.jpg"}
    with pytest.raises(ImageReadError, match=str(paths[make])) as info:
        read_image(str(paths[make]))
    assert isinstance(info.value, OSError) and info.value.path == str(paths[make])


def test_error_survives_a_worker_round_trip():
    error = ImageReadError("cannot read image 'a.jpg': broken", "a.jpg")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)
    assert str(ImageReadError(str(error))) == str(error)  # how DataLoader workers re-raise it


def test_dataset_items_use_labels_or_pids(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", colour(i, 1), size=(8, 11)) for i in range(3)]
    records = [Record(str(p), pid, cam) for p, pid, cam in zip(paths, [12, 30, 12], [0, 2, 1])]
    to_tensor = lambda image: torch.from_numpy(np.array(image)).permute(2, 0, 1)  # noqa: E731
    image, label, camid, index = ImageDataset(records, to_tensor)[1]
    assert (label, camid, index) == (30, 2, 1)
    assert image.shape == (3, 11, 8) and image[:, 0, 0].tolist() == list(colour(1, 1))
    relabelled = ImageDataset(records, to_tensor, labels=[0, 1, 0])
    assert [relabelled[i][1] for i in range(3)] == [0, 1, 0] and len(relabelled) == 3
    with pytest.raises(ValueError, match="2 labels for 3 records"):
        ImageDataset(records, to_tensor, labels=[0, 1])


def test_dataset_raises_for_a_corrupt_record(tmp_path):
    root = make_market_tree(tmp_path / "m", corrupt=True)
    bad = Record(str(root / "bounding_box_train" / corrupt_name()), 2, 0)
    with pytest.raises(ImageReadError, match=corrupt_name()):
        ImageDataset([bad], lambda image: image)[0]


def test_relabel_maps_sorted_pids_to_consecutive_labels():
    records = [Record("a", 42, 0), Record("b", 7, 1), Record("c", 42, 2), Record("d", 1000, 0)]
    labels, mapping = relabel(records)
    assert mapping == {7: 0, 42: 1, 1000: 2}
    assert labels == [1, 0, 1, 2]


def test_a_worker_process_reports_the_bad_file_instead_of_hanging(tmp_path):
    root = make_market_tree(tmp_path / "m", truncated=True)
    bad = Record(str(root / "bounding_box_train" / truncated_name()), 4, 1)
    loader = torch.utils.data.DataLoader(ImageDataset([bad], lambda image: image), num_workers=1,
                                         collate_fn=lambda items: items, timeout=60)
    with pytest.raises(ImageReadError, match=truncated_name()):
        next(iter(loader))
