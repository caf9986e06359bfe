"""Brute-force references for the evaluation tests: plain loops written straight from the definitions.

Nothing here is clever on purpose: each function follows the protocol / paper step by step so that the
vectorised code in ``trytry_reid.evaluation`` can be checked against it.
"""

from __future__ import annotations

import numpy as np


def reference_ranking(distmat_row, g_pids, g_camids, q_pid, q_camid):
    """Kept gallery indices of one query in (distance, gallery index) order, and their match flags."""
    order = sorted(range(len(distmat_row)), key=lambda g: (distmat_row[g], g))
    kept = [g for g in order if not (g_pids[g] == q_pid and g_camids[g] == q_camid)]
    return kept, [int(g_pids[g] == q_pid) for g in kept]


def reference_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Market-1501 CMC / mAP / mINP with one loop per query; returns the same keys as evaluate_rank."""
    all_ap, all_inp, firsts = [], [], []
    for q in range(len(q_pids)):
        _, matches = reference_ranking(distmat[q], g_pids, g_camids, q_pids[q], q_camids[q])
        if sum(matches) == 0:
            all_ap.append(np.nan)
            all_inp.append(np.nan)
            continue
        hits, precisions, last = 0, [], 0
        for position, is_match in enumerate(matches, start=1):
            if is_match:
                hits += 1
                precisions.append(hits / position)
                last = position
        all_ap.append(sum(precisions) / hits)
        all_inp.append(hits / last)
        firsts.append(matches.index(1))
    if not firsts:
        raise ValueError("no valid query")
    cmc = np.array([sum(1 for f in firsts if f <= k) / len(firsts) for k in range(max_rank)])
    return {"cmc": cmc, "mAP": float(np.nanmean(all_ap)), "mINP": float(np.nanmean(all_inp)),
            "num_valid_queries": len(firsts), "num_skipped_queries": len(q_pids) - len(firsts),
            "all_ap": np.array(all_ap), "all_inp": np.array(all_inp)}


def reference_rerank(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """k-reciprocal re-ranking (Zhong et al. 2017) on dense matrices, following the widely used reference
    steps: squared distances normalised by their column maximum, k-reciprocal sets expanded with the half-k
    sets that overlap them by more than 2/3, exp(-d) weights, k2 local query expansion, Jaccard distance via
    sums of minima, and the lambda blend with the original distance. Returns the [Q, G] float32 matrix."""
    num_q = q_g_dist.shape[0]
    full = np.block([[q_q_dist, q_g_dist], [q_g_dist.T, g_g_dist]]).astype(np.float32) ** 2
    dist = (full / full.max(axis=0)).T
    n = dist.shape[0]
    rank = np.argsort(dist, axis=1, kind="stable")
    half = int(np.around(k1 / 2.0))

    def reciprocal(i, k):
        return [j for j in rank[i, :k + 1] if i in rank[j, :k + 1]]

    weights = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        base = reciprocal(i, k1)
        expansion = set(base)
        for cand in base:
            cand_set = reciprocal(cand, half)
            if len(set(cand_set) & set(base)) > 2.0 / 3.0 * len(cand_set):
                expansion |= set(cand_set)
        idx = sorted(expansion)
        w = np.exp(-dist[i, idx])
        weights[i, idx] = w / w.sum()
    if k2 != 1:
        weights = np.stack([weights[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((num_q, n), dtype=np.float32)
    for i in range(num_q):
        for j in range(n):
            overlap = np.minimum(weights[i], weights[j]).sum()
            jaccard[i, j] = 1.0 - overlap / (2.0 - overlap)
    final = jaccard * (1 - lambda_value) + dist[:num_q] * lambda_value
    return final[:, num_q:]
