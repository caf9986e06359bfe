"""Miniature datasets written with Pillow, reusable by any test (import as ``from data_fixtures import ...``).

``make_market_tree`` writes a Market-1501 layout whose content is known exactly (see MINI_MARKET): images are
solid colours derived from (pid, camera), so tests can also check decoding.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = (16, 32)  # (width, height) of every generated image: tiny, fast to write and read

# pid -> cameras (1-based) with one image each, per split; 0 = distractors, -1 = junk
MINI_MARKET = {
    "bounding_box_train": {2: [1, 2, 3], 4: [1, 1, 2], 6: [2, 3], 8: [1], -1: [1, 2]},
    "query": {1: [1, 2], 3: [1], 5: [3], -1: [1]},
    "bounding_box_test": {1: [1, 2, 3], 3: [2, 2], 5: [3], 0: [1, 2], -1: [3]},
}
MINI_MARKET_COUNTS = {  # what build_dataset must return: (images, ids, cameras)
    "train": (9, 4, 3),
    "query": (4, 3, 3),
    "gallery": (8, 4, 3),
}


def colour(pid: int, camera: int) -> tuple[int, int, int]:
    return ((37 * pid) % 256, (91 * camera) % 256, (pid * camera * 13 + 50) % 256)


def write_image(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = IMAGE_SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, quality=95)
    return path


def market_name(pid: int, camera: int, frame: int) -> str:
    pid_text = "-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_text}_c{camera}s1_{frame:06d}_01.jpg"


def make_market_tree(root: Path, *, bad_name: bool = False, empty_split: str | None = None,
                     corrupt: bool = False, truncated: bool = False, extra_files: bool = True) -> Path:
    """Write MINI_MARKET under ``root`` and return ``root``.

    bad_name: adds ``bounding_box_train/not_a_market_name.jpg``; empty_split: a folder (e.g. ``"query"``)
    left without images; corrupt: adds ``0002_c1s1_900000_01.jpg`` holding random bytes; truncated: adds
    ``0004_c2s1_900001_01.jpg`` cut to half its length; extra_files: adds a ``Thumbs.db`` that must be
    ignored.
    """
    for split, ids in MINI_MARKET.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        if split == empty_split:
            continue
        for pid, cameras in ids.items():
            for frame, camera in enumerate(cameras):
                write_image(root / split / market_name(pid, camera, frame), colour(pid, camera))
        if extra_files:
            (root / split / "Thumbs.db").write_bytes(b"not an image")
    if bad_name:
        write_image(root / "bounding_box_train" / "not_a_market_name.jpg", (1, 2, 3))
    if corrupt:
        (root / "bounding_box_train" / corrupt_name()).write_bytes(np.random.default_rng(0).bytes(500))
    if truncated:
        whole = write_image(root / "bounding_box_train" / truncated_name(), (9, 9, 9), size=(64, 128))
        data = whole.read_bytes()
        whole.write_bytes(data[: len(data) // 2])
    return root


def corrupt_name() -> str:
    return market_name(2, 1, 900000)


def truncated_name() -> str:
    return market_name(4, 2, 900001)


def make_folder_tree(root: Path, layout: dict[str, dict[str, list[str]]]) -> Path:
    """``layout[split][pid folder] = [file names]``; an empty list makes an empty identity folder."""
    for split, ids in layout.items():
        for pid_name, names in ids.items():
            (root / split / pid_name).mkdir(parents=True, exist_ok=True)
            for index, name in enumerate(names):
                write_image(root / split / pid_name / name, ((index * 40) % 256, len(pid_name) * 30, 7))
    return root


def make_viper_tree(root: Path, num_ids: int = 5) -> Path:
    for index in range(num_ids):
        write_image(root / "cam_a" / f"{index:03d}_45.bmp", colour(index, 1))
        write_image(root / "cam_b" / f"{index:03d}_90.bmp", colour(index, 2))
    return root


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write a uint8 array as an IDX file (torchvision's MNIST raw format)."""
    magic = 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_mnist_raw(raw_dir: Path, train_per_class: int = 12, test_per_class: int = 12,
                   compress: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write the four MNIST raw files with random 28x28 digits; returns (train_labels, test_labels)."""
    rng = np.random.default_rng(seed)
    labels = {}
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels[prefix] = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        images = rng.integers(0, 256, size=(len(labels[prefix]), 28, 28), dtype=np.uint8)
        write_idx(raw_dir / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw_dir / f"{prefix}-labels-idx1-ubyte", labels[prefix], compress)
    return labels["train"], labels["t10k"]
