"""Backbone trunks: name -> catalog entry -> factory(last_stride) -> (trunk, feature_dim), and their weights.

A trunk maps images ``[B, 3, H, W]`` to the last feature map ``[B, C, h, w]``; the ImageNet classifier is
dropped. torchvision trunks keep torchvision's parameter names (``conv1.weight``, ``layer4.0.conv2.weight``,
``features.0.0.weight``, ...), so a torchvision state dict loads into them without renaming. ``timm/<name>``
names a timm CNN (models/timm_trunk.py).

``last_stride=1`` removes the last stage's downsampling (Luo et al. 2019, "Bag of Tricks"): the feature map
doubles in height and width, which helps retrieval at the cost of compute in the last stage.

``pretrained``: "none"; "imagenet" (the entry's ImageNet weights: torchvision's file from torch's hub cache,
downloaded on first use by models/downloads.py, or timm's own); or the path of a weights file: a state dict,
its usual wrappers, or a trytry-reid checkpoint to fine-tune (models/weights_file.py). Weights load only
when they fit the trunk.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from trytry_reid.catalog import lookup
from trytry_reid.models.backbone_entry import TIMM_PREFIX, Backbone, check_last_stride
from trytry_reid.models.downloads import cached_download
from trytry_reid.models.mobilenet_ibn import ibn_a
from trytry_reid.models.osnet import osnet_factory
from trytry_reid.models.resnet_ibn import non_local_start, resnet_factory
from trytry_reid.models.small_cnn import small_cnn
from trytry_reid.models.weights_file import Weights, WeightsError, load_fitting, read_weights_file


def _resnet_trunk(arch: str, last_stride: int) -> tuple[nn.Module, int]:
    """ResNet without avgpool/fc; last_stride 1 sets layer4's first block (and its shortcut) to stride 1."""
    check_last_stride(last_stride)
    net = getattr(torchvision.models, arch)(weights=None)
    if last_stride == 1:
        block = net.layer4[0]
        # torchvision's Bottleneck strides in conv2 (ResNet v1.5); BasicBlock strides in conv1.
        strided = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
        strided.stride = (1, 1)
        block.downsample[0].stride = (1, 1)
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    trunk = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in names))
    return trunk, net.fc.in_features


def _mobilenet_v2_trunk(last_stride: int) -> tuple[nn.Module, int]:
    """MobileNetV2 ``features`` (1280 channels); last_stride 1 sets features[14]'s depthwise conv to stride 1.

    features[14] is the last stride-2 inverted residual (96 -> 160 channels); it has no residual connection,
    so changing its stride changes nothing but the output size.
    """
    check_last_stride(last_stride)
    net = torchvision.models.mobilenet_v2(weights=None)
    if last_stride == 1:
        net.features[14].conv[1][0].stride = (1, 1)
    trunk = nn.Sequential(OrderedDict(features=net.features))
    return trunk, net.last_channel


def _small_cnn_trunk(last_stride: int = 2) -> tuple[nn.Module, int]:
    """The digits/MNIST demo's small CNN (total stride 4, or 2 with last_stride 1); no pretrained weights."""
    check_last_stride(last_stride)
    return small_cnn(last_stride)


def _resnet_factory(arch: str) -> Callable[[int], tuple[nn.Module, int]]:
    def factory(last_stride: int = 2) -> tuple[nn.Module, int]:
        return _resnet_trunk(arch, last_stride)

    factory.__name__ = arch
    return factory


# IBN-Net's ImageNet releases (github.com/XingangPan/IBN-Net, release v1.0), hash-named as torch hub expects.
IBN_R50 = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"
IBN_R101 = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet101_ibn_a-59ea0ac6.pth"
RESNET50_URL = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url


def _imagenet_with_non_local(url: str, depth: int) -> Callable[[], dict[str, torch.Tensor]]:
    """ImageNet weights for a fast-reid non-local trunk: the ResNet's file (downloaded into the hub cache)
    completed with new non-local blocks, which start as identities (fast-reid does the same)."""
    def state() -> dict[str, torch.Tensor]:
        weights = read_weights_file(cached_download(url, f"the ImageNet weights of ResNet-{depth}"))
        return {**weights.state, **non_local_start(depth)}

    return state


