"""Search kernels behind ``GalleryIndex``: candidate generation per backend, then one shared exact finish.

Backends (``BACKENDS``): "numpy" exact (torch float32 matmul + topk over the index's own array; no extra
dependency), "faiss" exact (``IndexFlatIP``), "faiss-ivf" approximate (``IndexIVFFlat``).

Every backend only proposes ``count`` candidate ids per query (a few more than ``k``). The shared finish
rescores those candidates in float64 and orders them by (score descending, id ascending). So the torch and
the faiss backends return identical ids *and* identical distances: the float32 scores each library computes
only decide which candidates are proposed, never the order. When the k-th best score is within
``TIE_MARGIN`` of the last candidate's score, the candidate list might have cut a tie (or a float32
near-tie) short; those queries (rare with real features) are answered by a full float64 rescoring of every
gallery vector that can reach the top k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trytry_reid.atomic import atomic_file
from trytry_reid.catalog import lookup
from trytry_reid.errors import UsageError

TIE_MARGIN = 1e-5            # well above float32 rounding of a 512-d dot product of unit vectors (~1e-7)
_CHUNK_ELEMENTS = 1 << 25    # scores held at once by the torch backend: 32M floats = 128 MiB


def candidate_count(k: int, gallery_size: int) -> int:
    """How many candidates to ask a backend for: enough slack past ``k`` to see ties at the boundary."""
    return min(gallery_size, 2 * k + 16)


def torch_candidates(gallery: np.ndarray, queries: np.ndarray, count: int) -> np.ndarray:
    """Ids [Q, count] of the largest inner products, scanning the gallery [N, D] in chunks (float32 matmul)."""
    g = torch.from_numpy(gallery)
    q = torch.from_numpy(queries)
    chunk = max(count, _CHUNK_ELEMENTS // max(1, len(queries)))
    best_scores, best_ids = None, None
    with torch.inference_mode():
        for start in range(0, len(g), chunk):
            scores = q @ g[start:start + chunk].T                     # [Q, C]
            top = torch.topk(scores, min(count, scores.shape[1]), dim=1)
            ids = top.indices + start
            if best_scores is None:
                best_scores, best_ids = top.values, ids
                continue
            merged = torch.topk(torch.cat([best_scores, top.values], 1), count, dim=1)
            best_scores = merged.values
            best_ids = torch.gather(torch.cat([best_ids, ids], 1), 1, merged.indices)
    return best_ids.numpy().astype(np.int64)


def rescore(gallery: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Float64 inner products [Q, C] of each query with its candidate ids; -inf where an id is -1 (none)."""
    valid = ids >= 0
    rows = gallery[np.where(valid, ids, 0)]                                 # [Q, C, D] float32
    # float32 x float32 products are exact in float64; einsum casts in small buffers (no float64 copy).
    scores = np.einsum("qcd,qd->qc", rows, queries, dtype=np.float64, casting="safe")
    return np.where(valid, scores, -np.inf)


