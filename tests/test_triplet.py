"""TripletLoss values on hand-computed cases, its statistics, distances and gradient safety."""

from __future__ import annotations

import math

import pytest
import torch

from trytry_reid.catalog import UnknownNameError
from trytry_reid.evaluation.distance import cosine_distances, euclidean_distances
from trytry_reid.losses.triplet import TripletLoss

# 1-D points 0, 2 (identity 0) and 3, 6 (identity 1). Pairwise distances:
#   d(0,2)=2 d(0,3)=3 d(0,6)=6 d(2,3)=1 d(2,6)=4 d(3,6)=3
POINTS = torch.tensor([[0.0], [2.0], [3.0], [6.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def test_batch_hard_hand_computed():
    # anchor 0: d_ap 2, hardest neg 3 -> relu(2-3+.3)=0;  anchor 2: d_ap 2, neg 3 at 1 -> 1.3
    # anchor 3: d_ap 3, neg 2 at 1 -> 2.3;               anchor 6: d_ap 3, neg 2 at 4 -> 0
    loss, stats = TripletLoss("hardest", margin=0.3)(POINTS, LABELS)
    assert loss.item() == pytest.approx((1.3 + 2.3) / 4)
    assert stats["triplets"] == 4 and stats["valid_triplets"] == 2
    assert stats["valid_fraction"] == pytest.approx(0.5)
    assert stats["mean_pos_dist"] == pytest.approx((2 + 2 + 3 + 3) / 4)
    assert stats["mean_neg_dist"] == pytest.approx((3 + 1 + 1 + 4) / 4)


def test_soft_margin_hand_computed():
    # same triplets as batch hard: d_ap - d_an = -1, 1, 2, -1
    loss, stats = TripletLoss("hardest", margin=0.3, soft=True)(POINTS, LABELS)
    softplus = [math.log1p(math.exp(v)) for v in (-1, 1, 2, -1)]
    assert loss.item() == pytest.approx(sum(softplus) / 4)
    assert stats["valid_triplets"] == 2  # still counts margin violations


def test_batch_all_averages_over_violating_triplets():
    # 8 triplets; positive losses: anchor 2 with neg 3 (1.3), anchor 3 with negs 0 (0.3) and 2 (2.3)
    loss, stats = TripletLoss("all", margin=0.3)(POINTS, LABELS)
    assert loss.item() == pytest.approx((1.3 + 0.3 + 2.3) / 3)
    assert stats["triplets"] == 8 and stats["valid_triplets"] == 3
    assert stats["valid_fraction"] == pytest.approx(3 / 8)


def test_semihard_hand_computed():
    # semi-hard negatives (d_ap < d_an < d_ap + 1.5): anchor 0 (d_ap 2): neg 3 at 3 -> 0.5;
    # anchor 2: negs at 1, 4 -> none; anchor 3 (d_ap 3): negs at 3, 1 -> none; anchor 6: neg 2 at 4 -> 0.5
    loss, stats = TripletLoss("semihard", margin=1.5)(POINTS, LABELS)
    assert stats["triplets"] == 2
    assert loss.item() == pytest.approx(0.5)


def test_cosine_metric_hand_computed():
    # identity 0: (1,0) and (1,1); identity 1: (0,1) and (-1,0)
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    c = 1 - 1 / math.sqrt(2)  # cosine distance at 45 degrees
    expected = torch.tensor([[0, c, 1, 2], [c, 0, c, 1 + 1 / math.sqrt(2)], [1, c, 0, 1], [2, 2 - c, 1, 0]])
    assert torch.allclose(cosine_distances(x, x), expected, atol=1e-6)
    loss, _ = TripletLoss("hardest", margin=0.1, metric="cosine")(x, torch.tensor([0, 0, 1, 1]))
    # anchors: (1,0): d_ap c, hardest neg 1 -> 0; (1,1): d_ap c, hardest neg c -> 0.1;
    # (0,1): d_ap 1, hardest neg c -> 1 - c + .1; (-1,0): d_ap 1, hardest neg 2-c -> 0
    assert loss.item() == pytest.approx((0.1 + 1 - c + 0.1) / 4, abs=1e-6)


def test_euclidean_distances_match_brute_force():
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    expected = torch.tensor([[math.dist(a.tolist(), b.tolist()) for b in x] for a in x])
    dist = euclidean_distances(x, x)
    off = ~torch.eye(7, dtype=torch.bool)
    assert torch.allclose(dist[off], expected[off], rtol=1e-4, atol=1e-5)
    assert dist.diagonal().max() < 2e-3  # identical rows: the clamp gives ~1e-6, cancellation up to ~1e-3


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("selector", ["hardest", "semihard", "random_negative", "all"])
def test_gradients_are_finite_with_duplicate_rows(metric, selector):
    base = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    x = base.repeat(2, 1).requires_grad_(True)  # every image appears twice: distance 0 between positives
    labels = torch.arange(4).repeat(2)
    loss, _ = TripletLoss(selector, margin=0.3, metric=metric)(x, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_no_triplets_gives_a_zero_loss_with_a_graph():
    x = torch.randn(4, 3, requires_grad=True)
    loss, stats = TripletLoss("hardest")(x, torch.arange(4))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert stats["triplets"] == 0 and stats["valid_fraction"] == 0.0
    assert math.isnan(stats["mean_pos_dist"]) and math.isnan(stats["mean_neg_dist"])


def test_gradient_pulls_positives_together_and_pushes_the_negative_away():
    x = torch.tensor([[0.0], [2.0], [1.0]], requires_grad=True)  # anchor 0, positive at 2, negative at 1
    loss, _ = TripletLoss("hardest", margin=0.3)(x, torch.tensor([0, 0, 1]))
    loss.backward()
    # anchor 0 (d_ap 2, d_an 1) and anchor 2 (d_ap 2, d_an 1) both violate; descent moves 0 and 2 closer
    assert x.grad[0, 0] < 0 < x.grad[1, 0]


def test_invalid_arguments_are_refused():
    with pytest.raises(UnknownNameError, match="semihard"):
        TripletLoss("semi_hard")
    with pytest.raises(UnknownNameError, match="cosine"):
        TripletLoss(metric="cosin")
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin=-0.1)
    with pytest.raises(ValueError, match="labels"):
        TripletLoss()(torch.randn(4, 3), torch.arange(3))
