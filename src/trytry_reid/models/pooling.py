"""Global pooling of a feature map ``[B, C, h, w]`` to a vector ``[B, C]``: average, max or GeM."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class GlobalMaxPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


class GeM(nn.Module):
    """Generalised mean pooling (Radenovic et al. 2018): ``mean(x.clamp(eps) ** p) ** (1 / p)`` per channel.

    ``p`` is one learnable scalar (p=1 is average pooling, p -> inf approaches max pooling). The clamp keeps
    the power defined for the non-negative activations a ReLU trunk produces.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM p must be > 0, got {p}")
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4f}, eps={self.eps}"


POOLINGS: dict[str, Callable[[], nn.Module]] = {
    "avg": GlobalAvgPool,
    "max": GlobalMaxPool,
    "gem": GeM,
}
