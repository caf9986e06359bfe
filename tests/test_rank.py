"""evaluate_rank against hand-computed cases and the brute-force reference in reference_eval.py."""

from __future__ import annotations

import numpy as np
import pytest

from trytry_reid.evaluation import evaluate_rank

from conftest import MARKET_DEVSPLIT, require
from reference_eval import reference_evaluate


def _random_case(rng, num_q, num_g, num_ids, num_cams, integer, dtype, distractors):
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_pids = rng.integers(1, num_ids + 1, num_g)
    if distractors:
        g_pids[rng.random(num_g) < 0.2] = 0
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    dist = rng.integers(0, 4, (num_q, num_g)) if integer else rng.random((num_q, num_g))
    return dist.astype(dtype), q_pids, g_pids, q_cams, g_cams


def _assert_same(ours, ref):
    np.testing.assert_allclose(ours["cmc"], ref["cmc"], atol=1e-12)
    assert ours["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
    assert ours["mINP"] == pytest.approx(ref["mINP"], abs=1e-12)
    assert ours["num_valid_queries"] == ref["num_valid_queries"]
    assert ours["num_skipped_queries"] == ref["num_skipped_queries"]
    np.testing.assert_allclose(ours["all_ap"], ref["all_ap"], atol=1e-12)
    np.testing.assert_allclose(ours["all_inp"], ref["all_inp"], atol=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    integer = seed % 2 == 0  # integer distances: many ties, ordered by gallery index
    case = _random_case(rng, num_q=int(rng.integers(1, 25)), num_g=int(rng.integers(1, 60)),
                        num_ids=int(rng.integers(1, 8)), num_cams=int(rng.integers(1, 4)), integer=integer,
                        dtype=np.float32 if seed % 4 < 2 else np.float64, distractors=seed % 3 == 0)
    max_rank = int(rng.integers(1, 80))  # often larger than the gallery
    try:
        ref = reference_evaluate(*case, max_rank=max_rank)
    except ValueError:
        with pytest.raises(ValueError, match="no valid query"):
            evaluate_rank(*case, max_rank=max_rank, chunk_size=int(rng.integers(1, 9)))
        return
    ours = evaluate_rank(*case, max_rank=max_rank, chunk_size=int(rng.integers(1, 9)))
    _assert_same(ours, ref)
    assert ours["cmc"].shape == (max_rank,) and ours["cmc"].dtype == np.float64


def test_hand_computed_ap_and_inp():
    # one query, 10 gallery items, true matches at ranks 1, 2, 4 and 7
    dist = np.arange(10, dtype=np.float32)[None, :]
    g_pids = np.array([5, 5, 9, 5, 9, 9, 5, 9, 9, 9])
    out = evaluate_rank(dist, np.array([5]), g_pids, np.array([0]), np.ones(10, dtype=int), max_rank=5)
    assert out["mAP"] == pytest.approx((1 / 1 + 2 / 2 + 3 / 4 + 4 / 7) / 4)
    assert round(out["mAP"], 4) == 0.8304
    assert out["mINP"] == pytest.approx(4 / 7)
    np.testing.assert_array_equal(out["cmc"], [1, 1, 1, 1, 1])


def test_same_camera_matches_are_removed_and_skipped_queries_counted():
    dist = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
    g_pids = np.array([1, 2, 1, 3])
    g_cams = np.array([0, 1, 1, 1])
    # query 0 (pid 1, cam 0): gallery 0 removed, match at kept rank 2 -> AP 1/2
    # query 1 (pid 3, cam 1): its only match shares its camera -> skipped
    out = evaluate_rank(dist, np.array([1, 3]), g_pids, np.array([0, 1]), g_cams, max_rank=3)
    assert out["num_valid_queries"] == 1 and out["num_skipped_queries"] == 1
    assert out["mAP"] == pytest.approx(0.5)
    np.testing.assert_array_equal(out["cmc"], [0, 1, 1])
    assert np.isnan(out["all_ap"][1]) and np.isnan(out["all_inp"][1])


def test_ties_are_ordered_by_gallery_index():
    dist = np.zeros((1, 3))
    out = evaluate_rank(dist, np.array([1]), np.array([2, 1, 1]), np.array([0]), np.array([1, 1, 1]), 3)
    assert out["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    np.testing.assert_array_equal(out["cmc"], [0, 1, 1])


def test_no_valid_query_and_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_rank(np.zeros((1, 2)), np.array([1]), np.array([2, 3]), np.array([0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(np.zeros((1, 2)), np.array([1]), np.array([1]), np.array([0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        evaluate_rank(np.array([[np.nan, 1.0]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]))


def _market_labels(folder):
    names = sorted(p.name for p in folder.glob("*.jpg"))
    return (np.array([int(n.split("_")[0]) for n in names]), np.array([int(n.split("_")[1][1]) - 1 for n in names]))


def test_real_market_devsplit_label_structure_against_reference():
    root = require(MARKET_DEVSPLIT)
    q_pids, q_cams = _market_labels(root / "query")
    g_pids, g_cams = _market_labels(root / "bounding_box_test")
    # queries whose identity has no gallery image from another camera (the devsplit has a few)
    expected_skipped = sum(not np.any((g_pids == p) & (g_cams != c)) for p, c in zip(q_pids, q_cams))
    assert expected_skipped > 0
    dist = np.random.default_rng(0).random((len(q_pids), len(g_pids))).astype(np.float32)
    ours = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    assert ours["num_skipped_queries"] == expected_skipped
    subset = np.r_[0:40, np.flatnonzero(np.isnan(ours["all_ap"]))[:2]]  # the loop reference is slow: a sample
    ref = reference_evaluate(dist[subset], q_pids[subset], g_pids, q_cams[subset], g_cams)
    np.testing.assert_allclose(ours["all_ap"][subset], ref["all_ap"], atol=1e-12)
    np.testing.assert_allclose(ours["all_inp"][subset], ref["all_inp"], atol=1e-12)
