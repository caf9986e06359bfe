"""CosFace (Wang et al. 2018, large margin cosine loss): identity classification by cosine similarity to
learnable class directions, with an additive margin on the true class.

``logits = scale * (cos(x, w_c) - margin * [c == y])`` then cross-entropy. The classifier lives in the loss
(its ``weights [num_classes, feat_dim]`` are trained with the model's optimizer, see ``losses/criterion.py``),
so a model trained with it needs no linear classifier. Because it compares directions, it shapes the
embedding for the cosine distance retrieval ranks with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CosFaceLoss(nn.Module):
    """``forward(features [B, D], labels [B]) -> (loss, {"accuracy": float})``."""

    def __init__(self, num_classes: int, feat_dim: int, scale: float = 30.0, margin: float = 0.25) -> None:
        super().__init__()
        if num_classes <= 0 or feat_dim <= 0 or scale <= 0 or not 0 <= margin < 1:
            raise ValueError(f"CosFaceLoss needs num_classes > 0, feat_dim > 0, scale > 0 and margin in [0, 1), "
                             f"got {num_classes}, {feat_dim}, {scale}, {margin}")
        self.scale, self.margin = float(scale), float(margin)
        self.weights = nn.Parameter(torch.randn(num_classes, feat_dim) * 0.01)

    def forward(self, features: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        if features.dim() != 2 or features.shape[1] != self.weights.shape[1] or labels.shape != features.shape[:1]:
            raise ValueError(f"CosFaceLoss expects features [B, {self.weights.shape[1]}] and labels [B], got "
                             f"{tuple(features.shape)} and {tuple(labels.shape)}")
        cosine = F.normalize(features.float(), dim=1) @ F.normalize(self.weights.float(), dim=1).T
        margins = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype) * self.margin
        loss = F.cross_entropy(self.scale * (cosine - margins), labels)
        accuracy = (cosine.detach().argmax(dim=1) == labels).float().mean().item()
        return loss, {"accuracy": accuracy}
