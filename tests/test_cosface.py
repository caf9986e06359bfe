"""CosFace against its formula computed by hand; the model's retrieval feature switch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trytry_reid.losses.cosface import CosFaceLoss
from trytry_reid.models.reid_model import ReidModel


def test_loss_matches_the_formula_by_hand():
    loss_fn = CosFaceLoss(num_classes=2, feat_dim=2, scale=10.0, margin=0.2)
    with torch.no_grad():
        loss_fn.weights.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))  # directions (1, 0) and (0, 1)
    features = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # cosines: (1, 0) and (1/sqrt2, 1/sqrt2)
    labels = torch.tensor([0, 1])
    loss, stats = loss_fn(features, labels)
    c = 1 / math.sqrt(2)
    first = -math.log(math.exp(10 * 0.8) / (math.exp(10 * 0.8) + math.exp(0.0)))
    second = -math.log(math.exp(10 * (c - 0.2)) / (math.exp(10 * c) + math.exp(10 * (c - 0.2))))
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-5)
    assert stats["accuracy"] == 0.5  # the second row ties; argmax takes the first class


def test_margin_zero_is_a_scaled_cosine_softmax_and_weights_get_gradients():
    loss_fn = CosFaceLoss(num_classes=3, feat_dim=4, scale=5.0, margin=0.0)
    features = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss, _ = loss_fn(features, labels)
    cosine = torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(loss_fn.weights, dim=1).T
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(5.0 * cosine, labels).item(), rel=1e-6)
    loss.backward()
    assert loss_fn.weights.grad is not None and loss_fn.weights.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="margin in"):
        CosFaceLoss(3, 4, margin=1.5)


def test_retrieval_feature_chooses_the_vector_before_or_after_bnneck():
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    x = torch.randn(4, 3, 8, 4)
    embeddings = {}
    for field in ("bn_features", "features"):
        model = ReidModel(trunk, 8, num_classes=0, retrieval_feature=field).eval()
        with torch.no_grad():
            model.bnneck.running_mean.fill_(0.5)  # make the BatchNorm change the vector
            out = model(x)
            embeddings[field] = model.embed(x)
        assert torch.allclose(embeddings[field], torch.nn.functional.normalize(getattr(out, field), dim=1))
    assert not torch.allclose(embeddings["bn_features"], embeddings["features"])
    with pytest.raises(ValueError, match="retrieval_feature"):
        ReidModel(trunk, 8, num_classes=0, retrieval_feature="logits")
