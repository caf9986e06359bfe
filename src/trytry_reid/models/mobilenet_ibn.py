"""MobileNetV2 with instance normalisation in its early blocks (IBN-a, Pan et al. 2018), from ImageNet weights.

Instance normalisation removes each image's own channel means and variances: much of what differs between
two cameras (light, colour cast, contrast) and little of who is in the picture. IBN-a keeps it to the early
layers, where features carry appearance style, and to half of their channels, so that the other half keeps
batch normalisation's discriminative statistics. In ResNet it replaces the first BatchNorm of each bottleneck
of the first three stages; here it replaces the first BatchNorm of MobileNetV2's blocks 1-6 (the 16-, 24- and
32-channel stages, strides 2 to 8; in blocks 2-6 that is the BatchNorm after the expansion convolution).

:class:`HalfInstanceNorm2d` keeps BatchNorm2d's parameter and buffer names (``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``) at full width, so the ImageNet MobileNetV2 file
loads into the new trunk unchanged: the instance-normalised channels start with the ImageNet BatchNorm's
scale and shift of those channels, and the others are the ImageNet BatchNorm as it was.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

IBN_BLOCKS = range(1, 7)  # MobileNetV2 ``features`` indices: the 16-, 24- and 32-channel inverted residuals
IN_RATIO = 0.5  # IBN-a's share of instance-normalised channels

TrunkFactory = Callable[[int], tuple[nn.Module, int]]


class HalfInstanceNorm2d(nn.Module):
    """The first ``in_channels`` channels instance-normalised, the rest batch-normalised; one affine over all.

    Built from a ``BatchNorm2d`` whose affine and running statistics it takes over (same names and shapes).
    The running statistics of the instance-normalised channels are kept but never used nor updated.
    """

    def __init__(self, bn: nn.BatchNorm2d, ratio: float = IN_RATIO) -> None:
        super().__init__()
        if not (bn.affine and bn.track_running_stats):
            raise ValueError("HalfInstanceNorm2d replaces a BatchNorm2d with an affine and running statistics")
        self.num_features, self.eps, self.momentum = bn.num_features, bn.eps, bn.momentum
        self.in_channels = int(bn.num_features * ratio)
        if not 0 < self.in_channels < bn.num_features:
            raise ValueError(f"instance-normalised share {ratio} of {bn.num_features} channels leaves no channel "
                             f"to one of the two normalisations")
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] -> [B, C, H, W]."""
        n = self.in_channels
        instance = F.instance_norm(x[:, :n], weight=self.weight[:n], bias=self.bias[:n], eps=self.eps)
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        batch = F.batch_norm(x[:, n:], self.running_mean[n:], self.running_var[n:], self.weight[n:],
                             self.bias[n:], self.training, momentum or 0.0, self.eps)
        return torch.cat([instance, batch], dim=1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, instance-normalised={self.in_channels}, eps={self.eps}"


def instance_norm_blocks(trunk: nn.Module, blocks: Iterable[int] = IBN_BLOCKS) -> nn.Module:
    """Replace, in place, the first BatchNorm of each of MobileNetV2's ``features[i]`` blocks in ``blocks``."""
    for index in blocks:
        first = trunk.features[index].conv[0]  # Conv2dNormActivation: (conv, BatchNorm2d, ReLU6)
        if not isinstance(first[1], nn.BatchNorm2d):
            raise TypeError(f"features.{index}.conv.0.1 is a {type(first[1]).__name__}, expected BatchNorm2d")
        first[1] = HalfInstanceNorm2d(first[1])
    return trunk


def ibn_a(build: TrunkFactory) -> TrunkFactory:
    """The MobileNetV2 trunk factory ``build`` with instance normalisation in blocks IBN_BLOCKS."""
    def factory(last_stride: int = 2) -> tuple[nn.Module, int]:
        trunk, dim = build(last_stride)
        return instance_norm_blocks(trunk), dim

    factory.__name__ = f"{build.__name__}_ibn_a"
    return factory
