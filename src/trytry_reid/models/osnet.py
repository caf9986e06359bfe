"""OSNet trunks: osnet_x1_0 .. osnet_x0_25, osnet_ibn_x1_0 (ICCV 2019) and osnet_ain_x1_0 .. osnet_ain_x0_25
(TPAMI 2021), images ``[B, 3, H, W]`` -> feature map ``[B, C, H/16, W/16]`` (``C`` = 512 at width x1.0).

The stages: a 7x7 stride-2 convolution unit and a 3x3 stride-2 max pool; stage 2 and stage 3 (two omni-scale
blocks each) each followed by a transition (1x1 convolution unit + 2x2 average pooling); stage 4 (two blocks);
a 1x1 convolution unit. torchreid puts a 512-d "fc" block (Linear, BatchNorm1d, ReLU) after the global
average pooling; here that is the ReidModel's embedding (``embedding_dim: 512``, ``embedding_bn_relu: true``),
so the trunk ends at the feature map like every backbone of the catalog.

``last_stride``: OSNet has no strided convolution in its last stage; its last downsampling is the average
pooling of the transition before stage 4. ``last_stride=1`` removes that pooling (output stride 8, stage 4 and
the final unit at twice the height and width); the parameters are the same, so weights load either way.

Variants: OSNet-IBN instance-normalises the stem and the output of every block of stage 2; OSNet-AIN
instance-normalises the stem and, inside the residual branch, the blocks its architecture search chose (stage 2
both, stage 3 the second, stage 4 the first), and names its transitions ``pool2`` / ``pool3`` instead of
putting them last in ``conv2`` / ``conv3``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from trytry_reid.models.backbone_entry import check_last_stride
from trytry_reid.models.osnet_blocks import ConvUnit, OmniScaleBlock, transition

# Channels of the stem and of the three stages, per width multiplier.
WIDTHS = {"x1_0": (64, 256, 384, 512), "x0_75": (48, 192, 288, 384), "x0_5": (32, 128, 192, 256),
          "x0_25": (16, 64, 96, 128)}
BLOCKS_PER_STAGE = 2
# OSNet-AIN: the instance normalisation of each block, per stage (from the TPAMI paper's searched architecture).
AIN_BLOCKS = (("inside", "inside"), (None, "inside"), ("inside", None))


class OSNetTrunk(nn.Module):
    """The trunk; ``variant`` is "plain", "ibn" or "ain" (see the module docstring)."""

    def __init__(self, widths: tuple[int, int, int, int], variant: str = "plain", last_stride: int = 2) -> None:
        super().__init__()
        if variant not in ("plain", "ibn", "ain"):
            raise ValueError(f"OSNet variant must be 'plain', 'ibn' or 'ain', got {variant!r}")
        check_last_stride(last_stride)
        stem, c2, c3, c4 = widths
        self.variant = variant
        self.conv1 = ConvUnit(3, stem, 7, stride=2, norm="batch" if variant == "plain" else "instance")
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        if variant == "ain":
            self.conv2 = _stage(stem, c2, "tpami", AIN_BLOCKS[0])
            self.pool2 = transition(c2, 2)
            self.conv3 = _stage(c2, c3, "tpami", AIN_BLOCKS[1])
            self.pool3 = transition(c3, last_stride)
            self.conv4 = _stage(c3, c4, "tpami", AIN_BLOCKS[2])
        else:
            first = ("after", "after") if variant == "ibn" else (None, None)
            self.conv2 = nn.Sequential(*_stage(stem, c2, "iccv", first), transition(c2, 2))
            self.conv3 = nn.Sequential(*_stage(c2, c3, "iccv", (None, None)), transition(c3, last_stride))
            self.conv4 = _stage(c3, c4, "iccv", (None, None))
        self.conv5 = ConvUnit(c4, c4)
        self.out_channels = c4
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.maxpool(self.conv1(x)))
        if self.variant == "ain":
            x = self.conv4(self.pool3(self.conv3(self.pool2(x))))
        else:
            x = self.conv4(self.conv3(x))
        return self.conv5(x)


def _stage(in_channels: int, out_channels: int, layout: str, norms: tuple[str | None, ...]) -> nn.Sequential:
    blocks = [OmniScaleBlock(in_channels if i == 0 else out_channels, out_channels, layout, norm)
              for i, norm in enumerate(norms)]
    return nn.Sequential(*blocks)


def _init_weights(module: nn.Module) -> None:
    """He (fan-out) init for convolutions, unit scale and zero shift for the normalisations (as the papers)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm2d, nn.InstanceNorm2d)) and layer.weight is not None:
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def osnet_factory(name: str) -> Callable[[int], tuple[nn.Module, int]]:
    """The catalog's ``build(last_stride) -> (trunk, feature_dim)`` for ``osnet_x1_0``, ``osnet_ibn_x1_0``,
    ``osnet_ain_x0_25``, ..."""
    variant, width = parse_name(name)

    def build(last_stride: int = 2) -> tuple[nn.Module, int]:
        trunk = OSNetTrunk(WIDTHS[width], variant, last_stride)
        return trunk, trunk.out_channels

    build.__name__ = name
    return build


def parse_name(name: str) -> tuple[str, str]:
    """``osnet_ain_x0_5`` -> ("ain", "x0_5"); ``osnet_x1_0`` -> ("plain", "x1_0")."""
    parts = name.split("_", 2)
    if parts[0] != "osnet" or len(parts) < 2:
        raise ValueError(f"not an OSNet name: {name!r}")
    variant, width = ("plain", "_".join(parts[1:])) if parts[1] not in ("ibn", "ain") else (parts[1], parts[2])
    if width not in WIDTHS:
        raise ValueError(f"OSNet width {width!r} in {name!r}: expected one of {', '.join(WIDTHS)}")
    return variant, width
