"""Distance histograms of all query x gallery pairs, split into positive and negative pairs, in bounded memory.

Pairs follow the Market-1501 protocol of ``evaluate_rank``:
  * positive: same identity, different camera;
  * left out: same identity, same camera (counted in ``excluded``, never in either histogram);
  * negative: different identities (a Market gallery distractor, pid 0, is one: no query carries pid 0; in the
    digit sets pid 0 is the digit zero and pairs like any other label).

Binning: ``bins`` equal bins over [0, ``max_distance``]; bin i holds distances in (i w, (i + 1) w] (bin 0 also
holds 0), w = max_distance / bins; distances beyond ``max_distance`` land in the last bin. The default, 2**16
bins on [0, 2], covers the cosine distance (1 - cos, in [0, 2]) and the Euclidean distance of unit vectors.
When ``bins / max_distance`` is a power of two (the default) a float32 distance times it is exact, so the
count of pairs with distance <= an upper bin edge is exact, not an approximation: the ROC at the bin edges
is the true ROC at those thresholds.

Memory: the pairs are never listed. ``chunk_elements`` pairs (query rows x whole gallery) are binned at a
time with one ``torch.bincount``; a chunk's temporaries (masks, int32 codes) take about 40 bytes per pair:
measured +85 MiB at the default 2**21 over a Market-scale distance matrix (benchmarks/calibration_speed.py),
plus 3 x bins int64 counts. ``pair_histograms_from_features`` adds the chunk's distances (+151 MiB measured)
instead of needing the [Q, G] matrix at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from trytry_reid.evaluation.distance import compute_distance

DEFAULT_BINS = 1 << 16
DEFAULT_MAX_DISTANCE = 2.0
DEFAULT_CHUNK_ELEMENTS = 1 << 21
NEGATIVE, POSITIVE, EXCLUDED = 0, 1, 2


@dataclass(frozen=True)
class PairHistograms:
    """Counts per distance bin: ``positive`` and ``negative`` int64 [bins]; ``excluded`` pairs left out."""

    positive: np.ndarray
    negative: np.ndarray
    excluded: int
    max_distance: float

    @property
    def bins(self) -> int:
        return len(self.positive)

    @property
    def width(self) -> float:
        return self.max_distance / self.bins

    @property
    def num_positive(self) -> int:
        return int(self.positive.sum())

    @property
    def num_negative(self) -> int:
        return int(self.negative.sum())

    def upper_edges(self) -> np.ndarray:
        """[bins] float64: bin i counts distances <= upper_edges()[i] (and > the previous edge)."""
        return np.arange(1, self.bins + 1, dtype=np.float64) * self.width

    def coarse(self, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """(positive, negative) summed into ``bins`` wider bins (``bins`` must divide ``self.bins``)."""
        if bins < 1 or self.bins % bins:
            raise ValueError(f"coarse(): {bins} bins must divide the {self.bins} fine bins")
        factor = self.bins // bins
        return self.positive.reshape(bins, factor).sum(1), self.negative.reshape(bins, factor).sum(1)


def pair_histograms(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, *, bins: int = DEFAULT_BINS,
                    max_distance: float = DEFAULT_MAX_DISTANCE,
                    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> PairHistograms:
    """Histograms of a [Q, G] distance matrix (any array sliceable by rows, e.g. a ``np.memmap``)."""
    if np.ndim(distmat) != 2:
        raise ValueError(f"distmat must be 2-D [num_query, num_gallery], got shape {np.shape(distmat)}")
    labels = _labels(distmat.shape, q_pids, g_pids, q_camids, g_camids)
    blocks = (torch.as_tensor(np.asarray(distmat[rows])) for rows in _row_chunks(*distmat.shape, chunk_elements))
    return _accumulate(blocks, labels, bins, max_distance)


def pair_histograms_from_features(qf: np.ndarray, gf: np.ndarray, q_pids, g_pids, q_camids, g_camids, *,
                                  metric: str = "cosine", bins: int = DEFAULT_BINS,
                                  max_distance: float = DEFAULT_MAX_DISTANCE,
                                  chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> PairHistograms:
    """Histograms of the ``metric`` distances (``compute_distance``) of query features [Q, D] against gallery
    features [G, D], computed chunk by chunk: no [Q, G] matrix is ever held (MSMT17 scale: ~1 G pairs)."""
    shape = (len(qf), len(gf))
    labels = _labels(shape, q_pids, g_pids, q_camids, g_camids)
    blocks = (torch.from_numpy(compute_distance(qf[rows], gf, metric=metric))
              for rows in _row_chunks(*shape, chunk_elements))
    return _accumulate(blocks, labels, bins, max_distance)


def _labels(shape: tuple[int, int], q_pids, g_pids, q_camids, g_camids) -> tuple[torch.Tensor, ...]:
    out = []
    for name, values, size in (("q_pids", q_pids, shape[0]), ("g_pids", g_pids, shape[1]),
                               ("q_camids", q_camids, shape[0]), ("g_camids", g_camids, shape[1])):
        array = np.asarray(values)
        if array.shape != (size,) or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must be a 1-D integer array of length {size} (pairs are {shape[0]} x "
                             f"{shape[1]}), got shape {array.shape} dtype {array.dtype}")
        out.append(torch.from_numpy(array.astype(np.int64)))
    if 0 in shape:
        raise ValueError(f"calibration needs at least one query and one gallery item, got {shape[0]} x {shape[1]}")
    return tuple(out)


def _row_chunks(num_query: int, num_gallery: int, chunk_elements: int) -> Iterator[slice]:
    if chunk_elements < 1:
        raise ValueError(f"chunk_elements must be >= 1, got {chunk_elements}")
    step = max(1, chunk_elements // max(1, num_gallery))
    return (slice(start, min(start + step, num_query)) for start in range(0, num_query, step))


def _accumulate(blocks: Iterator[torch.Tensor], labels: tuple[torch.Tensor, ...], bins: int,
                max_distance: float) -> PairHistograms:
    if bins < 1 or not max_distance > 0:
        raise ValueError(f"need bins >= 1 and max_distance > 0, got bins={bins}, max_distance={max_distance}")
    q_pids, g_pids, q_camids, g_camids = labels
    scale = bins / max_distance
    counts = torch.zeros(3 * bins, dtype=torch.int64)
    start = 0
    for block in blocks:
        rows = slice(start, start + len(block))
        counts += _count_block(block, q_pids[rows], q_camids[rows], g_pids, g_camids, bins, scale)
        start = rows.stop
    counts = counts.view(3, bins).numpy()
    return PairHistograms(positive=counts[POSITIVE].copy(), negative=counts[NEGATIVE].copy(),
                          excluded=int(counts[EXCLUDED].sum()), max_distance=float(max_distance))


def _count_block(dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor, g_pids: torch.Tensor,
                 g_camids: torch.Tensor, bins: int, scale: float) -> torch.Tensor:
    """[3 * bins] counts of one block of rows: code = kind * bins + bin, kind 0/1/2 = negative/positive/left out."""
    dist = dist.to(torch.float32)
    if not bool(torch.isfinite(dist).all()):
        raise ValueError("distances hold NaN or infinite values; calibration needs finite distances")
    same_id = q_pids[:, None] == g_pids[None, :]
    same_camera = q_camids[:, None] == g_camids[None, :]
    code = torch.ceil(dist * scale).clamp_(1, bins).to(torch.int32).sub_(1)
    code += same_id.to(torch.int32) * (POSITIVE + same_camera.to(torch.int32)) * bins
    return torch.bincount(code.flatten(), minlength=3 * bins)