def canonical_order(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by (score descending, id ascending); missing ids (-1, score -inf) go last."""
    order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _full_rescore_row(gallery: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k of one query: float32 screen of the whole gallery, float64 rescoring of all contenders."""
    approx = torch.from_numpy(gallery) @ torch.from_numpy(query)            # [N]
    kth = torch.topk(approx, k).values[-1].item()
    contenders = torch.nonzero(approx >= kth - TIE_MARGIN).flatten().numpy().astype(np.int64)
    scores = gallery[contenders].astype(np.float64) @ query.astype(np.float64)
    scores, ids = canonical_order(scores[None], contenders[None])
    return scores[0, :k], ids[0, :k]


def finish_exact(gallery: np.ndarray, queries: np.ndarray, candidates: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn candidate ids [Q, C] into the exact top k: (scores [Q, k] float64, ids [Q, k] int64)."""
    scores, ids = canonical_order(rescore(gallery, queries, candidates), candidates)
    if candidates.shape[1] < len(gallery):
        # A cut inside a (near-)tie block may have dropped an equal score with a smaller id.
        ambiguous = np.flatnonzero(scores[:, k - 1] - scores[:, -1] <= TIE_MARGIN)
        for row in ambiguous:     # rare fallback; the common path above is fully vectorised
            scores[row, :k], ids[row, :k] = _full_rescore_row(gallery, queries[row], k)
    return scores[:, :k], ids[:, :k]


def finish_approximate(gallery: np.ndarray, queries: np.ndarray, candidates: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rescore and order an approximate backend's candidates without the exactness fallback."""
    scores, ids = canonical_order(rescore(gallery, queries, candidates), candidates)
    return scores[:, :k], ids[:, :k]


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each query's exact top-k ids that the approximate top-k also found."""
    a, e = approx_ids[:, :k], exact_ids[:, :k]
    hits = (a[:, :, None] == e[:, None, :]) & (e[:, None, :] >= 0)
    return float(hits.any(axis=1).sum() / max(1, (e >= 0).sum()))


# ---- backends: each proposes candidate ids by inner product; finish_* above does the rest ----
def import_faiss():
    """The faiss module, or an ImportError that says how to get it."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError("the 'faiss' backend needs faiss-cpu: pip install 'trytry-reid[search]' "
                          "(or use backend='numpy', which gives identical results)") from error
    return faiss


class TorchBackend:
    """Exact: chunked float32 matmul + topk over the index's own feature array (nothing extra stored)."""

    exact = True

    def __init__(self, dim: int, **_: object) -> None:
        self.dim = dim

    def add(self, new_features: np.ndarray) -> None:
        """Nothing to update: the gallery array itself is the structure."""

    def candidates(self, gallery: np.ndarray, queries: np.ndarray, count: int) -> np.ndarray:
        return torch_candidates(gallery, queries, count)

    def save(self, directory: Path) -> None:
        """Nothing beyond the features to save."""


class FaissFlatBackend:
    """Exact: faiss ``IndexFlatIP`` (keeps its own copy of the vectors)."""

    exact = True

    def __init__(self, dim: int, **_: object) -> None:
        self.faiss = import_faiss()
        self.index = self.faiss.IndexFlatIP(dim)

    def add(self, new_features: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(new_features, dtype=np.float32))

    def candidates(self, gallery: np.ndarray, queries: np.ndarray, count: int) -> np.ndarray:
        _, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), count)
        return ids.astype(np.int64)

    def save(self, directory: Path) -> None:
        """Rebuilt from the saved features on load (a flat index is just the vectors)."""


class FaissIVFBackend:
    """Approximate: faiss ``IndexIVFFlat`` by inner product. Trained (k-means, ``nlist`` lists) on the first
    ``add``; later adds are assigned to the trained lists. ``nprobe`` lists are scanned per query."""

    exact = False
    FILE = "ivf.faiss"

    def __init__(self, dim: int, nlist: int = 1024, nprobe: int = 16, seed: int = 0,
                 directory: Path | None = None, **_: object) -> None:
        self.faiss = import_faiss()
        self.nlist, self.nprobe, self.seed = int(nlist), int(nprobe), int(seed)
        if directory is not None and (directory / self.FILE).is_file():
            self.index = self.faiss.read_index(str(directory / self.FILE))
        else:
            quantizer = self.faiss.IndexFlatIP(dim)
            self.index = self.faiss.IndexIVFFlat(quantizer, dim, self.nlist,
                                                 self.faiss.METRIC_INNER_PRODUCT)
        self.index.nprobe = self.nprobe

    def add(self, new_features: np.ndarray) -> None:
        new_features = np.ascontiguousarray(new_features, dtype=np.float32)
        if not self.index.is_trained:
            if len(new_features) < self.nlist:
                raise UsageError(f"an IVF index with nlist={self.nlist} needs at least {self.nlist} vectors "
                                 f"in its first add, got {len(new_features)}; lower nlist")
            self.index.cp.seed = self.seed
            self.index.train(new_features)
        self.index.add(new_features)

    def candidates(self, gallery: np.ndarray, queries: np.ndarray, count: int) -> np.ndarray:
        _, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), count)
        return ids.astype(np.int64)

    def save(self, directory: Path) -> None:
        """faiss's own binary format (no pickle), so loading needs no re-training."""
        with atomic_file(directory / self.FILE) as handle:
            self.faiss.write_index(self.index, self.faiss.PyCallbackIOWriter(handle.write))


BACKENDS = {"numpy": TorchBackend, "faiss": FaissFlatBackend, "faiss-ivf": FaissIVFBackend}


def build_backend(name: str, dim: int, **options: object):
    """Construct the backend called ``name`` (see ``BACKENDS``)."""
    return lookup(BACKENDS, name, "search backend")(dim, **options)
