"""k-reciprocal re-ranking against the dense loop reference in reference_eval.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from trytry_reid.evaluation import evaluate_rank
from trytry_reid.evaluation.rerank import rerank

from reference_eval import reference_rerank


def _clustered_features(rng, num_ids, per_id, dim):
    centers = rng.normal(size=(num_ids, dim))
    labels = np.repeat(np.arange(1, num_ids + 1), per_id)
    return (centers[labels - 1] + 0.6 * rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def _dense_reference(qf, gf, **kw):
    return reference_rerank(cdist(qf, gf), cdist(qf, qf), cdist(gf, gf), **kw)


@pytest.mark.parametrize("k1,k2,lam,chunk", [(20, 6, 0.3, 1024), (6, 3, 0.5, 7), (5, 1, 0.0, 3), (3, 2, 1.0, 4)])
def test_matches_dense_reference(k1, k2, lam, chunk):
    rng = np.random.default_rng(k1 * 10 + k2)
    feats, labels = _clustered_features(rng, num_ids=12, per_id=6, dim=8)
    is_query = np.arange(len(feats)) % 6 == 0
    qf, gf = feats[is_query], feats[~is_query]
    ours = rerank(qf, gf, k1=k1, k2=k2, lambda_value=lam, chunk_size=chunk, pair_budget=200)
    ref = _dense_reference(qf, gf, k1=k1, k2=k2, lambda_value=lam)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_metrics_after_rerank_match_reference_and_help_on_clusters():
    rng = np.random.default_rng(5)
    feats, labels = _clustered_features(rng, num_ids=15, per_id=8, dim=6)
    is_query = np.arange(len(feats)) % 8 == 0
    qf, gf = feats[is_query], feats[~is_query]
    q_pids, g_pids = labels[is_query], labels[~is_query]
    cams = (np.zeros(len(qf), int), np.ones(len(gf), int))
    ours = evaluate_rank(rerank(qf, gf), q_pids, g_pids, *cams, max_rank=10)
    ref = evaluate_rank(_dense_reference(qf, gf), q_pids, g_pids, *cams, max_rank=10)
    plain = evaluate_rank(cdist(qf, gf), q_pids, g_pids, *cams, max_rank=10)
    assert ours["mAP"] == pytest.approx(ref["mAP"], abs=1e-4)
    np.testing.assert_allclose(ours["cmc"], ref["cmc"], atol=1e-4)
    assert ours["mAP"] > plain["mAP"]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="k1"):
        rerank(np.ones((2, 3)), np.ones((2, 3)), k1=0)
    with pytest.raises(ValueError, match="feature dimension"):
        rerank(np.ones((2, 3)), np.ones((2, 4)))
