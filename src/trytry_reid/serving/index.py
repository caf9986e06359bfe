"""GalleryIndex: L2-normalised gallery features + their file paths, searchable by inner product.

Distances are cosine distances, ``1 - <q, g>`` in [0, 2], for L2-normalised features (what
``extract_folder`` and ``ReidModel.embed`` produce). For unit vectors the Euclidean distance follows as
``sqrt(2 * distance)`` and ranks identically. Results are ordered by (distance ascending, id ascending):
ties go to the smaller id (the earlier added image), for every backend.

Backends: ``"numpy"`` exact (torch matmul, always available), ``"faiss"`` exact (faiss-cpu, identical results),
``"faiss-ivf"`` approximate (IVF-Flat; ``nlist``, ``nprobe``) for galleries that outgrow exact search.

On disk (no pickle anywhere): ``features.npz`` (float32 [N, D]) and ``index.json`` (format, backend,
options, dim, paths); the IVF backend also writes ``ivf.faiss`` in faiss's own binary format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from trytry_reid.atomic import atomic_file
from trytry_reid.engine.checkpoint import weights_sha256  # noqa: F401  (the hash an index records)
from trytry_reid.errors import ReidError
from trytry_reid.serving import search
from trytry_reid.serving.search import build_backend

FORMAT = "trytry-reid-gallery-index/1"
_NORM_TOLERANCE = 1e-3


class GalleryIndexError(ReidError, ValueError):
    """An index on disk that cannot be read or extended as asked; the message names it and why."""


class GalleryIndex:
    """Grow-only gallery: ``add`` appends rows (amortised, no rebuild); ``search`` returns top-k matches."""

    def __init__(self, dim: int, backend: str = "numpy", **options: object) -> None:
        if int(dim) <= 0:
            raise ValueError(f"feature dimension must be positive, got {dim}")
        self.dim = int(dim)
        self.backend_name = backend
        self.options = dict(options)
        self._backend = build_backend(backend, self.dim, **self.options)
        self._buffer = np.empty((0, self.dim), dtype=np.float32)
        self._size = 0
        self.paths: list[str] = []
        self.info: dict = {}    # free-form JSON-able provenance, e.g. {"checkpoint": ...}; saved with the index

    def __len__(self) -> int:
        return self._size

    @property
    def features(self) -> np.ndarray:
        """The gallery rows [N, D] float32 (a view; do not modify)."""
        return self._buffer[:self._size]

    def add(self, features: np.ndarray, paths: Sequence[str]) -> None:
        """Append ``features`` [M, D] (L2-normalised) with one path each; ids continue from ``len(self)``."""
        features = self._check_rows(features, "features")
        if len(paths) != len(features):
            raise ValueError(f"add(): {len(features)} feature rows but {len(paths)} paths; need one path per row")
        if len(features) == 0:
            return
        self._reserve(self._size + len(features))
        self._buffer[self._size:self._size + len(features)] = features
        self._size += len(features)
        self.paths.extend(str(p) for p in paths)
        self._backend.add(features)

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k matches of each query [Q, D]: ``(distances [Q, k'] float32, ids [Q, k'] int64)``,
        ``k' = min(k, len(self))``, nearest first. An approximate backend that finds fewer than k'
        reports id -1 with distance inf in the remaining places."""
        queries = self._check_rows(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if self._size == 0:
            raise ValueError("search(): the index is empty; add() gallery features first")
        k = min(int(k), self._size)
        count = search.candidate_count(k, self._size)
        candidates = self._backend.candidates(self.features, queries, count)
        finish = search.finish_exact if self._backend.exact else search.finish_approximate
        scores, ids = finish(self.features, queries, candidates, k)
        # Rounding can put a unit vector's self-similarity a hair above 1; a distance is never negative.
        return np.maximum(1.0 - scores, 0.0).astype(np.float32), ids

    def save(self, directory: str | Path) -> Path:
        """Write ``features.npz``, the backend's files, then ``index.json`` into ``directory``, each file
        atomically. index.json goes last and records the count: a crash mid-save leaves the earlier index.json,
        and a load that finds more (or fewer) vectors than it records refuses the index instead of mixing. A stop
        signal (``trytry-reid index``) waits for the save to end, so it never leaves that mismatch."""
        from trytry_reid.engine.signals import deferred_stop

        directory = Path(directory)
        meta = {"format": FORMAT, "dim": self.dim, "count": self._size, "backend": self.backend_name,
                "options": self.options, "distance": "1 - inner product (cosine distance)",
                "info": self.info, "paths": self.paths}
        with deferred_stop():
            with atomic_file(directory / "features.npz") as handle:
                np.savez(handle, features=self.features)
            self._backend.save(directory)
            with atomic_file(directory / "index.json", "w") as handle:
                json.dump(meta, handle, indent=1)
        return directory

    @classmethod
    def load(cls, directory: str | Path, backend: str | None = None) -> "GalleryIndex":
        """Read an index written by ``save``; ``backend`` overrides the saved one (e.g. "numpy")."""
        directory = Path(directory)
        meta = _read_meta(directory)
        features = _read_features(directory / "features.npz")
        if features.shape != (meta["count"], meta["dim"]) or len(meta["paths"]) != meta["count"]:
            raise GalleryIndexError(f"index '{directory}': features.npz has shape {features.shape} and index.json "
                             f"{len(meta['paths'])} paths, expected ({meta['count']}, {meta['dim']})")
        name = backend or meta["backend"]
        options = dict(meta.get("options", {})) if name == meta["backend"] else {}
        index = cls(meta["dim"], name, directory=directory, **options)
        index.options = options      # the load location is not an option to save again
        index.info = dict(meta.get("info", {}))
        index._restore(features, meta["paths"])
        return index

    def _restore(self, features: np.ndarray, paths: list[str]) -> None:
        """Fill rows from disk; a backend that loaded its own saved structure is not re-added to."""
        self._buffer = np.ascontiguousarray(features, dtype=np.float32)
        self._size = len(features)
        self.paths = [str(p) for p in paths]
        already = getattr(getattr(self._backend, "index", None), "ntotal", 0)
        if already not in (0, self._size):
            raise ValueError(f"saved backend structure holds {already} vectors but the index has {self._size}")
        if already == 0 and self._size:
            self._backend.add(self._buffer)

    def _reserve(self, size: int) -> None:
        """Grow the row buffer geometrically so repeated adds copy each row O(1) times on average."""
        if size <= len(self._buffer):
            return
        grown = np.empty((max(size, 2 * len(self._buffer), 1024), self.dim), dtype=np.float32)
        grown[:self._size] = self._buffer[:self._size]
        self._buffer = grown

    def _check_rows(self, rows: np.ndarray, what: str) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"{what} must have shape [N, {self.dim}], got {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError(f"{what} contain NaN or inf values")
        norms = np.linalg.norm(rows, axis=1)
        if len(rows) and np.abs(norms - 1).max() > _NORM_TOLERANCE:
            raise ValueError(f"{what} must be L2-normalised (row norms 1); got norms in "
                             f"[{norms.min():.4f}, {norms.max():.4f}]")
        return rows


def read_index_info(directory: str | Path) -> dict:
    """The ``info`` dict saved with an index (e.g. its checkpoint), without loading the features."""
    return dict(_read_meta(Path(directory)).get("info", {}))


def _read_meta(directory: Path) -> dict:
    """index.json, checked for the keys and format this version writes (errors name the file, one line)."""
    path = directory / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"'{directory}' is not a gallery index: {path.name} is missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise GalleryIndexError(f"'{path}' is not valid JSON (truncated or damaged?): {error}") from error
    if not isinstance(meta, dict):
        raise GalleryIndexError(f"'{path}' must hold a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise GalleryIndexError(f"'{path}': format {meta.get('format')!r}, expected {FORMAT!r}")
    missing = [key for key in ("dim", "count", "backend", "paths") if key not in meta]
    if missing:
        raise GalleryIndexError(f"'{path}' lacks keys {missing}")
    return meta


def _read_features(path: Path) -> np.ndarray:
    """The ``features`` array of an index's features.npz (one-line errors naming the file)."""
    from trytry_reid.evaluation.feature_file import FeatureFileError, read_npz

    data = read_npz(path, "index features file")
    if "features" not in data:
        raise FeatureFileError(f"{path}: lacks the 'features' array")
    return data["features"]


def index_folder(loaded_model, images_dir: str | Path, index_dir: str | Path, *, backend: str = "numpy",
                 batch_size: int = 64, workers: int = 0, checkpoint: str | Path | None = None,
                 progress: bool = True, on_bad_image: str = "error", max_bad_images: int = 100,
                 **options: object) -> tuple[GalleryIndex, int]:
    """Build the index in ``index_dir`` from the images under ``images_dir``, or extend the one already
    there with the images it does not hold yet (same absolute path = same image). Saves it and returns
    ``(index, number of images added)``. ``loaded_model`` is a LoadedModel (read from ``checkpoint``) or any
    engine's ``runtimes.InferenceModel``. Bad images follow ``on_bad_image`` (see
    ``folder_images.usable_records``; skipped ones are tried again next time). The model file is recorded in
    the index's ``info`` (path, SHA-256 of the file and of the model's weights, engine, precision); extending
    an index built with other weights, or with INT8 features where it holds fp32 ones, is refused, naming
    both. The model's calibrated operating point is recorded too (``info["calibration"]``, removed when the
    model has none), as provenance: ``search`` and ``serve`` decide with the model's current one
    (``answer.index_calibration``)."""
    from trytry_reid.serving.folder_images import extract_records, folder_records, usable_records
    from trytry_reid.serving.runtimes import PROVENANCE_KEYS, as_inference_model

    model = as_inference_model(loaded_model, checkpoint)
    index_dir = Path(index_dir)
    exists = (index_dir / "index.json").is_file()
    dim = model.contract.feature_dim
    index = GalleryIndex.load(index_dir) if exists else GalleryIndex(dim, backend, **options)
    provenance = model.provenance()
    if exists and provenance:
        _check_same_checkpoint(index.info, provenance, index_dir)
    if index.dim != dim:
        raise GalleryIndexError(f"index '{index_dir}' holds {index.dim}-d features but the model gives "
                                f"{dim}-d: it was built with another model")
    known = set(index.paths)
    new_records = usable_records([r for r in folder_records(images_dir) if r.path not in known], on_bad_image,
                                 max_bad_images)
    if new_records:
        found = extract_records(model, new_records, batch_size, workers, progress,
                                desc=f"index {Path(images_dir).name}")
        index.add(found.features, found.paths)
    if provenance:
        for key in PROVENANCE_KEYS:
            index.info.pop(key, None)
    index.info.update(provenance)
    if model.contract.calibration is not None:
        index.info["calibration"] = model.contract.calibration
    else:
        index.info.pop("calibration", None)
    index.save(index_dir)
    return index, len(new_records)


def check_index_model(index: "GalleryIndex", index_dir: str | Path, checkpoint: str | Path | None,
                      loaded_model) -> None:
    """Refuse to search an index with a model other than the one that built it (`search`, `serve`);
    ``loaded_model`` is a LoadedModel read from ``checkpoint`` or any engine's InferenceModel."""
    from trytry_reid.serving.runtimes import provenance_of

    _check_same_checkpoint(index.info, provenance_of(loaded_model, checkpoint), Path(index_dir),
                           "searching it with other weights would compare features of two different models; "
                           "leave --checkpoint out (the index's own is used) or build an index with this one")


def _check_same_checkpoint(info: dict, provenance: dict, index_dir: Path,
                           remedy: str = "its features would not be comparable; build a new index (--out another "
                                         "folder), or pass the same checkpoint") -> None:
    """Refuse to add features of one model to an index of another: fp32 models of the same weights (any file,
    engine or calibration) are the same model; an INT8 model is only itself (the same file). An index or model
    that records no weights hash is compared by its file's contents, or its path."""
    from trytry_reid.serving.runtimes import describe_recorded, files_sha256, model_files, recorded_model

    recorded = recorded_model(info)
    if recorded is None or not provenance:
        return
    theirs, ours = info.get("precision", "fp32"), provenance.get("precision", "fp32")
    if theirs != ours:
        reason, same = f"{theirs} features, not {ours}", False
    elif ours == "int8":    # quantization is the file's own (engine, calibration crops): only that file matches
        reason, same = "another INT8 file", info.get("model_sha256") == provenance.get("model_sha256")
    elif "weights_sha256" in info and "weights_sha256" in provenance:
        reason, same = "other weights", info["weights_sha256"] == provenance["weights_sha256"]
    else:
        known = info.get("checkpoint_sha256") or info.get("model_sha256")
        if known is None and Path(recorded[1]).is_file():
            known = files_sha256(model_files(Path(recorded[1])))
        mine = provenance.get("checkpoint_sha256") or provenance.get("model_sha256")
        reason = "other weights"
        same = known == mine if known else recorded[1] == recorded_model(provenance)[1]
    if not same:
        engine, path = recorded_model(provenance)
        named = path if engine == "torch" else describe_recorded(provenance)
        raise GalleryIndexError(f"index '{index_dir}' was built with {describe_recorded(info)} ({reason}), not with "
                                f"{named}: {remedy}")
