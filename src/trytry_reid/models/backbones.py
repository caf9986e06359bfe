"""Backbone trunks from torchvision: name -> factory(last_stride) -> (trunk, feature_dim).

A trunk maps images ``[B, 3, H, W]`` to the last feature map ``[B, C, h, w]``; the ImageNet classifier is
dropped. Each trunk keeps torchvision's parameter names (``conv1.weight``, ``layer4.0.conv2.weight``,
``features.0.0.weight``, ...), so a torchvision state dict loads into it without renaming.

``last_stride=1`` removes the last stage's downsampling (Luo et al. 2019, "Bag of Tricks"): the feature map
doubles in height and width, which helps retrieval at the cost of compute in the last stage.

Weights are never downloaded: ``pretrained="imagenet"`` reads torchvision's file from torch's hub cache and
raises an error saying which file to place where when it is absent.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from trytry_reid.catalog import lookup
from trytry_reid.errors import ReidError
from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD
from trytry_reid.models.mobilenet_ibn import ibn_a
from trytry_reid.models.small_cnn import small_cnn

log = logging.getLogger(__name__)

# Key prefixes of the ImageNet classifier in torchvision's full models: present in weight files, never in a trunk.
CLASSIFIER_PREFIXES = ("fc.", "classifier.")
# A ReidModel checkpoint stores the trunk under this prefix; it is stripped so such files load too.
TRUNK_PREFIX = "trunk."


class WeightsError(ReidError, ValueError):
    """A pretrained-weights file that cannot be read or does not fit the backbone (named in the message)."""


def _check_last_stride(last_stride: int) -> None:
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")


def _resnet_trunk(arch: str, last_stride: int) -> tuple[nn.Module, int]:
    """ResNet without avgpool/fc; last_stride 1 sets layer4's first block (and its shortcut) to stride 1."""
    _check_last_stride(last_stride)
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
    _check_last_stride(last_stride)
    net = torchvision.models.mobilenet_v2(weights=None)
    if last_stride == 1:
        net.features[14].conv[1][0].stride = (1, 1)
    trunk = nn.Sequential(OrderedDict(features=net.features))
    return trunk, net.last_channel


def _small_cnn_trunk(last_stride: int = 2) -> tuple[nn.Module, int]:
    """The digits/MNIST demo's small CNN (total stride 4, or 2 with last_stride 1); no pretrained weights."""
    _check_last_stride(last_stride)
    return small_cnn(last_stride)


def _resnet_factory(arch: str) -> Callable[[int], tuple[nn.Module, int]]:
    def factory(last_stride: int = 2) -> tuple[nn.Module, int]:
        return _resnet_trunk(arch, last_stride)

    factory.__name__ = arch
    return factory


@dataclass(frozen=True)
class Backbone:
    """A catalog entry: ``build(last_stride) -> (trunk, feature_dim)``, where its ImageNet weights come from
    (torchvision's file; None: there are none) and the input normalisation they expect, which becomes the
    default of ``data.mean`` / ``data.std``."""

    build: Callable[[int], tuple[nn.Module, int]]
    imagenet_url: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


# torchvision's IMAGENET1K_V1 weights: the ones the ReID literature trained from.
BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(_resnet_factory("resnet18"), torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url),
    "resnet34": Backbone(_resnet_factory("resnet34"), torchvision.models.ResNet34_Weights.IMAGENET1K_V1.url),
    "resnet50": Backbone(_resnet_factory("resnet50"), torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url),
    "resnet101": Backbone(_resnet_factory("resnet101"), torchvision.models.ResNet101_Weights.IMAGENET1K_V1.url),
    "mobilenet_v2": Backbone(_mobilenet_v2_trunk, torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url),
    "mobilenet_v2_ibn": Backbone(ibn_a(_mobilenet_v2_trunk), torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url),
    "small_cnn": Backbone(_small_cnn_trunk),
}


def build_backbone(name: str, last_stride: int = 2, pretrained: str = "none") -> tuple[nn.Module, int]:
    """Build the trunk called ``name`` and load ``pretrained`` ("none" | "imagenet" | path to a state dict)."""
    trunk, feature_dim = lookup(BACKBONES, name, "backbone").build(last_stride)
    load_pretrained(trunk, name, pretrained)
    return trunk, feature_dim


def load_pretrained(trunk: nn.Module, backbone: str, pretrained: str | os.PathLike) -> None:
    """Load weights into ``trunk`` in place; see :func:`build_backbone` for the accepted values."""
    if str(pretrained) == "none":
        return
    if str(pretrained) == "imagenet":
        load_state_dict_file(trunk, imagenet_weights_path(backbone))
        return
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file not found: '{path}'. Expected 'none', 'imagenet' or the path of a "
            "state dict file"
        )
    load_state_dict_file(trunk, path)


def imagenet_weights_path(backbone: str) -> Path:
    """Torch's hub cache file holding ``backbone``'s ImageNet weights; error (no download) when absent."""
    url = lookup(BACKBONES, backbone, "backbone").imagenet_url
    if url is None:
        with_weights = sorted(name for name, entry in BACKBONES.items() if entry.imagenet_url)
        raise WeightsError(f"backbone '{backbone}' has no ImageNet weights (those with weights: "
                         f"{', '.join(with_weights)}); use pretrained: none or the path of a state dict")
    file_name = os.path.basename(urlparse(url).path)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / file_name
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for '{backbone}' are not available offline: put the file '{file_name}' "
            f"(from {url}) in the folder '{folder}', or use pretrained: none or a state dict path"
        )
    return path


def load_state_dict_file(trunk: nn.Module, path: Path) -> None:
    """Load a state dict file (torchvision key names, or the trunk's own) into ``trunk``.

    Classifier keys are ignored; other missing and unexpected keys are logged as a warning; a shape that
    does not fit raises ValueError naming the key and both shapes.
    """
    state = _read_state_dict(path)
    own = trunk.state_dict()
    usable: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for raw_key, value in state.items():
        key = raw_key[len(TRUNK_PREFIX):] if raw_key.startswith(TRUNK_PREFIX) else raw_key
        if key.startswith(CLASSIFIER_PREFIXES):
            continue
        if key not in own:
            unexpected.append(raw_key)
            continue
        if value.shape != own[key].shape:
            raise WeightsError(
                f"weights file '{path}': key '{raw_key}' has shape {tuple(value.shape)} but the model "
                f"expects {tuple(own[key].shape)}"
            )
        usable[key] = value
    missing = sorted(set(own) - set(usable))
    if missing or unexpected:
        log.warning(
            "weights file '%s': %d missing keys %s; %d unexpected keys %s",
            path, len(missing), missing, len(unexpected), sorted(unexpected),
        )
    trunk.load_state_dict(usable, strict=False)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` a flat dict of tensors, with clear errors for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle/zip errors carry no file name; add it
        raise WeightsError(f"cannot read weights file '{path}' as a state dict (weights_only): {error}") from error
    if not isinstance(state, dict):
        raise WeightsError(
            f"weights file '{path}' holds a {type(state).__name__}, expected a state dict "
            "(a dict of parameter name -> tensor)"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(
                f"weights file '{path}': key '{key}' holds a {type(value).__name__}, expected a tensor "
                "(a state dict of parameter name -> tensor; for a training checkpoint pass its 'model' entry)"
            )
    return state
