"""Ranking metrics (CMC, mAP, mINP) under the Market-1501 protocol, vectorised and chunked.

Instead of arg-sorting every gallery row (what the Cython evaluators pay for), each query chunk sorts the
distance *values* only, then locates the few same-identity gallery items in the sorted rows with a binary
search. That gives every true match its rank among all gallery items; subtracting the removed
(same identity, same camera) items that precede it gives its rank among the kept items. CMC needs the first
match's rank, AP all of them, INP the last one.
"""

from __future__ import annotations

import numpy as np

from trytry_reid.errors import ReidError

DEFAULT_CHUNK = 128


class NoValidQueryError(ReidError, ValueError):
    """No query of a test set has a true match in the gallery outside its own camera."""


def evaluate_rank(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                  g_camids: np.ndarray, max_rank: int = 50, *, chunk_size: int = DEFAULT_CHUNK) -> dict:
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller is closer).

    Protocol (Market-1501):
      * for each query, gallery images with the same pid AND the same camid are removed;
      * distractors (pid 0 in the gallery) are ordinary negatives (no query carries their pid);
        junk images (pid -1) never reach this function: the dataset loaders drop them;
      * a query with no remaining true match is skipped and counted in ``num_skipped_queries``;
        if no query is valid, ``ValueError`` is raised;
      * ties: equal distances are ordered by gallery index (as a stable sort would), on every machine.

    Metrics, with ``r_1 < ... < r_n`` the 1-based ranks of a query's n true matches among its kept items:
      * CMC[k] = fraction of valid queries with r_1 <= k + 1 (an array of ``max_rank`` values; a gallery
        shorter than ``max_rank`` simply leaves the curve at its last value);
      * AP = mean_i (i / r_i): the mean of the precision at each true match (torchreid / fast-reid). The
        official Market-1501 MATLAB code instead averages adjacent precisions (trapezoid rule) and reports
        slightly different values;
      * INP = n / r_n (Ye et al. 2021, "Deep Learning for Person Re-identification", fast-reid's mINP).

    Returns a dict: ``cmc`` (float64 [max_rank]), ``mAP``, ``mINP`` (floats in [0, 1]),
    ``num_valid_queries``, ``num_skipped_queries`` (ints), ``all_ap``, ``all_inp`` (float64 [Q], NaN for
    skipped queries).
    """
    distmat, q_pids, g_pids, q_camids, g_camids = _validate(distmat, q_pids, g_pids, q_camids, g_camids,
                                                            max_rank, chunk_size)
    members, counts = _identity_members(q_pids, g_pids)
    num_q = distmat.shape[0]
    first = np.full(num_q, -1, dtype=np.int64)
    all_ap = np.full(num_q, np.nan)
    all_inp = np.full(num_q, np.nan)
    for start in range(0, num_q, chunk_size):
        rows = slice(start, min(start + chunk_size, num_q))
        ranks = _kept_match_ranks(distmat[rows], members[rows], counts[rows], g_camids, q_camids[rows])
        first[rows], all_ap[rows], all_inp[rows] = _query_metrics(ranks, distmat.shape[1])
    return _ranking_result(first, all_ap, all_inp, max_rank)


def _validate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, chunk_size):
    distmat = np.asarray(distmat)
    if distmat.ndim != 2 or not np.issubdtype(distmat.dtype, np.number):
        raise ValueError(f"distmat must be a 2-D numeric array (num_query x num_gallery), got shape "
                         f"{distmat.shape} dtype {distmat.dtype}")
    if not np.issubdtype(distmat.dtype, np.floating) or distmat.dtype == np.float16:
        distmat = distmat.astype(np.float64)
    num_q, num_g = distmat.shape
    arrays = []
    for name, arr, n in (("q_pids", q_pids, num_q), ("g_pids", g_pids, num_g), ("q_camids", q_camids, num_q),
                         ("g_camids", g_camids, num_g)):
        arr = np.asarray(arr)
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be a 1-D integer array of length {n} (distmat is {num_q} x "
                             f"{num_g}), got shape {arr.shape} dtype {arr.dtype}")
        arrays.append(arr.astype(np.int64))
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat must have at least one query and one gallery item, got {num_q} x {num_g}")
    if int(max_rank) < 1 or int(chunk_size) < 1:
        raise ValueError(f"max_rank and chunk_size must be >= 1, got {max_rank} and {chunk_size}")
    return (np.ascontiguousarray(distmat), *arrays)


def _identity_members(q_pids: np.ndarray, g_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the gallery indices (ascending) sharing its pid: padded [Q, M] (-1 pad), counts [Q]."""
    order = np.argsort(g_pids, kind="stable")
    uniq, starts, sizes = np.unique(g_pids[order], return_index=True, return_counts=True)
    pos = np.clip(np.searchsorted(uniq, q_pids), 0, len(uniq) - 1)
    counts = np.where(uniq[pos] == q_pids, sizes[pos], 0)
    offsets = np.arange(int(counts.max()))
    valid = offsets[None, :] < counts[:, None]
    flat = np.where(valid, starts[pos][:, None] + offsets[None, :], 0)
    members = np.where(valid, order[flat], -1)
    return members, counts


def _kept_match_ranks(dist: np.ndarray, members: np.ndarray, counts: np.ndarray, g_camids: np.ndarray,
                      q_camids: np.ndarray) -> np.ndarray:
    """0-based ranks among the kept gallery items of each query's true matches.

    dist [C, G]; members [C, M] same-pid gallery indices (-1 pad). Returns [C, M] int64, sorted ascending
    per row, with the sentinel G for padding and removed items.
    """
    num_g = dist.shape[1]
    width = int(counts.max()) if len(counts) else 0
    members = members[:, :width]
    valid = members >= 0
    safe = np.where(valid, members, 0)
    if width == 0:
        return np.full((len(dist), 0), num_g, dtype=np.int64)
    sorted_rows = np.sort(dist, axis=1)
    _check_finite(sorted_rows)
    values = np.take_along_axis(dist, safe, axis=1)
    values = np.where(valid, values, np.inf).astype(sorted_rows.dtype)
    rank_all = _rank_in_rows(dist, sorted_rows, values, safe, valid)
    removed = valid & (g_camids[safe] == q_camids[:, None])
    positive = valid & ~removed
    # a removed item precedes a positive iff its full-gallery rank is smaller (ranks are a total order)
    removed_before = ((rank_all[:, None, :] < rank_all[:, :, None]) & removed[:, None, :]).sum(-1)
    kept_rank = np.where(positive, rank_all - removed_before, num_g)
    return np.sort(kept_rank, axis=1)


def _check_finite(sorted_rows: np.ndarray) -> None:
    # np.sort puts NaN last, so the extremes of each sorted row reveal any non-finite value
    if sorted_rows.size and not (np.isfinite(sorted_rows[:, 0]).all() and np.isfinite(sorted_rows[:, -1]).all()):
        raise ValueError("distmat contains NaN or infinite values; distances must be finite")


def _rank_in_rows(dist, sorted_rows, values, index, valid) -> np.ndarray:
    """0-based position of gallery item ``index`` in its row ordered by (distance, gallery index)."""
    less = _row_searchsorted(sorted_rows, values, strict=True)
    equal = _row_searchsorted(sorted_rows, values, strict=False) - less
    tied = np.nonzero(valid & (equal > 1))
    if len(tied[0]):
        less[tied] += _tied_before(dist, values, index, tied)
    return less


def _row_searchsorted(sorted_rows: np.ndarray, values: np.ndarray, strict: bool) -> np.ndarray:
    """Per row r, how many of sorted_rows[r] are < values[r, j] (strict) or <= (not strict): [C, M] int64.

    A bisection vectorised over all (row, value) pairs: each step gathers every pair's midpoint at once,
    so the cache misses of the searches overlap instead of being paid one after another.
    """
    num_c, num_g = sorted_rows.shape
    flat = sorted_rows.ravel()
    base = (np.arange(num_c, dtype=np.int64) * num_g)[:, None]
    lo = np.zeros(values.shape, dtype=np.int64)
    hi = np.full(values.shape, num_g, dtype=np.int64)
    for _ in range(num_g.bit_length()):
        mid = (lo + hi) >> 1
        probe = flat[base + np.minimum(mid, num_g - 1)]
        go_right = (probe < values) if strict else (probe <= values)
        active = lo < hi
        lo = np.where(active & go_right, mid + 1, lo)
        hi = np.where(active & ~go_right, mid, hi)
    return lo


def _tied_before(dist, values, index, tied, pairs_per_block: int = 64) -> np.ndarray:
    """For tied (row, member) pairs: how many gallery items have the same distance and a smaller index."""
    rows, cols = tied
    out = np.empty(len(rows), dtype=np.int64)
    gallery_index = np.arange(dist.shape[1])
    for lo in range(0, len(rows), pairs_per_block):
        r, c = rows[lo:lo + pairs_per_block], cols[lo:lo + pairs_per_block]
        same = dist[r] == values[r, c][:, None]
        out[lo:lo + pairs_per_block] = (same & (gallery_index[None, :] < index[r, c][:, None])).sum(1)
    return out


def _query_metrics(ranks: np.ndarray, num_g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From sorted kept ranks [C, M] (sentinel num_g): first rank (-1 if none), AP and INP (NaN if none)."""
    if ranks.shape[1] == 0:
        return np.full(len(ranks), -1), np.full(len(ranks), np.nan), np.full(len(ranks), np.nan)
    is_match = ranks < num_g
    n = is_match.sum(1)
    valid = n > 0
    hits = np.arange(1, ranks.shape[1] + 1)[None, :]
    precision = np.where(is_match, hits / (ranks + 1.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(valid, precision.sum(1) / n, np.nan)
        last = np.where(valid, np.take_along_axis(ranks, np.maximum(n - 1, 0)[:, None], 1)[:, 0], 0)
        inp = np.where(valid, n / (last + 1.0), np.nan)
    first = np.where(valid, ranks[:, 0], -1)
    return first, ap, inp


def _ranking_result(first, all_ap, all_inp, max_rank) -> dict:
    valid = first >= 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise NoValidQueryError(f"no valid query: none of the {len(first)} queries has a true match in the gallery "
                         "outside its own camera")
    hist = np.bincount(np.minimum(first[valid], max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / num_valid
    return {"cmc": cmc.astype(np.float64), "mAP": float(np.nanmean(all_ap)), "mINP": float(np.nanmean(all_inp)),
            "num_valid_queries": num_valid, "num_skipped_queries": int(len(first) - num_valid),
            "all_ap": all_ap, "all_inp": all_inp}
