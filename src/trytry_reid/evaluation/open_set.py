"""Open-set identification: is the query in the gallery at all, and if so, is the rank-1 answer right?

A probe (query) is *mated* when the gallery holds a true match for it under the Market-1501 protocol (same
identity, another camera) and *non-mated* when its identity is absent from the gallery. A query whose identity
is in the gallery only under its own camera is neither and is counted in ``num_ignored``. With its best
(smallest) distance d* over the kept gallery items and a threshold t:

  * FAR(t) (false alarm rate) = fraction of non-mated probes with d* <= t: someone not in the gallery is
    answered with a gallery identity;
  * DIR(t) (detection and identification rate) = fraction of mated probes whose rank-1 item is a true match
    AND d* <= t (as in open-set face and person identification, e.g. Liao et al. 2014's "open-set DIR at FAR").

``dir_at_far`` sets t for each target FAR as high as it can go without more than ``floor(target * n)`` of the
n non-mated probes passing (so FAR(t) <= target; with n probes FAR only resolves steps of 1/n).
``drop_gallery_identities`` builds such a split from a closed-set one (e.g. half the devsplit's gallery
identities removed, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

OPEN_SET_FARS = (1e-2, 1e-3)
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class BestMatches:
    """Per query: ``distance`` (float64 [Q], d* over the kept gallery), ``correct`` (bool [Q], rank-1 is a true
    match), ``mated`` and ``non_mated`` (bool [Q]); ties go to the smaller gallery index, as in evaluate_rank."""

    distance: np.ndarray
    correct: np.ndarray
    mated: np.ndarray
    non_mated: np.ndarray


def drop_gallery_identities(g_pids: np.ndarray, fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """Boolean keep-mask [G] with round(``fraction`` x identities) gallery identities removed entirely
    (a seeded choice); distractors (pid 0) are always kept."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction of gallery identities to drop must be in (0, 1), got {fraction}")
    g_pids = np.asarray(g_pids)
    ids = np.unique(g_pids[g_pids != 0])
    dropped = np.random.default_rng(seed).choice(ids, size=int(round(fraction * len(ids))), replace=False)
    return ~np.isin(g_pids, dropped)


def best_matches(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids) -> BestMatches:
    """d*, rank-1 correctness and mated / non-mated status of every query, in row chunks."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    distance = np.empty(num_q)
    correct, mated = np.zeros(num_q, dtype=bool), np.zeros(num_q, dtype=bool)
    step = max(1, _CHUNK_ELEMENTS // max(1, num_g))
    for start in range(0, num_q, step):
        rows = slice(start, min(start + step, num_q))
        same_id = q_pids[rows, None] == g_pids[None, :]
        left_out = same_id & (q_camids[rows, None] == g_camids[None, :])
        dist = np.where(left_out, np.inf, np.asarray(distmat[rows], dtype=np.float64))
        best = np.argmin(dist, axis=1)
        distance[rows] = dist[np.arange(len(best)), best]
        correct[rows] = same_id[np.arange(len(best)), best] & np.isfinite(distance[rows])
        mated[rows] = (same_id & ~left_out).any(1)
    non_mated = ~np.isin(q_pids, g_pids)
    return BestMatches(distance, correct, mated, non_mated)


def rates_at(matches: BestMatches, threshold: float) -> tuple[float, float]:
    """(FAR, DIR) of one threshold."""
    passed = matches.distance <= threshold
    far = float(passed[matches.non_mated].mean()) if matches.non_mated.any() else float("nan")
    hit = (matches.correct & passed)[matches.mated]
    return far, float(hit.mean()) if len(hit) else float("nan")


def dir_at_far(matches: BestMatches, target_fars: Sequence[float] = OPEN_SET_FARS) -> list[dict]:
    """For each target FAR: the threshold, the FAR it gets (<= target) and the DIR."""
    impostors = np.sort(matches.distance[matches.non_mated])
    if len(impostors) == 0 or not matches.mated.any():
        raise ValueError(f"open-set evaluation needs mated and non-mated queries, got {int(matches.mated.sum())} "
                         f"mated and {len(impostors)} non-mated")
    out = []
    for target in target_fars:
        allowed = int(np.floor(target * len(impostors) + 1e-9))
        # just below the (allowed + 1)-th smallest impostor distance: at most `allowed` impostors pass
        threshold = np.nextafter(impostors[allowed], -np.inf) if allowed < len(impostors) else \
            matches.distance[np.isfinite(matches.distance)].max()
        far, dir_ = rates_at(matches, threshold)
        out.append({"target_far": float(target), "threshold": float(threshold), "far": far, "dir": dir_})
    return out


def open_set_report(matches: BestMatches, target_fars: Sequence[float] = OPEN_SET_FARS,
                    threshold: float | None = None) -> dict:
    """Counts, closed-set rank-1 of the mated probes (DIR with no threshold), DIR at each target FAR, and the
    FAR / DIR of a given ``threshold`` (e.g. the pair-calibrated one) when one is given."""
    report = {"num_mated": int(matches.mated.sum()), "num_non_mated": int(matches.non_mated.sum()),
              "num_ignored": int((~matches.mated & ~matches.non_mated).sum()),
              "rank1_mated": float(matches.correct[matches.mated].mean()) if matches.mated.any() else float("nan"),
              "dir_at_far": dir_at_far(matches, target_fars)}
    if threshold is not None:
        far, dir_ = rates_at(matches, threshold)
        report["at_threshold"] = {"threshold": float(threshold), "far": far, "dir": dir_}
    return report
