"""Center loss (Wen et al. 2016) as used by BoT: pulls each feature towards a learned centre of its identity."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CenterLoss(nn.Module):
    """``sum_i ||x_i - c_{y_i}||^2 / batch_size`` over features ``x [B, feat_dim]`` and labels ``y [B]``.

    The centres ``[num_classes, feat_dim]`` are an ``nn.Parameter`` (initialised from N(0, 1) as BoT). They
    are NOT meant for the model's optimizer: as in BoT the training engine gives them their own SGD at
    lr 0.5 and, before that step, rescales their gradient by ``1 / weight`` (the term's weight, e.g. 5e-4),
    so the centres move at a rate independent of how weakly the loss is weighted for the model.
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        if num_classes <= 0 or feat_dim <= 0:
            raise ValueError(
                f"CenterLoss needs num_classes > 0 and feat_dim > 0, got num_classes={num_classes}, "
                f"feat_dim={feat_dim}"
            )
        self.num_classes, self.feat_dim = num_classes, feat_dim
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
