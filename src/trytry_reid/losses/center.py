"""Center loss (Wen et al. 2016) as used by BoT: pulls each feature towards a learned centre of its identity."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CenterLoss(nn.Module):
    """``sum_i ||x_i - c_{y_i}||^2 / batch_size`` over features ``x [B, feat_dim]`` and labels ``y [B]``.

    The centers ``[num_classes, feat_dim]`` are an ``nn.Parameter`` (initialised from N(0, 1) as BoT). They
    are NOT trained by the model's optimizer: ``own_optimizer_lr`` asks the training engine for a separate SGD
    at that rate (BoT: 0.5), and the engine divides their gradient by the term's weight (e.g. 5e-4) before
    that step, so the centers move at a rate independent of how weakly the loss is weighted for the model.
    """

    def __init__(self, num_classes: int, feat_dim: int, lr: float = 0.5) -> None:
        super().__init__()
        if num_classes <= 0 or feat_dim <= 0 or lr <= 0:
            raise ValueError(
                f"CenterLoss needs num_classes > 0, feat_dim > 0 and lr > 0, got num_classes={num_classes}, "
                f"feat_dim={feat_dim}, lr={lr}"
            )
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.own_optimizer_lr = float(lr)
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, features: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        if features.dim() != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"CenterLoss expects features [B, {self.feat_dim}], got {tuple(features.shape)}")
        if labels.shape != (features.shape[0],):
            raise ValueError(f"CenterLoss expects labels [{features.shape[0]}], got {tuple(labels.shape)}")
        low, high = int(labels.min().item()), int(labels.max().item())
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"CenterLoss label {bad} is outside [0, {self.num_classes - 1}] (num_classes)")
        diff = features - self.centers[labels]
        return diff.pow(2).sum() / features.shape[0], {}
