"""Feature files (``.npz``): one schema for a set of image features, written by ``extract`` and read by
``evaluate --features`` (and writable by any toolkit with ``numpy.savez``).

A feature set named ``<name>`` is stored as the arrays::

  <name>_features [N, D]   float (L2-normalised when the toolkit wrote them)
  <name>_pids [N]          int (dataset pids; 0 = distractor, -1 = unknown)
  <name>_camids [N]        int (0-based cameras; -1 = unknown)
  <name>_paths [N]         unicode strings, optional (for figures)

The set of ``extract`` is unnamed (keys ``features``, ``pids``, ``camids``, ``paths``); ``evaluate --features``
reads the sets ``query`` and ``gallery``. Files are read with ``allow_pickle=False``: object arrays are refused.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from trytry_reid.atomic import atomic_file
from trytry_reid.errors import ReidError

FIELDS = ("features", "pids", "camids")  # required; "paths" is optional


class FeatureFileError(ReidError, ValueError):
    """A feature file is missing, unreadable, or has a missing / malformed key (the message names both)."""


class FeatureSet(NamedTuple):
    features: np.ndarray  # [N, D] float32
    paths: list[str]      # image paths, one per row (empty when the file has none)
    pids: np.ndarray      # [N] int64, -1 where unknown
    camids: np.ndarray    # [N] int64, 0-based camera, -1 where unknown


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


def _key(name: str, field: str) -> str:
    return f"{name}_{field}" if name else field


def load_features(path: str | Path, names: Sequence[str] = ("",)) -> dict[str, FeatureSet]:
    """The feature sets ``names`` of a file, checked; all of them must have one feature dimension."""
    path = Path(path)
    data = read_npz(path)
    missing = [_key(name, field) for name in names for field in FIELDS if _key(name, field) not in data]
    if missing:
        expected = [_key(name, field) for name in names for field in FIELDS]
        raise FeatureFileError(f"{path}: missing key(s) {missing}; expected {expected} (+ optional paths)")
    sets = {name: _checked_set(path, data, name) for name in names}
    dims = {name: s.features.shape[1] for name, s in sets.items()}
    if len(set(dims.values())) > 1:
        raise FeatureFileError(f"{path}: the feature sets differ in dimension: {dims}")
    return sets


def _checked_set(path: Path, data: dict[str, np.ndarray], name: str) -> FeatureSet:
    features = data[_key(name, "features")]
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise FeatureFileError(f"{path}: key '{_key(name, 'features')}' must be a 2-D numeric [N, D] array, got "
                               f"shape {features.shape} dtype {features.dtype}")
    n = features.shape[0]
    labels = {}
    for field in ("pids", "camids"):
        arr = data[_key(name, field)]
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise FeatureFileError(f"{path}: key '{_key(name, field)}' must be a 1-D integer array of length {n} "
                                   f"(one per row of '{_key(name, 'features')}'), got shape {arr.shape} "
                                   f"dtype {arr.dtype}")
        labels[field] = arr.astype(np.int64)
    paths = data.get(_key(name, "paths"))
    if paths is not None and (paths.shape != (n,) or paths.dtype.kind != "U"):
        raise FeatureFileError(f"{path}: key '{_key(name, 'paths')}' must be a 1-D unicode string array of length "
                               f"{n}, got shape {paths.shape} dtype {paths.dtype}")
    return FeatureSet(features.astype(np.float32, copy=False), [] if paths is None else [str(p) for p in paths],
                      labels["pids"], labels["camids"])


def save_features(path: str | Path, sets: Mapping[str, FeatureSet]) -> Path:
    """Write the feature sets (compressed npz) so that ``load_features(path, list(sets))`` reads them back."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for name, feature_set in sets.items():
        arrays[_key(name, "features")] = np.asarray(feature_set.features, dtype=np.float32)
        arrays[_key(name, "pids")] = np.asarray(feature_set.pids, dtype=np.int64)
        arrays[_key(name, "camids")] = np.asarray(feature_set.camids, dtype=np.int64)
        if len(feature_set.paths):
            arrays[_key(name, "paths")] = np.asarray([str(p) for p in feature_set.paths], dtype=str)
        _checked_set(path, arrays, name)
    with atomic_file(path) as handle:  # a file handle: numpy would otherwise append ".npz" to other names
        np.savez_compressed(handle, **arrays)
    return path
