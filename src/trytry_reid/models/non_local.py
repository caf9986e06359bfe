"""The non-local block (Wang et al., CVPR 2018 "Non-local Neural Networks"), embedded dot-product form.

For a feature map ``x`` with ``N = h * w`` positions, three 1x1 convolutions embed it into ``inner`` channels
(``theta``, ``phi``, ``g``); every position then receives the average of all positions' ``g`` weighted by the
dot products of their ``theta`` and ``phi`` embeddings divided by ``N``; a 1x1 convolution and a BatchNorm
(``W``) bring that back to the input's channels, and the block adds it to its input. ``W``'s BatchNorm starts
at zero scale, so a new block is the identity until it learns otherwise.

Parameter names follow fast-reid (``g``, ``theta``, ``phi``, ``W.0`` convolution, ``W.1`` BatchNorm). fast-reid
1.4.0, like the AGW baseline it comes from, builds its blocks with ``inner = 1``; the fast-reid trunks of the
catalog do the same so that its files load.
"""

from __future__ import annotations

import torch
from torch import nn


class NonLocal2d(nn.Module):
    """``[B, C, h, w] -> [B, C, h, w]``: ``x + W(softmax-free attention over positions)``."""

    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        if inner < 1:
            raise ValueError(f"NonLocal2d inner channels must be >= 1, got {inner}")
        self.inner = inner
        self.g = nn.Conv2d(channels, inner, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.W = nn.Sequential(nn.Conv2d(inner, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        queries = self.theta(x).flatten(2).transpose(1, 2)      # [B, N, inner]
        keys = self.phi(x).flatten(2)                           # [B, inner, N]
        values = self.g(x).flatten(2).transpose(1, 2)           # [B, N, inner]
        affinity = torch.matmul(queries, keys) / keys.shape[-1]  # [B, N, N], divided by N
        attended = torch.matmul(affinity, values)               # [B, N, inner]
        attended = attended.transpose(1, 2).reshape(batch, self.inner, height, width)
        return x + self.W(attended)
