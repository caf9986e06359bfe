"""Saved query/gallery features (``.npz``) for ``trytry-reid evaluate --features FILE.npz``.

Keys (any toolkit can write them with ``numpy.savez``):
  query_features [Q, D], gallery_features [G, D]   float
  query_pids [Q], gallery_pids [G]                 int (dataset pids; 0 = distractor)
  query_camids [Q], gallery_camids [G]             int (0-based cameras)
  query_paths [Q], gallery_paths [G]               optional, unicode strings (for figures)
The file is read with ``allow_pickle=False``: object arrays are refused.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from ..errors import ReidError

REQUIRED_KEYS = ("query_features", "gallery_features", "query_pids", "gallery_pids", "query_camids",
                 "gallery_camids")
OPTIONAL_KEYS = ("query_paths", "gallery_paths")


class FeatureFileError(ReidError, ValueError):
    """A feature file is missing, unreadable, or has a missing / malformed key (the message names both)."""


# What numpy and zipfile raise for a damaged, truncated or foreign file (a member is read lazily, so a
# truncated archive may fail on a key, not on opening it).
_DAMAGED = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zlib.error, struct.error)


def read_npz(path: str | Path, what: str = "feature file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (``allow_pickle=False``), read now; FeatureFileError naming ``path`` and
    saying what is wrong, in one line, for a missing, truncated, foreign or pickle-holding file."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: {what} not found")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise FeatureFileError(f"{path}: {what} holds one .npy array, not an .npz archive of named arrays")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except FeatureFileError:
        raise
    except _DAMAGED as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FeatureFileError(f"{path}: {what} is truncated or not a readable .npz without pickled objects "
                               f"({type(err).__name__}: {detail})") from err


def load_feature_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a feature file; returns the required keys plus any optional ``*_paths`` keys."""
    path = Path(path)
    data = read_npz(path)
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise FeatureFileError(f"{path}: missing key(s) {missing}; expected {list(REQUIRED_KEYS)}")
    out = {key: data[key] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in data}
    for side in ("query", "gallery"):
        _check_side(path, out, side)
    if out["query_features"].shape[1] != out["gallery_features"].shape[1]:
        raise FeatureFileError(f"{path}: query_features has dimension {out['query_features'].shape[1]} but "
                               f"gallery_features has {out['gallery_features'].shape[1]}")
    return out


def _check_side(path: Path, data: dict[str, np.ndarray], side: str) -> None:
    features = data[f"{side}_features"]
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise FeatureFileError(f"{path}: key '{side}_features' must be a 2-D numeric [N, D] array, got shape "
                               f"{features.shape} dtype {features.dtype}")
    n = features.shape[0]
    for name in ("pids", "camids"):
        key = f"{side}_{name}"
        arr = data[key]
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise FeatureFileError(f"{path}: key '{key}' must be a 1-D integer array of length {n} (one per row "
                                   f"of '{side}_features'), got shape {arr.shape} dtype {arr.dtype}")
        data[key] = arr.astype(np.int64)
    key = f"{side}_paths"
    if key in data and (data[key].shape != (n,) or data[key].dtype.kind != "U"):
        raise FeatureFileError(f"{path}: key '{key}' must be a 1-D unicode string array of length {n}, got "
                               f"shape {data[key].shape} dtype {data[key].dtype}")
    data[f"{side}_features"] = features.astype(np.float32, copy=False)


def save_feature_file(path: str | Path, query_features: np.ndarray, gallery_features: np.ndarray,
                      query_pids: np.ndarray, gallery_pids: np.ndarray, query_camids: np.ndarray,
                      gallery_camids: np.ndarray, query_paths: list[str] | None = None,
                      gallery_paths: list[str] | None = None) -> Path:
    """Write a feature file (compressed npz) that ``load_feature_file`` accepts; returns its path."""
    path = Path(path)
    arrays = {"query_features": np.asarray(query_features, dtype=np.float32),
              "gallery_features": np.asarray(gallery_features, dtype=np.float32),
              "query_pids": np.asarray(query_pids, dtype=np.int64),
              "gallery_pids": np.asarray(gallery_pids, dtype=np.int64),
              "query_camids": np.asarray(query_camids, dtype=np.int64),
              "gallery_camids": np.asarray(gallery_camids, dtype=np.int64)}
    if query_paths is not None:
        arrays["query_paths"] = np.asarray([str(p) for p in query_paths], dtype=str)
    if gallery_paths is not None:
        arrays["gallery_paths"] = np.asarray([str(p) for p in gallery_paths], dtype=str)
    for side in ("query", "gallery"):
        _check_side(path, arrays, side)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # a file handle: numpy would otherwise append ".npz" to other names
        np.savez_compressed(handle, **arrays)
    return path