# torchvision's IMAGENET1K_V1 weights: the ones the ReID literature trained from.
BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(_resnet_factory("resnet18"), torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url),
    "resnet34": Backbone(_resnet_factory("resnet34"), torchvision.models.ResNet34_Weights.IMAGENET1K_V1.url),
    "resnet50": Backbone(_resnet_factory("resnet50"), torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url),
    "resnet101": Backbone(_resnet_factory("resnet101"), torchvision.models.ResNet101_Weights.IMAGENET1K_V1.url),
    "mobilenet_v2": Backbone(_mobilenet_v2_trunk, torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url),
    "mobilenet_v2_ibn": Backbone(ibn_a(_mobilenet_v2_trunk), torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url),
    "small_cnn": Backbone(_small_cnn_trunk),
    # OSNet (models/osnet.py): torchreid's ImageNet files are on Google Drive without a checksum; none here.
    "osnet_x1_0": Backbone(osnet_factory("osnet_x1_0")),
    "osnet_x0_75": Backbone(osnet_factory("osnet_x0_75")),
    "osnet_x0_5": Backbone(osnet_factory("osnet_x0_5")),
    "osnet_x0_25": Backbone(osnet_factory("osnet_x0_25")),
    "osnet_ibn_x1_0": Backbone(osnet_factory("osnet_ibn_x1_0")),
    "osnet_ain_x1_0": Backbone(osnet_factory("osnet_ain_x1_0")),
    "osnet_ain_x0_75": Backbone(osnet_factory("osnet_ain_x0_75")),
    "osnet_ain_x0_5": Backbone(osnet_factory("osnet_ain_x0_5")),
    "osnet_ain_x0_25": Backbone(osnet_factory("osnet_ain_x0_25")),
    # IBN-a ResNets (models/resnet_ibn.py) with IBN-Net's ImageNet files.
    "resnet50_ibn_a": Backbone(resnet_factory(50, ibn=True), imagenet_url=IBN_R50),
    "resnet101_ibn_a": Backbone(resnet_factory(101, ibn=True), imagenet_url=IBN_R101),
    # fast-reid's ResNets (its max-pool stem; _nl: its non-local blocks, AGW and SBS), for its model zoo files.
    "fastreid_r50": Backbone(resnet_factory(50, ibn=False, stem="ceil"), imagenet_url=RESNET50_URL),
    "fastreid_r50_ibn": Backbone(resnet_factory(50, ibn=True, stem="ceil"), imagenet_url=IBN_R50),
    "fastreid_r101_ibn": Backbone(resnet_factory(101, ibn=True, stem="ceil"), imagenet_url=IBN_R101),
    "fastreid_r50_nl": Backbone(resnet_factory(50, ibn=False, stem="ceil", non_local=True), imagenet_url=RESNET50_URL,
                                imagenet_state=_imagenet_with_non_local(RESNET50_URL, 50)),
    "fastreid_r50_ibn_nl": Backbone(resnet_factory(50, ibn=True, stem="ceil", non_local=True), imagenet_url=IBN_R50,
                                    imagenet_state=_imagenet_with_non_local(IBN_R50, 50)),
    "fastreid_r101_ibn_nl": Backbone(resnet_factory(101, ibn=True, stem="ceil", non_local=True), imagenet_url=IBN_R101,
                                     imagenet_state=_imagenet_with_non_local(IBN_R101, 101)),
}


def backbone_entry(name: str) -> Backbone:
    """The catalog entry of ``name``: a BACKBONES name or ``timm/<name>``; a clear error for anything else."""
    if name.startswith(TIMM_PREFIX):
        from trytry_reid.models.timm_trunk import timm_backbone

        return timm_backbone(name[len(TIMM_PREFIX):])
    return lookup(BACKBONES, name, "backbone")


def build_backbone(name: str, last_stride: int = 2, pretrained: str = "none") -> tuple[nn.Module, int]:
    """Build the trunk called ``name`` and load ``pretrained`` ("none" | "imagenet" | path to a weights file)."""
    trunk, feature_dim = backbone_entry(name).build(last_stride)
    load_pretrained(trunk, name, pretrained)
    return trunk, feature_dim


def load_pretrained(trunk: nn.Module, backbone: str, pretrained: str | os.PathLike) -> None:
    """Load weights into ``trunk`` in place (see the module docstring); WeightsError when they do not fit."""
    if str(pretrained) == "none":
        return
    entry = backbone_entry(backbone)
    if str(pretrained) == "imagenet":
        weights = imagenet_weights(backbone, entry)
    else:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file not found: '{path}'. Expected 'none', 'imagenet' or "
                                    "the path of a weights file (a state dict or a trytry-reid checkpoint)")
        weights = read_weights_file(path)
        check_checkpoint_backbone(weights, backbone)
    load_fitting(trunk, weights, backbone, entry.head_prefixes)


def imagenet_weights(backbone: str, entry: Backbone) -> Weights:
    """``backbone``'s ImageNet weights: from its own library, or its file (downloaded into the hub cache)."""
    if entry.imagenet_state is not None:
        return Weights(f"the pretrained weights of '{backbone}'", entry.imagenet_state())
    if entry.imagenet_url is None:
        with_weights = sorted(name for name, item in BACKBONES.items() if item.has_imagenet_weights)
        raise WeightsError(f"backbone '{backbone}' has no ImageNet weights (those with weights: "
                           f"{', '.join(with_weights)}, {TIMM_PREFIX}<name>); use pretrained: none or a weights file")
    return read_weights_file(cached_download(entry.imagenet_url, f"the ImageNet weights of '{backbone}'"))


def same_architecture(a: str, b: str) -> bool:
    """Whether backbone names ``a`` and ``b`` build the same trunk (timm names may differ in their weight tag)."""
    def arch(name: str) -> str:
        return name.partition(".")[0] if name.startswith(TIMM_PREFIX) else name

    return arch(a) == arch(b)


def check_checkpoint_backbone(weights: Weights, backbone: str) -> None:
    """A trytry-reid checkpoint fine-tunes only the backbone it was trained with."""
    if weights.backbone is not None and not same_architecture(weights.backbone, backbone):
        raise WeightsError(f"{weights.what} was trained with backbone '{weights.backbone}', but the model's "
                           f"backbone is '{backbone}': set model.backbone={weights.backbone} to fine-tune it")
