"""Open-set identification (DIR at FAR): hand-computed cases and a per-query brute force from the definition."""

from __future__ import annotations

import numpy as np
import pytest

from trytry_reid.evaluation.open_set import best_matches, dir_at_far, drop_gallery_identities, open_set_report, rates_at


def brute_force(distmat, q_pids, g_pids, q_cams, g_cams):
    """Plain loops over queries: best kept distance, rank-1 correct, mated, non-mated."""
    rows = []
    for q in range(len(q_pids)):
        kept = [g for g in range(len(g_pids)) if not (g_pids[g] == q_pids[q] and g_cams[g] == q_cams[q])]
        best = min(kept, key=lambda g: (distmat[q, g], g))
        mated = any(g_pids[g] == q_pids[q] for g in kept)
        rows.append((distmat[q, best], g_pids[best] == q_pids[q], mated, q_pids[q] not in set(g_pids) - {0}))
    return [np.array(column) for column in zip(*rows)]


def test_dir_and_far_by_hand():
    # gallery: ids 1 (cam 0), 2 (cam 1), a distractor; queries: 1 (cam 1, mated), 2 (cam 1: its only match
    # is in its own camera -> ignored), 7 and 8 (absent -> non-mated), 1 (cam 2, mated, rank-1 wrong)
    distmat = np.array([[0.20, 0.50, 0.60],
                        [0.90, 0.10, 0.80],
                        [0.45, 0.70, 0.30],
                        [0.55, 0.65, 0.75],
                        [0.40, 0.35, 0.90]])
    g_pids, g_cams = np.array([1, 2, 0]), np.array([0, 1, 2])
    matches = best_matches(distmat, np.array([1, 2, 7, 8, 1]), g_pids, np.array([1, 1, 0, 0, 2]), g_cams)
    np.testing.assert_allclose(matches.distance, [0.20, 0.80, 0.30, 0.55, 0.35])
    assert matches.correct.tolist() == [True, False, False, False, False]
    assert matches.mated.tolist() == [True, False, False, False, True]
    assert matches.non_mated.tolist() == [False, False, True, True, False]
    assert rates_at(matches, 0.25) == (0.0, 0.5)       # no impostor passes; query 0 identified
    assert rates_at(matches, 0.31) == (0.5, 0.5)       # the impostor at 0.30 passes
    [point] = dir_at_far(matches, (0.4,))              # floor(0.4 * 2) = 0 impostors allowed
    assert point["far"] == 0.0 and point["dir"] == 0.5 and 0.20 <= point["threshold"] < 0.30
    [loose] = dir_at_far(matches, (0.5,))              # one impostor allowed: threshold just below 0.55
    assert loose["far"] == 0.5 and 0.30 <= loose["threshold"] < 0.55
    report = open_set_report(matches, (0.4,), threshold=0.31)
    assert (report["num_mated"], report["num_non_mated"], report["num_ignored"]) == (2, 2, 1)
    assert report["rank1_mated"] == 0.5 and report["at_threshold"] == {"threshold": 0.31, "far": 0.5, "dir": 0.5}


def test_best_matches_equal_a_per_query_brute_force_with_ties():
    rng = np.random.default_rng(1)
    distmat = rng.integers(0, 6, size=(60, 45)) / 5.0           # many exact ties: smaller index wins
    q_pids, g_pids = rng.integers(1, 12, 60), rng.integers(0, 9, 45)
    q_cams, g_cams = rng.integers(0, 3, 60), rng.integers(0, 3, 45)
    matches = best_matches(distmat, q_pids, g_pids, q_cams, g_cams)
    distance, correct, mated, non_mated = brute_force(distmat, q_pids, g_pids, q_cams, g_cams)
    np.testing.assert_array_equal(matches.distance, distance)
    np.testing.assert_array_equal(matches.correct, correct)
    np.testing.assert_array_equal(matches.mated, mated)
    np.testing.assert_array_equal(matches.non_mated, non_mated)
    for point in dir_at_far(matches, (0.1, 0.3)):
        passed = distance <= point["threshold"]
        assert point["far"] == passed[non_mated].mean() <= point["target_far"]
        assert point["dir"] == (correct & passed)[mated].mean()
        # the threshold is as high as the target allows: the next impostor distance would exceed it
        above = np.sort(distance[non_mated])[int(np.floor(point["target_far"] * non_mated.sum()))]
        assert np.nextafter(point["threshold"], np.inf) >= above


def test_drop_half_the_gallery_identities_keeps_distractors_and_is_seeded():
    g_pids = np.array([0, 0, 1, 1, 2, 3, 3, 4, 5, 6])
    keep = drop_gallery_identities(g_pids, 0.5, seed=3)
    assert keep[:2].all()                                            # distractors stay
    assert len(np.unique(g_pids[~keep])) == 3                        # 3 of the 6 identities, whole
    assert not np.isin(g_pids[keep], g_pids[~keep]).any()
    np.testing.assert_array_equal(keep, drop_gallery_identities(g_pids, 0.5, seed=3))
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        drop_gallery_identities(g_pids, 1.0)


def test_a_split_without_non_mated_queries_is_refused():
    matches = best_matches(np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="1 mated and 0 non-mated"):
        dir_at_far(matches)


def test_pid_zero_is_an_identity_like_any_other():
    # the digit sets label the digit zero 0: a pid-0 query with a pid-0 gallery image in another camera is mated
    distmat = np.array([[0.10, 0.40], [0.30, 0.20]])
    matches = best_matches(distmat, np.array([0, 5]), np.array([0, 1]), np.array([0, 0]), np.array([1, 1]))
    assert matches.mated.tolist() == [True, False] and matches.non_mated.tolist() == [False, True]
    assert matches.correct.tolist() == [True, False]
