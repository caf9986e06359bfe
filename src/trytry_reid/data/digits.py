"""Digit datasets (scikit-learn's 8x8 digits, MNIST raw IDX files) materialised as PNG files.

Every record of the toolkit points at a real image file (ranking figures, feature extraction and serving all
work on paths), so the digit arrays are written ONCE as grey PNGs into a cache folder:
``$TRYTRY_REID_CACHE`` (default ``~/.cache/trytry_reid``) / ``<dataset>-<hash of the source arrays>/``.
The folder is written under a temporary name and renamed into place, so a crash never leaves half a cache.

The split is closed-set, like a classification demo turned into retrieval:

* ``digits``: per class, a seeded 60/40 split of the 1,797 images into train and test parts;
* ``mnist``: the ``train-*`` files are the train part, the ``t10k-*`` files the test part;
* the test part is split per class (seed ``SPLIT_SEED``) into query (``QUERY_PER_CLASS`` images per class)
  and gallery (the rest).

Labels here are the digits 0..9; ``datasets.py`` turns them into records.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trytry_reid.errors import ReidError

SPLIT_SEED = 0
QUERY_PER_CLASS = 10
DIGITS_TRAIN_FRACTION = 0.6
CACHE_FORMAT = "v1"  # bump when the on-disk layout changes, so old caches are not reused

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # unsigned-byte IDX files of 1 (labels) or 3 (images) dimensions


class DigitDataError(ReidError, ValueError):
    """Missing or malformed digit source files; the message names the file and what was expected."""


@dataclass(frozen=True)
class DigitParts:
    """(png path, digit) pairs for each split."""

    train: list[tuple[str, int]]
    query: list[tuple[str, int]]
    gallery: list[tuple[str, int]]


def cache_root() -> Path:
    return Path(os.environ.get("TRYTRY_REID_CACHE", Path.home() / ".cache" / "trytry_reid")).expanduser()


def source_hash(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    for array in arrays:
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def png_paths(folder: Path, part: str, labels: np.ndarray) -> list[str]:
    return [str(folder / part / f"{i:05d}_{int(label)}.png") for i, label in enumerate(labels)]


def write_png(path: str, image: np.ndarray) -> None:
    Image.fromarray(np.ascontiguousarray(image)).save(path, compress_level=1)  # uint8 [H,W] -> grey "L" PNG


def write_pngs(folder: Path, part: str, images: np.ndarray, labels: np.ndarray) -> None:
    """One PNG per image; a few threads, since Pillow's encoder releases the GIL."""
    (folder / part).mkdir(parents=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write_png, png_paths(folder, part, labels), images))


def materialise(name: str, parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list[tuple[str, int]]]:
    """Write ``{part: (images uint8 [N,H,W], labels [N])}`` as PNGs once; return (path, label) per part."""
    arrays = [a for images, labels in parts.values() for a in (images, labels)]
    final = cache_root() / f"{name}-{source_hash(*arrays)}"
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
        try:
            for part, (images, labels) in parts.items():
                write_pngs(scratch, part, images, labels)
            os.replace(scratch, final)
        except OSError:
            if not final.is_dir():  # another process may have won the race; only then is this fine
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {part: list(zip(png_paths(final, part, labels), labels.tolist())) for part, (_, labels) in parts.items()}


def split_per_class(labels: np.ndarray, first_count: np.ndarray | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded shuffle; the first ``first_count`` indices go left, the rest right (both sorted).

    ``first_count`` is an int, or an array giving the count for each class in ``np.unique(labels)`` order.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    counts = np.broadcast_to(np.asarray(first_count), classes.shape)
    left, right = [], []
    for cls, count in zip(classes, counts):
        members = rng.permutation(np.flatnonzero(labels == cls))
        if count >= len(members):
            raise DigitDataError(f"class {cls} has {len(members)} test images; {count} are needed for the query")
        left.append(members[:count])
        right.append(members[count:])
    return np.sort(np.concatenate(left)), np.sort(np.concatenate(right))


def closed_set_parts(materialised: dict[str, list[tuple[str, int]]]) -> DigitParts:
    test = materialised["test"]
    query, gallery = split_per_class(np.array([label for _, label in test]), QUERY_PER_CLASS, SPLIT_SEED)
    return DigitParts(materialised["train"], [test[i] for i in query], [test[i] for i in gallery])


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images [1797, 8, 8] in 0..16, labels [1797]) from scikit-learn's bundled data, offline.

    The bundled ``datasets/data/digits.csv.gz`` is read directly when present: importing
    ``sklearn.datasets`` costs seconds (it pulls in scipy), the file itself milliseconds.
    """
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        bundled = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if bundled.is_file():
            table = np.loadtxt(bundled, delimiter=",", dtype=np.float64)
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target.astype(np.int64)


def sklearn_digits_parts() -> DigitParts:
    """scikit-learn's bundled 1,797 8x8 digits (values 0..16, scaled to 0..255); no download."""
    raw, labels = load_sklearn_digits()
    images = np.round(raw * (255.0 / 16.0)).astype(np.uint8)
    class_sizes = np.bincount(labels)
    train_counts = np.round(class_sizes * DIGITS_TRAIN_FRACTION).astype(int)
    train, test = split_per_class(labels, train_counts, SPLIT_SEED)
    parts = {"train": (images[train], labels[train]), "test": (images[test], labels[test])}
    return closed_set_parts(materialise("digits", parts))


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped) with ``ndim`` dimensions."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 4 + 4 * ndim:
        raise DigitDataError(f"'{path}' is too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != IDX_MAGIC[ndim]:
        raise DigitDataError(f"'{path}': IDX magic {magic:#010x}, expected {IDX_MAGIC[ndim]:#010x}")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DigitDataError(f"'{path}': header says shape {shape}, but {body.size} bytes of data follow")
    return body.reshape(shape)


MNIST_LAYOUT = "{root}/MNIST/raw/  train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte " \
               "t10k-labels-idx1-ubyte  (each may be .gz)"


def find_mnist_file(root: Path, stem: str) -> Path:
    """The raw file under ``root/MNIST/raw``, ``root/raw`` or ``root`` itself, plain or ``.gz``."""
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    raise DigitDataError(f"mnist: no '{stem}' (or .gz) under '{root}'. Expected layout: "
                         f"{MNIST_LAYOUT.format(root=root)}")


def load_mnist_arrays(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images [N,28,28], labels [N]), "test": (...)} read offline from the raw IDX files."""
    if not root.is_dir():
        raise DigitDataError(f"mnist: '{root}' does not exist. Expected layout: {MNIST_LAYOUT.format(root=root)}")
    arrays = {key: read_idx(find_mnist_file(root, stem), 3 if key.endswith("images") else 1)
              for key, stem in MNIST_FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise DigitDataError(f"mnist: {part} has {len(images)} images but {len(labels)} labels under '{root}'")
    return {part: (arrays[f"{part}_images"], arrays[f"{part}_labels"].astype(np.int64)) for part in ("train", "test")}


def mnist_parts(root: Path) -> DigitParts:
    return closed_set_parts(materialise("mnist", load_mnist_arrays(root)))
