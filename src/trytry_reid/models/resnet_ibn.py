"""Bottleneck ResNets with IBN-a blocks (Pan et al., ECCV 2018 "Two at Once: Enhancing Learning and
Generalization Capacities via IBN-Net") and the fast-reid variants of ResNet (stem, non-local blocks).

IBN-a: in every bottleneck of the first three stages the BatchNorm after the first 1x1 convolution is split by
channel: the first half is instance-normalised (affine), the rest batch-normalised (``bn1.IN`` / ``bn1.BN``).
The fourth stage keeps BatchNorm. The stride of a stage's first block is in its 3x3 convolution (ResNet v1.5,
as torchvision), and parameter names are torchvision's, so a torchvision or IBN-Net ImageNet file loads as is.

Two stems: "pad" is the 3x3 stride-2 max pool with padding 1 (torchvision, IBN-Net, torchreid); "ceil" is
fast-reid's, without padding and rounding the output size up. They see shifted windows, so a model trained
with one must run with the same. fast-reid's non-local ResNets (its AGW and SBS models) add non-local blocks
(models/non_local.py) after the last 2 blocks of the second stage and the last 3 (ResNet-50) or 9 (ResNet-101)
of the third, named ``NL_2.<i>`` and ``NL_3.<i>`` as in its files.

``last_stride=1`` sets the fourth stage's first block (its 3x3 convolution and its shortcut) to stride 1: the
feature map is 1/16 of the input instead of 1/32.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from trytry_reid.models.backbone_entry import check_last_stride
from trytry_reid.models.non_local import NonLocal2d

EXPANSION = 4
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
DEPTH_OF_LAYER3 = {blocks[2]: depth for depth, blocks in DEPTHS.items()}  # layer3's block count -> depth
# fast-reid's non-local blocks per stage, after the stage's last blocks.
NON_LOCAL = {50: (0, 2, 3, 0), 101: (0, 2, 9, 0)}
NON_LOCAL_INNER = 1


class IBN(nn.Module):
    """Instance norm on the first ``channels // 2`` channels, batch norm on the others."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.half = channels // 2
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = x[:, :self.half], x[:, self.half:]
        return torch.cat((self.IN(first.contiguous()), self.BN(rest.contiguous())), dim=1)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (``stride``) -> 1x1 (x4 channels), each normalised, ReLU between, plus the shortcut."""

    def __init__(self, in_channels: int, width: int, stride: int = 1, ibn: bool = False) -> None:
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = IBN(width) if ibn else nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNetTrunk(nn.Module):
    """A bottleneck ResNet without its classifier: ``[B, 3, H, W] -> [B, 2048, H/32, W/32]`` (H/16 with
    ``last_stride=1``)."""

    def __init__(self, depth: int = 50, *, ibn: bool = False, stem: str = "pad", non_local: bool = False,
                 last_stride: int = 2) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        if stem not in ("pad", "ceil"):
            raise ValueError(f"ResNet stem must be 'pad' or 'ceil', got {stem!r}")
        check_last_stride(last_stride)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "pad" else \
            nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        channels = 64
        strides = (1, 2, 2, last_stride)
        for stage, (blocks, stride) in enumerate(zip(DEPTHS[depth], strides), start=1):
            width = 64 * 2 ** (stage - 1)
            layer = [Bottleneck(channels if i == 0 else width * EXPANSION, width, stride if i == 0 else 1,
                                ibn=ibn and stage < 4) for i in range(blocks)]
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
            channels = width * EXPANSION
        self.out_channels = channels
        _init_weights(self)
        for stage, count in enumerate(NON_LOCAL[depth] if non_local else (), start=1):
            if count:
                width = 64 * 2 ** (stage - 1) * EXPANSION
                setattr(self, f"NL_{stage}", nn.ModuleList(NonLocal2d(width, NON_LOCAL_INNER) for _ in range(count)))

    def stage(self, index: int) -> list[nn.Module]:
        """Stage ``index`` (1-4) as the modules to run in order: its blocks, non-local blocks after the last."""
        blocks = list(getattr(self, f"layer{index}"))
        extra = list(getattr(self, f"NL_{index}", []))
        head = blocks[:len(blocks) - len(extra)]
        return head + [module for pair in zip(blocks[len(head):], extra) for module in pair]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(1, 5):
            for module in self.stage(index):
                x = module(x)
        return x


def _init_weights(module: nn.Module) -> None:
    """He init (fan-out) of the convolutions, as IBN-Net; unit scale, zero shift for the normalisations."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            fan_out = layer.kernel_size[0] * layer.kernel_size[1] * layer.out_channels
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(layer, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def resnet_factory(depth: int, *, ibn: bool, stem: str = "pad",
                   non_local: bool = False) -> Callable[[int], tuple[nn.Module, int]]:
    """The catalog's ``build(last_stride) -> (trunk, feature_dim)``."""
    def build(last_stride: int = 2) -> tuple[nn.Module, int]:
        trunk = ResNetTrunk(depth, ibn=ibn, stem=stem, non_local=non_local, last_stride=last_stride)
        return trunk, trunk.out_channels

    build.__name__ = f"resnet{depth}{'_ibn_a' if ibn else ''}{'_' + stem}{'_nl' if non_local else ''}"
    return build


def non_local_start(depth: int) -> dict[str, torch.Tensor]:
    """The non-local blocks' tensors of a new fast-reid trunk (``NL_2.*``, ``NL_3.*``): what an ImageNet file,
    which has none, is completed with. Their ``W`` BatchNorm starts at zero scale: each block is the identity
    until training moves it."""
    trunk = ResNetTrunk(depth, non_local=True)
    return {key: value for key, value in trunk.state_dict().items() if key.startswith("NL_")}
