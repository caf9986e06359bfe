"""Distances against scipy's cdist, flip fusion and average query expansion against loop references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from trytry_reid.catalog import UnknownNameError
from trytry_reid.evaluation.distance import average_query_expansion, compute_distance, fuse_flip


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_matches_scipy_cdist(metric, chunk_size):
    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(23, 16)), rng.normal(size=(31, 16))
    ours = compute_distance(qf, gf, metric=metric, chunk_size=chunk_size)
    assert ours.dtype == np.float32 and ours.shape == (23, 31)
    np.testing.assert_allclose(ours, cdist(qf, gf, metric=metric), atol=1e-5)


def test_torch_float32_input_and_identical_vectors_give_zero():
    f = torch.randn(5, 8)
    dist = compute_distance(f, f)
    np.testing.assert_allclose(np.diag(dist), 0, atol=2e-3)  # clamp: never NaN from a tiny negative
    assert np.isfinite(dist).all()


def test_bad_inputs_raise():
    with pytest.raises(UnknownNameError, match="unknown metric 'manhattan'.*cosine, euclidean"):
        compute_distance(np.ones((2, 3)), np.ones((2, 3)), metric="manhattan")
    with pytest.raises(ValueError, match="feature dimension"):
        compute_distance(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        compute_distance(np.ones(3), np.ones((2, 3)))


def test_fuse_flip_is_normalised_mean():
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 2.0]])
    np.testing.assert_allclose(fuse_flip(a, b).numpy(), [[2 / 5 ** 0.5, 1 / 5 ** 0.5]], atol=1e-6)
    np.testing.assert_allclose(fuse_flip(a, a).numpy(), [[1.0, 0.0]])


def test_average_query_expansion_matches_loop_reference():
    rng = np.random.default_rng(1)
    qf, gf = rng.normal(size=(6, 5)), rng.normal(size=(9, 5))
    k, alpha = 3, 2.0
    new_q, new_g = average_query_expansion(qf, gf, k=k, alpha=alpha, chunk_size=4)
    g = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    for i in range(len(qf)):
        q = qf[i] / np.linalg.norm(qf[i])
        sims = g @ q
        acc = q.copy()
        for j in np.argsort(-sims)[:k]:
            acc += max(sims[j], 0.0) ** alpha * g[j]
        np.testing.assert_allclose(new_q[i], acc / np.linalg.norm(acc), atol=1e-5)
    np.testing.assert_allclose(new_g, g, atol=1e-6)


def test_the_aqe_option_ranks_the_expanded_features():
    from trytry_reid.data.datasets import Record
    from trytry_reid.evaluation.retrieval import rank_features

    rng = np.random.default_rng(3)
    qf, gf = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    query = [Record(f"q{i}", i % 3 + 1, 0) for i in range(6)]
    gallery = [Record(f"g{i}", i % 3 + 1, 1) for i in range(20)]
    expanded_q, expanded_g = average_query_expansion(qf, gf, k=3)
    result = rank_features("set", query, gallery, qf, gf, metric="cosine", aqe=3)
    np.testing.assert_allclose(result.distmat, compute_distance(expanded_q, expanded_g, "cosine"), atol=1e-6)
    plain = rank_features("set", query, gallery, qf, gf, metric="cosine")
    assert not np.allclose(plain.distmat, result.distmat)
    # the verification figures describe the model's own features, the distance a served threshold is compared to
    assert result.calibration.auc == plain.calibration.auc
    np.testing.assert_array_equal(result.calibration.histograms.positive, plain.calibration.histograms.positive)
    np.testing.assert_array_equal(result.query_features, qf)
