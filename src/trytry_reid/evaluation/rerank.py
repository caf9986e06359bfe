"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) with bounded memory.

Follows the widely used reference implementation (person-re-ranking / reid-strong-baseline / fast-reid
``re_ranking(q_g_dist, q_q_dist, g_g_dist)``) step by step, but never builds a dense (Q+G) x (Q+G) matrix:

1. over all N = Q + G features, squared Euclidean distances d(i, j), normalised per row by the row maximum
   (the reference divides by the column maximum of the symmetric matrix and transposes: the same values);
   only each row's k1 + 1 nearest neighbours and its maximum are kept (one chunked pass);
2. R(i): the k-reciprocal neighbours of i (j in the k1 + 1 nearest of i and i in the k1 + 1 nearest of j);
   for each candidate c in R(i), its half set R_half(c) (with round(k1 / 2) + 1 neighbours) is added when
   more than 2/3 of it lies in R(i);
3. V[i, j] = exp(-d(i, j)) / sum over the expanded set, for j in the expanded set (a scipy.sparse matrix);
4. local query expansion: V[i] <- mean of V over the k2 nearest neighbours of i;
5. Jaccard distance for query x gallery pairs only: 1 - m / (2 - m) with m = sum_k min(V[q, k], V[g, k]),
   summed over the non-zeros of V (an inverted index, in blocks of query rows);
6. final = (1 - lambda) * jaccard + lambda * d(q, g).

Ties between exactly equal distances are ordered by index here; the reference's np.argsort (quicksort) leaves
them unspecified, so outputs can only differ when features are exactly duplicated.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from trytry_reid.evaluation.distance import as_float_tensor


def rerank(qf: np.ndarray | torch.Tensor, gf: np.ndarray | torch.Tensor, k1: int = 20, k2: int = 6,
           lambda_value: float = 0.3, chunk_size: int = 1024, pair_budget: int = 4_000_000) -> np.ndarray:
    """Re-ranked [Q, G] float32 distance matrix from query [Q, D] and gallery [G, D] features.

    The original distance is the squared Euclidean distance between the given features, as the reference
    assumes when it squares its Euclidean input. ``chunk_size`` rows are processed at a time for the
    neighbour search; ``pair_budget`` bounds the (query nonzero, gallery nonzero) pairs of a Jaccard block.
    """
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"need k1 >= 1, k2 >= 1 and 0 <= lambda_value <= 1, got {k1}, {k2}, {lambda_value}")
    q, g = as_float_tensor(qf, "qf").float(), as_float_tensor(gf, "gf").float()
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"qf and gf must have the same feature dimension, got {q.shape[1]} and {g.shape[1]}")
    feats = torch.cat([q, g])
    sq = (feats * feats).sum(1)
    neighbours, row_max = _neighbours(feats, sq, min(k1 + 1, len(feats)), chunk_size)
    weights = _reciprocal_weights(feats, sq, neighbours, row_max, k1, chunk_size)
    if k2 != 1:
        weights = _local_query_expansion(weights, neighbours[:, :min(k2, len(feats))])
    jaccard = _query_gallery_jaccard(weights, len(q), pair_budget)
    original = _normalised_sq_distance(q, g, sq[:len(q)], sq[len(q):], row_max[:len(q)], chunk_size)
    return (jaccard * (1 - lambda_value) + original * lambda_value).astype(np.float32)


def _sq_distance(rows: torch.Tensor, rows_sq: torch.Tensor, cols: torch.Tensor, cols_sq: torch.Tensor):
    return (rows_sq[:, None] + cols_sq[None, :] - 2.0 * rows @ cols.T).clamp_(min=0)


def _neighbours(feats, sq, k, chunk_size) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices [N, k] of each row's k nearest items (itself included), and each row's maximum distance."""
    n = len(feats)
    neighbours = torch.empty((n, k), dtype=torch.int64)
    row_max = torch.empty(n)
    for start in range(0, n, chunk_size):
        d = _sq_distance(feats[start:start + chunk_size], sq[start:start + chunk_size], feats, sq)
        row_max[start:start + len(d)] = d.max(1).values
        vals, idx = d.topk(k, dim=1, largest=False, sorted=True)
        neighbours[start:start + len(d)] = _sort_by_value_then_index(vals, idx)
    return neighbours, torch.where(row_max > 0, row_max, torch.ones_like(row_max))


def _sort_by_value_then_index(vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Reorder the k smallest (vals, idx) [c, k] so that equal distances are ordered by index."""
    by_index = torch.argsort(idx, dim=1)
    vals, idx = vals.gather(1, by_index), idx.gather(1, by_index)
    by_value = torch.argsort(vals, dim=1, stable=True)
    return idx.gather(1, by_value)


