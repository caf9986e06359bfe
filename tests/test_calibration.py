"""Verification calibration: pair histograms under the Market protocol, ROC / AUC / EER / TPR@FPR checked
by hand and against scikit-learn's exact roc_curve / roc_auc_score on a subsample, within the stated bounds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from trytry_reid.evaluation.calibration import calibrate, compact_roc, operating_point, rates_at, roc_from_histograms
from trytry_reid.evaluation.distance import compute_distance
from trytry_reid.evaluation.pair_histograms import pair_histograms, pair_histograms_from_features


def clustered(num: int, num_ids: int, dim: int, noise: float, rng: np.random.Generator, centres: np.ndarray):
    """Unit features around identity centres, with pids 1..num_ids-1 and 4 cameras."""
    pids = rng.integers(1, num_ids, num)
    x = centres[pids] + noise * rng.normal(size=(num, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), pids, rng.integers(0, 4, num)


@pytest.fixture(scope="module")
def pairs():
    """400 queries x 1500 gallery (600k pairs), 100 gallery distractors (pid 0)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(60, 24))
    qf, qp, qc = clustered(400, 60, 24, 1.1, rng, centres)
    gf, gp, gc = clustered(1500, 60, 24, 1.1, rng, centres)
    gp[:100] = 0
    return qf, gf, qp, gp, qc, gc


def exact_labels(distmat, qp, gp, qc, gc):
    """Brute force from the definition: kept pairs' labels (True = positive) and distances."""
    same = (qp[:, None] == gp[None, :]) & (gp[None, :] != 0)
    kept = ~(same & (qc[:, None] == gc[None, :]))
    return same[kept], distmat[kept].astype(np.float64), int((~kept).sum())


def test_pairs_are_split_by_the_market_protocol_by_hand():
    # queries: pid 1 cam 0, pid 0 cam 1 (pid 0 is a label like any other: the digit zero)
    # gallery: pid 1 cam 0 (left out for query 0), pid 1 cam 2 (positive), pid 2 cam 0, pid 0 cam 3
    distmat = np.array([[0.10, 0.20, 0.30, 0.40],
                        [0.50, 0.60, 0.02, 0.05]], dtype=np.float32)
    hist = pair_histograms(distmat, np.array([1, 0]), np.array([1, 1, 2, 0]), np.array([0, 1]),
                           np.array([0, 2, 0, 3]), bins=8, max_distance=2.0)
    assert hist.excluded == 1 and hist.num_positive == 2 and hist.num_negative == 5
    # bins of width 0.25, (i w, (i + 1) w]: positives 0.2 and 0.05 (pid 0 with pid 0) -> bin 0;
    # negatives 0.02 -> 0; 0.3, 0.4, 0.5 -> 1; 0.6 -> 2
    assert hist.positive.tolist() == [2, 0, 0, 0, 0, 0, 0, 0]
    assert hist.negative.tolist() == [1, 3, 1, 0, 0, 0, 0, 0]
    roc = roc_from_histograms(hist)
    assert roc.thresholds[:3].tolist() == [0.25, 0.5, 0.75]
    np.testing.assert_allclose(roc.fpr[:3], [1 / 5, 4 / 5, 1.0])
    np.testing.assert_allclose(roc.tpr[:3], [1.0, 1.0, 1.0])
    # AUC: both positives share bin 0 with one negative (2 tied pairs, counted half): (2 x 4 + 2 x 0.5) / 10
    calibration = calibrate(hist, target_fprs=(0.2, 0.1))
    assert calibration.auc == pytest.approx(0.9)
    assert calibration.auc_error_bound == pytest.approx(0.1)
    assert calibration.at(0.2).threshold == 0.25 and calibration.at(0.2).fpr == pytest.approx(1 / 5)
    low = calibration.at(0.1)                       # even bin 0 exceeds FPR 0.1: nothing is accepted
    assert (low.threshold, low.fpr, low.tpr) == (0.0, 0.0, 0.0)


def test_an_edge_distance_counts_as_at_or_below_the_threshold():
    """Bin i holds (i w, (i + 1) w]: a distance equal to an edge is accepted by that edge's threshold."""
    hist = pair_histograms(np.array([[0.5, 0.5 + 2 ** -15, 1.0]], dtype=np.float32), np.array([1]),
                           np.array([1, 2, 3]), np.array([0]), np.array([1, 0, 0]))
    roc = roc_from_histograms(hist)
    assert rates_at(roc, 0.5) == (0.0, 1.0)
    assert rates_at(roc, 0.5 + 2 ** -15) == (0.5, 1.0)
    assert rates_at(roc, 0.49) == (0.0, 0.0)


