"""Digit datasets: IDX parsing, the PNG cache (content, reuse, atomicity) and the documented split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trytry_reid.data import DatasetError, build_dataset
from trytry_reid.data import digits as digit_sets

from conftest import MNIST5K, require
from data_fixtures import make_mnist_raw, write_idx


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_read_idx_round_trip_and_errors(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (False, True):
        path = write_idx(tmp_path / f"x{compress}", array, compress)
        np.testing.assert_array_equal(digit_sets.read_idx(path, 3), array)
    labels = write_idx(tmp_path / "labels", np.arange(20, dtype=np.uint8))
    with pytest.raises(digit_sets.DigitDataError, match=r"labels.*magic 0x00000801, expected 0x00000803"):
        digit_sets.read_idx(labels, 3)
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(digit_sets.DigitDataError, match=r"shape \(20,\), but 19 bytes"):
        digit_sets.read_idx(labels, 1)


def test_mnist_pngs_hold_the_source_pixels_and_split_per_class(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    train_labels, test_labels = make_mnist_raw(raw, train_per_class=3, test_per_class=12, compress=True)
    splits = build_dataset("mnist", str(tmp_path / "data"))
    assert [r.pid for r in splits.train] == train_labels.tolist()  # pid = the digit, file order
    images = digit_sets.read_idx(raw / "train-images-idx3-ubyte.gz", 3)
    np.testing.assert_array_equal(pixels(splits.train[5].path), images[5])
    assert Counter(r.pid for r in splits.query) == {pid: 10 for pid in range(10)}
    assert Counter(r.pid for r in splits.gallery) == {pid: 2 for pid in range(10)}
    assert {r.camid for r in splits.train + splits.query} == {0} and {r.camid for r in splits.gallery} == {1}
    test_images = digit_sets.read_idx(raw / "t10k-images-idx3-ubyte.gz", 3)
    index = int(Path(splits.query[0].path).stem.split("_")[0])
    np.testing.assert_array_equal(pixels(splits.query[0].path), test_images[index])
    assert test_labels[index] == splits.query[0].pid
    assert not {r.path for r in splits.query} & {r.path for r in splits.gallery}


def test_mnist_accepts_the_raw_folder_and_reuses_the_cache(tmp_path):
    make_mnist_raw(tmp_path / "MNIST" / "raw", train_per_class=2, test_per_class=11)
    first = build_dataset("mnist", str(tmp_path))
    again = build_dataset("mnist", str(tmp_path / "MNIST" / "raw"))
    assert first == again
    folder = Path(first.train[0].path).parents[1]
    assert folder.parent == digit_sets.cache_root() and folder.name.startswith("mnist-")
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".mnist-")]  # no scratch left


def test_different_sources_get_different_cache_folders(tmp_path):
    make_mnist_raw(tmp_path / "a", train_per_class=2, test_per_class=11, seed=1)
    make_mnist_raw(tmp_path / "b", train_per_class=2, test_per_class=11, seed=2)
    path_a = build_dataset("mnist", str(tmp_path / "a")).train[0].path
    path_b = build_dataset("mnist", str(tmp_path / "b")).train[0].path
    assert Path(path_a).parents[1] != Path(path_b).parents[1]


def test_a_crash_while_writing_leaves_no_cache(tmp_path, monkeypatch):
    make_mnist_raw(tmp_path, train_per_class=2, test_per_class=11, seed=3)
    calls = []

    def crash_on_second_part(folder, part, images, labels):
        calls.append(part)
        if len(calls) == 2:
            raise OSError("disk full")
        original(folder, part, images, labels)

    original = digit_sets.write_pngs
    digit_sets.cache_root().mkdir(parents=True, exist_ok=True)
    before = set(digit_sets.cache_root().iterdir())
    with monkeypatch.context() as patch, pytest.raises(OSError, match="disk full"):
        patch.setattr(digit_sets, "write_pngs", crash_on_second_part)
        build_dataset("mnist", str(tmp_path))
    assert calls == ["train", "test"]
    assert set(digit_sets.cache_root().iterdir()) == before  # neither a half cache nor a scratch folder
    splits = build_dataset("mnist", str(tmp_path))
    assert all(Path(r.path).is_file() for r in splits.train + splits.query + splits.gallery)


def test_mnist_missing_files_are_named(tmp_path):
    make_mnist_raw(tmp_path / "MNIST" / "raw", train_per_class=2, test_per_class=11)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.*MNIST/raw/"):
        build_dataset("mnist", str(tmp_path))
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset("mnist", str(tmp_path / "absent"))


def test_sklearn_digits_split_is_seeded_and_per_class():
    splits = build_dataset("digits", None)
    sizes = Counter(r.pid for r in splits.train + splits.query + splits.gallery)
    train = Counter(r.pid for r in splits.train)
    assert sum(sizes.values()) == 1797
    assert all(train[pid] == round(0.6 * sizes[pid]) for pid in sizes)
    assert Counter(r.pid for r in splits.query) == {pid: 10 for pid in range(10)}
    assert build_dataset("digits", None) == splits
    assert pixels(splits.train[0].path).shape == (8, 8)


def test_split_per_class_is_a_partition():
    labels = np.repeat(np.arange(4), 7)
    left, right = digit_sets.split_per_class(labels, 3, seed=5)
    assert sorted(np.concatenate([left, right]).tolist()) == list(range(28))
    assert np.bincount(labels[left]).tolist() == [3, 3, 3, 3]
    again, _ = digit_sets.split_per_class(labels, 3, seed=5)
    other, _ = digit_sets.split_per_class(labels, 3, seed=6)
    assert again.tolist() == left.tolist() and other.tolist() != left.tolist()
    with pytest.raises(digit_sets.DigitDataError, match="class 0 has 7"):
        digit_sets.split_per_class(labels, 7, seed=0)


def test_real_mnist5k_counts():
    splits = build_dataset("mnist", str(require(MNIST5K)))
    assert (len(splits.train), len(splits.query) + len(splits.gallery)) == (4000, 1000)
    assert (len(splits.query), len(splits.gallery)) == (100, 900)