def _reciprocal_mask(neighbours: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[len(rows), k]: is rows[r] among the neighbours of its own neighbour neighbours[rows[r], a]?"""
    return (neighbours[neighbours[rows]] == rows[:, None, None]).any(-1)


def _expanded_sets(neighbours, half_nb, half_mask, rows) -> np.ndarray:
    """[len(rows), K + K * Kh] member indices of the expanded k-reciprocal sets (-1 where absent)."""
    fwd = neighbours[rows]                                   # [c, K]
    recip = _reciprocal_mask(neighbours, rows)               # [c, K]
    cand_sets = half_nb[fwd]                                 # [c, K, Kh]
    cand_mask = half_mask[fwd] & recip[:, :, None]           # half sets of reciprocal candidates only
    in_recip = ((cand_sets[..., None] == fwd[:, None, None, :]) & recip[:, None, None, :]).any(-1)
    overlap = (in_recip & cand_mask).sum(-1)
    accept = recip & (overlap > 2.0 / 3.0 * cand_mask.sum(-1))
    members = np.concatenate([np.where(recip, fwd, -1),
                              np.where(cand_mask & accept[:, :, None], cand_sets, -1).reshape(len(rows), -1)], 1)
    members.sort(axis=1)
    duplicate = np.zeros(members.shape, dtype=bool)
    duplicate[:, 1:] = members[:, 1:] == members[:, :-1]
    return np.where(duplicate, -1, members)


def _reciprocal_weights(feats, sq, neighbours, row_max, k1, chunk_size) -> sp.csr_matrix:
    """Sparse V [N, N] float32: exp(-d) over each row's expanded k-reciprocal set, rows summing to 1."""
    neighbours = neighbours.numpy()
    n = len(neighbours)
    half_k = min(int(np.around(k1 / 2.0)) + 1, neighbours.shape[1])
    half_nb = np.ascontiguousarray(neighbours[:, :half_k])
    half_mask = _reciprocal_mask(half_nb, np.arange(n))
    rows_out, cols_out = [], []
    step = max(1, chunk_size // 4)
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        members = _expanded_sets(neighbours, half_nb, half_mask, rows)
        r, c = np.nonzero(members >= 0)
        rows_out.append(rows[r])
        cols_out.append(members[r, c])
    rows, cols = np.concatenate(rows_out), np.concatenate(cols_out)
    weights = np.exp(-_pair_sq_distance(feats.numpy(), sq.numpy(), rows, cols) / row_max.numpy()[rows])
    weights = weights / np.bincount(rows, weights=weights, minlength=n)[rows]
    return sp.csr_matrix((weights.astype(np.float32), (rows, cols)), shape=(n, n))


def _pair_sq_distance(feats: np.ndarray, sq: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                      block: int = 4096) -> np.ndarray:
    """Squared distances of the (rows[p], cols[p]) pairs only, ``block`` pairs at a time (float32)."""
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), block):
        i, j = rows[start:start + block], cols[start:start + block]
        out[start:start + len(i)] = np.maximum(sq[i] + sq[j] - 2.0 * np.einsum("pd,pd->p", feats[i], feats[j]), 0)
    return out


def _local_query_expansion(weights: sp.csr_matrix, nearest: torch.Tensor) -> sp.csr_matrix:
    """V[i] <- mean of V[j] over the k2 nearest neighbours j of i (a sparse averaging product)."""
    n, k2 = nearest.shape
    average = sp.csr_matrix((np.full(n * k2, 1.0 / k2, dtype=np.float32),
                             (np.repeat(np.arange(n), k2), nearest.flatten().numpy())), shape=(n, n))
    return (average @ weights).tocsr()


def _query_gallery_jaccard(weights: sp.csr_matrix, num_q: int, pair_budget: int) -> np.ndarray:
    """[Q, G] Jaccard distances 1 - m / (2 - m), m[q, g] = sum_k min(V[q, k], V[Q + g, k])."""
    query = weights[:num_q].tocsr()
    gallery = weights[num_q:].tocsc()                 # inverted index: column k -> gallery rows holding k
    num_g = gallery.shape[0]
    col_nnz = np.diff(gallery.indptr)
    pairs_per_query = np.add.reduceat(np.append(col_nnz[query.indices], 0), query.indptr[:-1]) \
        if query.nnz else np.zeros(num_q, dtype=np.int64)
    pairs_per_query = np.where(np.diff(query.indptr) > 0, pairs_per_query, 0)
    out = np.empty((num_q, num_g), dtype=np.float32)
    start = 0
    while start < num_q:
        stop = _block_end(pairs_per_query, start, pair_budget)
        overlap = _min_sums(query[start:stop], gallery, col_nnz, num_g)
        out[start:stop] = 1.0 - overlap / (2.0 - overlap)
        start = stop
    return out


def _block_end(pairs_per_query: np.ndarray, start: int, budget: int) -> int:
    cumulative = np.cumsum(pairs_per_query[start:])
    return start + max(1, int(np.searchsorted(cumulative, budget, side="right")))


def _min_sums(block: sp.csr_matrix, gallery: sp.csc_matrix, col_nnz: np.ndarray, num_g: int) -> np.ndarray:
    """[b, G] sum over shared non-zero columns k of min(block[q, k], gallery[g, k])."""
    entry_row = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    lengths = col_nnz[block.indices]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros((block.shape[0], num_g))
    entry = np.repeat(np.arange(block.nnz), lengths)
    offset = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = gallery.indptr[block.indices[entry]] + offset
    contribution = np.minimum(block.data[entry], gallery.data[position])
    flat = entry_row[entry] * num_g + gallery.indices[position]
    return np.bincount(flat, weights=contribution, minlength=block.shape[0] * num_g).reshape(-1, num_g)


def _normalised_sq_distance(q, g, q_sq, g_sq, q_row_max, chunk_size) -> np.ndarray:
    out = np.empty((len(q), len(g)), dtype=np.float32)
    for start in range(0, len(q), chunk_size):
        d = _sq_distance(q[start:start + chunk_size], q_sq[start:start + chunk_size], g, g_sq)
        out[start:start + len(d)] = (d / q_row_max[start:start + len(d), None]).numpy()
    return out
