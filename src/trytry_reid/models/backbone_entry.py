"""What a backbone catalog entry holds (``Backbone``), apart from the catalog itself (models/backbones.py), so
that entries built elsewhere (timm's, models/timm_trunk.py) need not import the catalog that looks them up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD

# Key prefixes of the ImageNet classifier in torchvision's full models: present in weight files, never in a trunk.
CLASSIFIER_PREFIXES = ("fc.", "classifier.")
TIMM_PREFIX = "timm/"  # model.backbone: timm/<name> names a timm CNN


@dataclass(frozen=True)
class Backbone:
    """A catalog entry: ``build(last_stride) -> (trunk, feature_dim)``, where its ImageNet weights come from
    (``imagenet_url``: a file for torch's hub cache; ``imagenet_state``: a library that fetches them itself, as
    timm; neither: there are none), the input normalisation they expect (the default of ``data.mean`` /
    ``data.std``), and ``head_prefixes``: the classifier head a weights file may carry beyond the trunk."""

    build: Callable[[int], tuple[nn.Module, int]]
    imagenet_url: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    head_prefixes: tuple[str, ...] = CLASSIFIER_PREFIXES
    imagenet_state: Callable[[], dict[str, torch.Tensor]] | None = None

    @property
    def has_imagenet_weights(self) -> bool:
        return self.imagenet_url is not None or self.imagenet_state is not None


def check_last_stride(last_stride: int) -> None:
    """Every trunk's last stage runs at stride 2 (the usual) or 1 (BoT's higher-resolution last stage)."""
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
