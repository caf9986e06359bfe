"""The ReID model: trunk -> global pooling -> optional embedding -> BNNeck -> classifier.

BNNeck (Luo et al. 2019): the metric losses (triplet, center) read ``features``, the vector before the
BatchNorm; the identity classifier reads ``bn_features``, the vector after it. The BatchNorm's bias is frozen
at zero, and the classifier has no bias by default (``classifier_bias``). Retrieval uses the L2-normalised
``retrieval_feature``: ``bn_features`` by default, or ``features`` (before the BNNeck); see :meth:`embed`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trytry_reid.catalog import lookup
from trytry_reid.models.backbones import build_backbone
from trytry_reid.models.pooling import POOLINGS


class ReidOutput(NamedTuple):
    features: torch.Tensor  # [B, D] before BNNeck (triplet / center losses read this)
    bn_features: torch.Tensor  # [B, D] after BNNeck (the same tensor when bnneck is off)
    logits: torch.Tensor | None  # [B, num_classes] from bn_features; None when num_classes == 0


RETRIEVAL_FEATURES = ("bn_features", "features")


class ReidModel(nn.Module):
    """``forward`` always returns a :class:`ReidOutput`; ``embed`` returns the retrieval feature.

    Args:
        trunk: maps ``[B, 3, H, W]`` to a feature map ``[B, feature_dim, h, w]``.
        feature_dim: channels of the trunk's feature map.
        num_classes: training identities; 0 builds no classifier (``logits`` is None).
        embedding_dim: > 0 adds ``Linear(feature_dim, embedding_dim)`` after pooling;
            0 uses the pooled feature directly. ``D`` is ``embedding_dim or feature_dim``.
        embedding_bn_relu: follow the embedding's Linear with BatchNorm1d and ReLU (``embedding_bn``), as
            torchreid's "fc" block (OSNet's 512-d feature); needs ``embedding_dim > 0``.
        bnneck: add the BNNeck BatchNorm1d (bias frozen at 0).
        pooling: a name in ``POOLINGS`` ("avg", "max", "gem").
        retrieval_feature: the ``ReidOutput`` field :meth:`embed` returns: ``"bn_features"`` (after BNNeck,
            as BoT) or ``"features"`` (before it, the vector the metric losses shape).
        classifier_std: std of the classifier's normal init: 0.001 is BoT's; torchreid uses 0.01. The CE
            gradient reaching the features scales with it, so it sets how fast CE starts shaping them.
        classifier_bias: give the classifier a bias (zero init), as torchreid; BoT has none.
        frozen_layers: names of trunk modules (``"features.0"``, ``"layer1"``; ``trunk.named_modules()``) whose
            parameters get no gradient, so their weights stay as loaded. Freezing the first layers also skips
            their backward pass, the costliest per FLOP at full resolution.
        frozen_batchnorm: the frozen layers' BatchNorms stay in eval mode (their loaded running statistics
            normalise, and are never updated), so those layers stay exactly the pretrained feature extractor;
            False: they normalise with batch statistics in training and update their running ones, as the
            rest of the trunk.
    """

    def __init__(
        self,
        trunk: nn.Module,
        feature_dim: int,
        num_classes: int,
        embedding_dim: int = 0,
        embedding_bn_relu: bool = False,
        bnneck: bool = True,
        pooling: str = "avg",
        retrieval_feature: str = "bn_features",
        classifier_std: float = 0.001,
        classifier_bias: bool = False,
        frozen_layers: Sequence[str] = (),
        frozen_batchnorm: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("num_classes", num_classes),
                            ("embedding_dim", embedding_dim)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"ReidModel {name} must be a non-negative int, got {value!r}")
        if feature_dim == 0:
            raise ValueError("ReidModel feature_dim must be > 0")
        if embedding_bn_relu and embedding_dim == 0:
            raise ValueError("ReidModel embedding_bn_relu needs an embedding layer (embedding_dim > 0)")
        if not classifier_std > 0:
            raise ValueError(f"ReidModel classifier_std must be > 0, got {classifier_std!r}")
        if retrieval_feature not in RETRIEVAL_FEATURES:
            raise ValueError(f"ReidModel retrieval_feature must be one of {', '.join(RETRIEVAL_FEATURES)}, "
                             f"got {retrieval_feature!r}")
        self.retrieval_feature = retrieval_feature
        self.trunk = trunk
        self.pool = lookup(POOLINGS, pooling, "pooling")()
        self.embedding = nn.Linear(feature_dim, embedding_dim) if embedding_dim > 0 else None
        self.embedding_bn = nn.BatchNorm1d(embedding_dim) if embedding_bn_relu else None
        self.output_dim = embedding_dim or feature_dim
        self.bnneck = _frozen_bias_batchnorm(self.output_dim) if bnneck else None
        self.classifier = None
        if num_classes > 0:
            self.classifier = nn.Linear(self.output_dim, num_classes, bias=classifier_bias)
            nn.init.normal_(self.classifier.weight, std=classifier_std)
            if classifier_bias:
                nn.init.zeros_(self.classifier.bias)
        self.frozen_layers = freeze_layers(trunk, frozen_layers)
        self.frozen_batchnorm = frozen_batchnorm

    def train(self, mode: bool = True) -> "ReidModel":
        """As ``nn.Module.train``; with ``frozen_batchnorm`` the frozen layers stay in eval mode."""
        super().train(mode)
        if self.frozen_batchnorm:
            for layer in self.frozen_layers:
                layer.eval()
        return self

    def forward(self, x: torch.Tensor) -> ReidOutput:
        features, bn_features = self._neck(x)
        logits = self.classifier(bn_features) if self.classifier is not None else None
        return ReidOutput(features, bn_features, logits)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` L2-normalised retrieval feature (``retrieval_feature``); call it in eval mode."""
        features, bn_features = self._neck(x)
        return F.normalize(bn_features if self.retrieval_feature == "bn_features" else features, dim=1)

    def _neck(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.pool(self.trunk(x))
        if self.embedding is not None:
            features = self.embedding(features)
        if self.embedding_bn is not None:
            features = F.relu(self.embedding_bn(features))
        bn_features = self.bnneck(features) if self.bnneck is not None else features
        return features, bn_features


def build_reid_model(backbone: str, num_classes: int, *, last_stride: int = 2, embedding_dim: int = 0,
                     embedding_bn_relu: bool = False, bnneck: bool = True, pooling: str = "avg",
                     retrieval_feature: str = "bn_features", classifier_std: float = 0.001,
                     classifier_bias: bool = False, frozen_layers: Sequence[str] = (), frozen_batchnorm: bool = True,
                     pretrained: str = "none") -> ReidModel:
    """A ReidModel from a config's ``model`` section (its keys are these arguments): the one way to build
    the model, for training (``pretrained`` from the config) and for loading a checkpoint ("none")."""
    trunk, feature_dim = build_backbone(backbone, last_stride=last_stride, pretrained=pretrained)
    return ReidModel(trunk, feature_dim, num_classes, embedding_dim=embedding_dim,
                     embedding_bn_relu=embedding_bn_relu, bnneck=bnneck, pooling=pooling,
                     retrieval_feature=retrieval_feature, classifier_std=classifier_std,
                     classifier_bias=classifier_bias, frozen_layers=frozen_layers,
                     frozen_batchnorm=frozen_batchnorm)


def freeze_layers(trunk: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """Turn off the gradients of the trunk modules called ``names``; return them (see ``ReidModel``)."""
    if isinstance(names, str):
        raise TypeError(f"frozen_layers must be a list of trunk module names, got the string {names!r}")
    modules = dict(trunk.named_modules())
    unknown = [name for name in names if not name or name not in modules]
    if unknown:
        listed = [name for name in modules if name and name.count(".") <= 1]
        raise ValueError(f"model.frozen_layers: {', '.join(map(repr, unknown))} not a module of the trunk; "
                         f"valid names include {', '.join(listed[:40])}")
    layers = [modules[name] for name in names]
    for layer in layers:
        layer.requires_grad_(False)
    return layers


def _frozen_bias_batchnorm(dim: int) -> nn.BatchNorm1d:
    """BatchNorm1d with weight 1 and bias fixed at 0 (requires_grad False), as BoT's BNNeck."""
    bn = nn.BatchNorm1d(dim)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    bn.bias.requires_grad_(False)
    return bn
