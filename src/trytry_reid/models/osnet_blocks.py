"""The layers of OSNet (Zhou et al., ICCV 2019 "Omni-Scale Feature Learning for Person Re-Identification";
TPAMI 2021 "Learning Generalisable Omni-Scale Representations for Person Re-Identification").

An omni-scale residual block reduces the channels with a 1x1 convolution, runs ``T = 4`` streams of 1, 2, 3 and
4 "lite" 3x3 convolutions (each a linear 1x1 convolution followed by a depthwise 3x3, BatchNorm, ReLU), so each
stream sees a larger receptive field, weights every stream's channels with one shared gate (a squeeze-excite
style mini-network: global average, 1x1 down by 16, ReLU, 1x1 up, sigmoid), sums the streams and restores the
channels with a linear 1x1 convolution before the residual sum.

Parameter names follow torchreid's files, so its checkpoints load without renaming (docs/MODEL_ZOO.md, "Key
tables"): a convolution unit holds ``conv`` and ``bn`` (``bn`` is an affine InstanceNorm in an instance-
normalised stem); the ICCV layout names its streams ``conv2a`` (one unit) and ``conv2b`` .. ``conv2d``
(sequences), the TPAMI layout ``conv2.<t>.layers.<i>``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STREAMS = 4  # T: streams of depth 1..T in every block
GATE_REDUCTION = 16
BOTTLENECK_REDUCTION = 4


class ConvUnit(nn.Module):
    """Convolution (no bias) -> normalisation -> optional ReLU; ``norm``: "batch", "instance" (affine) or None."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 norm: str | None = "batch", relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                              bias=False)
        if norm not in ("batch", "instance", None):
            raise ValueError(f"ConvUnit norm must be 'batch', 'instance' or None, got {norm!r}")
        self.bn = nn.BatchNorm2d(out_channels) if norm == "batch" else \
            nn.InstanceNorm2d(out_channels, affine=True) if norm == "instance" else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class LiteConv3x3(nn.Module):
    """A linear 1x1 convolution, a depthwise 3x3 convolution, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class ChannelGate(nn.Module):
    """Per-channel weights in (0, 1) from the input's global average; returns the input scaled by them."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // GATE_REDUCTION, 1)
        self.fc2 = nn.Conv2d(channels // GATE_REDUCTION, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * weights


class LiteStream(nn.Module):
    """``depth`` lite 3x3 convolutions in a row (the TPAMI layout's stream, ``layers.<i>``)."""

    def __init__(self, channels: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(LiteConv3x3(channels, channels) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


ICCV_STREAMS = ("conv2a", "conv2b", "conv2c", "conv2d")


class OmniScaleBlock(nn.Module):
    """One omni-scale residual block, ``[B, in, h, w] -> [B, out, h, w]``.

    Args:
        layout: "iccv" (osnet_x*, osnet_ibn) or "tpami" (osnet_ain): the parameter names of the streams.
        instance_norm: where an affine InstanceNorm goes: None; "after" (on the residual sum, before the final
            ReLU: OSNet-IBN's first stage); "inside" (on the residual branch, which then has no BatchNorm, before
            the sum: OSNet-AIN's searched blocks).
    """

    def __init__(self, in_channels: int, out_channels: int, layout: str = "iccv",
                 instance_norm: str | None = None) -> None:
        super().__init__()
        if instance_norm not in (None, "after", "inside"):
            raise ValueError(f"instance_norm must be None, 'after' or 'inside', got {instance_norm!r}")
        mid = out_channels // BOTTLENECK_REDUCTION
        self.conv1 = ConvUnit(in_channels, mid)
        if layout == "iccv":  # conv2a is one lite convolution, conv2b .. conv2d sequences of 2 .. 4
            self.conv2a = LiteConv3x3(mid, mid)
            for depth, name in zip(range(2, STREAMS + 1), ICCV_STREAMS[1:]):
                setattr(self, name, nn.Sequential(*(LiteConv3x3(mid, mid) for _ in range(depth))))
        elif layout == "tpami":
            self.conv2 = nn.ModuleList(LiteStream(mid, depth) for depth in range(1, STREAMS + 1))
        else:
            raise ValueError(f"layout must be 'iccv' or 'tpami', got {layout!r}")
        self.layout = layout
        self.gate = ChannelGate(mid)
        self.conv3 = ConvUnit(mid, out_channels, norm=None if instance_norm == "inside" else "batch", relu=False)
        self.downsample = ConvUnit(in_channels, out_channels, relu=False) if in_channels != out_channels else None
        self.instance_norm = instance_norm
        if instance_norm is not None:
            self.IN = nn.InstanceNorm2d(out_channels, affine=True)

    def streams(self) -> list[nn.Module]:
        if self.layout == "tpami":
            return list(self.conv2)
        return [getattr(self, name) for name in ICCV_STREAMS]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        branch = self.conv3(sum(self.gate(stream(reduced)) for stream in self.streams()))
        if self.instance_norm == "inside":
            branch = self.IN(branch)
        shortcut = x if self.downsample is None else self.downsample(x)
        out = branch + shortcut
        if self.instance_norm == "after":
            out = self.IN(out)
        return F.relu(out)


def transition(channels: int, stride: int) -> nn.Sequential:
    """Between stages: a 1x1 convolution unit, then 2x2 average pooling (``stride`` 2) or none (``stride`` 1,
    ``last_stride=1``: the pooling has no parameters, so the weights are the same either way)."""
    pool = nn.AvgPool2d(2, stride=2) if stride == 2 else nn.Identity()
    return nn.Sequential(ConvUnit(channels, channels), pool)