def test_histograms_equal_a_brute_force_count_and_do_not_depend_on_chunking(pairs):
    qf, gf, qp, gp, qc, gc = pairs
    distmat = compute_distance(qf, gf, metric="cosine")
    labels, dist, excluded = exact_labels(distmat, qp, gp, qc, gc)
    whole = pair_histograms(distmat, qp, gp, qc, gc)
    edges = whole.upper_edges()
    index = np.clip(np.searchsorted(edges, dist, side="left"), 0, whole.bins - 1)  # first edge >= d
    np.testing.assert_array_equal(whole.positive, np.bincount(index[labels], minlength=whole.bins))
    np.testing.assert_array_equal(whole.negative, np.bincount(index[~labels], minlength=whole.bins))
    assert whole.excluded == excluded
    chunked = pair_histograms(distmat, qp, gp, qc, gc, chunk_elements=7000)
    np.testing.assert_array_equal(chunked.positive, whole.positive)
    np.testing.assert_array_equal(chunked.negative, whole.negative)
    # From the features, chunk by chunk: a matmul over fewer rows may round a distance differently by an
    # ulp, moving a pair to the adjacent bin; the counts and the cumulative counts (the ROC) agree otherwise.
    recomputed = pair_histograms_from_features(qf, gf, qp, gp, qc, gc, chunk_elements=5000)
    assert (recomputed.num_positive, recomputed.num_negative) == (whole.num_positive, whole.num_negative)
    for mine, reference in ((recomputed.positive, whole.positive), (recomputed.negative, whole.negative)):
        assert np.abs(np.cumsum(mine) - np.cumsum(reference)).max() <= 20


def test_figures_match_sklearn_within_the_stated_bounds(pairs):
    qf, gf, qp, gp, qc, gc = pairs
    distmat = compute_distance(qf, gf, metric="cosine")
    labels, dist, _ = exact_labels(distmat, qp, gp, qc, gc)
    calibration = calibrate(pair_histograms(distmat, qp, gp, qc, gc))
    exact_auc = roc_auc_score(labels, -dist)
    assert 0.7 < exact_auc < 0.99                                  # a realistic, imperfect model
    assert calibration.auc_error_bound < 1e-4
    assert abs(calibration.auc - exact_auc) <= calibration.auc_error_bound
    fpr, tpr, _ = roc_curve(labels, -dist, drop_intermediate=False)
    for point in calibration.operating_points:
        best_exact = tpr[fpr <= point.target_fpr].max()
        assert point.tpr <= best_exact + 1e-12 <= point.tpr + point.tpr_error_bound + 2e-12
        accepted = dist <= point.threshold                           # the threshold's own rates, exactly
        assert point.fpr == pytest.approx(accepted[~labels].mean(), abs=1e-12) and point.fpr <= point.target_fpr
        assert point.tpr == pytest.approx(accepted[labels].mean(), abs=1e-12)
    fnr = 1 - tpr
    i = int(np.argmax(fpr >= fnr))
    a = (fnr[i - 1] - fpr[i - 1]) / ((fnr[i - 1] - fpr[i - 1]) + (fpr[i] - fnr[i]))
    exact_eer = fpr[i - 1] + a * (fpr[i] - fpr[i - 1])
    assert abs(calibration.eer - exact_eer) <= calibration.eer_error_bound + 1e-12


def test_missing_positive_or_negative_pairs_is_a_clear_error():
    distmat = np.full((2, 3), 0.5, dtype=np.float32)
    all_same_camera = pair_histograms(distmat, np.array([1, 2]), np.array([1, 2, 3]), np.array([0, 0]),
                                      np.array([0, 0, 0]))
    with pytest.raises(ValueError, match=r"no positive .*\(0 positive, 4 negative, 2 same-camera"):
        calibrate(all_same_camera)
    one_identity = pair_histograms(distmat, np.array([1, 1]), np.array([1, 1, 1]), np.array([0, 1]),
                                   np.array([1, 2, 2]))
    with pytest.raises(ValueError, match="no negative"):
        calibrate(one_identity)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="NaN or infinite"):
        pair_histograms(np.array([[np.nan]], dtype=np.float32), np.array([1]), np.array([1]), np.array([0]),
                        np.array([1]))
    with pytest.raises(ValueError, match="g_pids must be a 1-D integer array of length 2"):
        pair_histograms(np.zeros((1, 2)), np.array([1]), np.array([1]), np.array([0]), np.array([1, 2]))
    with pytest.raises(ValueError, match="target FPR"):
        operating_point(roc_from_histograms(pair_histograms(
            np.array([[0.1, 0.9]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]))), 0.0)


def test_compact_roc_keeps_points_at_or_below_each_grid_fpr(pairs):
    qf, gf, qp, gp, qc, gc = pairs
    calibration = calibrate(pair_histograms_from_features(qf, gf, qp, gp, qc, gc))
    compact = compact_roc(calibration.roc, grid=(1e-3, 1e-2, 0.5))
    assert len(compact["threshold"]) == 3 and compact["fpr"] == sorted(compact["fpr"])
    for grid_value, fpr, threshold in zip((1e-3, 1e-2, 0.5), compact["fpr"], compact["threshold"]):
        assert fpr <= grid_value and rates_at(calibration.roc, threshold)[0] == fpr
    payload = calibration.to_json()
    assert sum(payload["histogram"]["positive"]) == payload["num_positive"] == calibration.histograms.num_positive
    assert len(payload["histogram"]["negative"]) == 256
