"""CenterLoss and CrossEntropyLoss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from trytry_reid.losses.center import CenterLoss
from trytry_reid.losses.cross_entropy import CrossEntropyLoss


def test_center_loss_hand_computed_value_and_gradients():
    loss_fn = CenterLoss(num_classes=2, feat_dim=2)
    with torch.no_grad():
        loss_fn.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 1.0]], requires_grad=True)
    loss, stats = loss_fn(x, torch.tensor([0, 1, 1]))
    # ||(1,2)-(0,0)||^2 = 5, ||(3,4)-(1,1)||^2 = 13, ||(1,1)-(1,1)||^2 = 0 -> 18 / batch size 3
    assert loss.item() == pytest.approx(6.0) and stats == {}
    loss.backward()
    # d/dx_i = 2 (x_i - c_yi) / 3; d/dc_k = -2 sum_{i: y_i = k} (x_i - c_k) / 3
    assert torch.allclose(x.grad, torch.tensor([[2.0, 4.0], [4.0, 6.0], [0.0, 0.0]]) / 3)
    assert torch.allclose(loss_fn.centers.grad, torch.tensor([[-2.0, -4.0], [-4.0, -6.0]]) / 3)


def test_center_loss_refuses_bad_labels_and_shapes():
    loss_fn = CenterLoss(num_classes=3, feat_dim=4)
    assert isinstance(loss_fn.centers, torch.nn.Parameter) and loss_fn.centers.shape == (3, 4)
    with pytest.raises(ValueError, match="label 3 is outside"):
        loss_fn(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="label -1"):
        loss_fn(torch.randn(2, 4), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"features \[B, 4\]"):
        loss_fn(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        CenterLoss(0, 4)


def test_cross_entropy_hand_computed_with_and_without_smoothing():
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])

    def log_softmax(row):
        norm = math.log(sum(math.exp(v) for v in row))
        return [v - norm for v in row]

    rows = [log_softmax(r) for r in logits.tolist()]
    plain = -sum(r[y] for r, y in zip(rows, labels.tolist())) / 3
    loss, stats = CrossEntropyLoss()(logits, labels)
    assert loss.item() == pytest.approx(plain, rel=1e-6)
    assert stats["accuracy"] == pytest.approx(2 / 3)  # rows 0 and 2 are right, row 1 is wrong
    # smoothing eps over C classes: target = (1 - eps) one-hot + eps / C
    eps = 0.1
    smoothed = -sum((1 - eps) * r[y] + eps / 2 * sum(r) for r, y in zip(rows, labels.tolist())) / 3
    loss, _ = CrossEntropyLoss(label_smoothing=eps)(logits, labels)
    assert loss.item() == pytest.approx(smoothed, rel=1e-6)


def test_cross_entropy_refuses_bad_arguments():
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="logits"):
        CrossEntropyLoss()(torch.randn(3, 4), torch.tensor([0, 1]))
