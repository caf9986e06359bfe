"""timm CNNs as trunks: ``model.backbone: timm/<name>`` (timm >= 1.0, the ``timm`` extra).

The trunk is timm's feature extractor (``features_only=True``) reduced to its last feature map: it maps
``[B, 3, H, W]`` to ``[B, C, H / r, W / r]`` with timm's names for the parameters of the stages it keeps
(timm flattens some families' stage lists: ``stages.0`` -> ``stages_0``).

Only convolutional families are accepted (:data:`CNN_FAMILIES`, timm's module names): transformers and
hybrids (ViT, Swin, DeiT, EVA, ...) are refused, as are names timm does not know. ``<name>`` may carry a
pretrained tag (``timm/resnet50.a1_in1k``); without one, timm's default weights for the architecture.

``last_stride=1`` becomes timm's ``output_stride`` (16 for the usual total stride 32). timm implements it with
dilation: the last stage keeps its receptive field (its convolutions are dilated by 2), unlike torchvision's
last-stride-1 trick, which only drops the stride. Families without ``output_stride`` support are refused with
``model.last_stride=2`` as the way out.

ImageNet weights come through timm itself (``pretrained=True``): its cache (the Hugging Face Hub cache,
``$HF_HOME/hub``, or torch's hub cache for URL weights) and its download; offline, one line names what it tried
to fetch and where it keeps it. The input normalisation is the one timm's pretrained config names.
"""

from __future__ import annotations

import logging
from functools import lru_cache, partial
from typing import Any

import torch
from torch import nn

from trytry_reid.errors import ReidError
from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD
from trytry_reid.models.backbone_entry import TIMM_PREFIX, Backbone, check_last_stride
from trytry_reid.models.downloads import WeightsDownloadError, one_line

log = logging.getLogger("trytry_reid")

TIMM_EXTRA = "pip install 'trytry-reid[timm]'"

# timm modules whose models are convolutional feature extractors (any input size, NCHW feature maps).
CNN_FAMILIES = frozenset({
    "byobnet", "convmixer", "convnext", "cspnet", "cspnext", "densenet", "dla", "dpn", "efficientnet", "fasternet",
    "ghostnet", "hardcorenas", "hgnet", "hrnet", "inception_next", "inception_resnet_v2", "inception_v3",
    "inception_v4", "lcnetv2", "mobilenetv3", "nasnet", "nfnet", "pnasnet", "rdnet", "regnet", "repghost",
    "repvit", "res2net", "resnest", "resnet", "resnetv2", "rexnet", "selecsls", "senet", "sknet", "starnet",
    "tresnet", "vgg", "vovnet", "xception", "xception_aligned",
})


class TimmBackboneError(ReidError, ValueError):
    """A ``timm/<name>`` backbone that cannot be used: timm absent, unknown name, not a CNN, no output_stride."""


def import_timm() -> Any:
    try:
        import timm
    except ImportError as error:
        raise TimmBackboneError(f"timm backbones ({TIMM_PREFIX}<name>) need the timm package: {TIMM_EXTRA}") \
            from error
    return timm


def timm_backbone(name: str) -> Backbone:
    """The catalog entry of ``timm/<name>``; TimmBackboneError when the name is not a timm CNN."""
    timm = import_timm()
    check_timm_name(timm, name)
    cfg = timm.models.get_pretrained_cfg(name)
    has_weights = cfg is not None and bool(cfg.hf_hub_id or cfg.url or cfg.file)
    return Backbone(partial(build_timm_trunk, name), mean=tuple(cfg.mean) if cfg else IMAGENET_MEAN,
                    std=tuple(cfg.std) if cfg else IMAGENET_STD, head_prefixes=head_prefixes(name),
                    imagenet_state=partial(timm_pretrained_state, name) if has_weights else None)


def check_timm_name(timm: Any, name: str) -> None:
    arch, _, tag = name.partition(".")
    known = f"{TIMM_PREFIX}{name}"
    if not timm.models.is_model(arch):
        from trytry_reid.catalog import did_you_mean

        close = did_you_mean(arch, timm.list_models(module=sorted(CNN_FAMILIES)))
        raise TimmBackboneError(f"unknown timm model '{arch}' in backbone '{known}'.{close} "
                                f"List them with: python -c \"import timm; print(timm.list_models('*resnet*'))\"")
    if not timm.models.is_model_in_modules(arch, CNN_FAMILIES):
        family = timm.models.model_entrypoint(arch).__module__.rsplit(".", 1)[-1]
        raise TimmBackboneError(f"backbone '{known}' is a timm '{family}' model, not a CNN feature extractor; "
                                f"timm backbones must come from the convolutional families: "
                                f"{', '.join(sorted(CNN_FAMILIES))}")
    if tag and not timm.models.is_model_pretrained(name):
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        raise TimmBackboneError(f"timm model '{arch}' has no pretrained tag '{tag}' (backbone '{known}'); "
                                f"its tags: {', '.join(tags) or 'none'}")


def build_timm_trunk(name: str, last_stride: int = 2, pretrained: bool = False) -> tuple[nn.Module, int]:
    """timm's feature extractor of ``name``, returning its last feature map; (trunk, channels)."""
    check_last_stride(last_stride)
    timm = import_timm()
    kwargs = {}
    if last_stride == 1:
        kwargs["output_stride"] = natural_reduction(name) // 2
    try:
        trunk = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=(-1,), **kwargs)
    except (TypeError, AssertionError, ValueError, NotImplementedError) as error:
        if not kwargs:
            raise
        raise TimmBackboneError(f"backbone '{TIMM_PREFIX}{name}' does not support last stride 1 (timm's "
                                f"output_stride={kwargs['output_stride']}: {one_line(error)}); set "
                                "model.last_stride=2") from error
    if kwargs and trunk.feature_info.reduction()[-1] != kwargs["output_stride"]:
        raise TimmBackboneError(f"backbone '{TIMM_PREFIX}{name}' ignores timm's output_stride; set "
                                "model.last_stride=2")
    trunk.register_forward_hook(_last_feature_map)
    return trunk, int(trunk.feature_info.channels()[-1])


def _last_feature_map(module: nn.Module, inputs: Any, outputs: list[torch.Tensor]) -> torch.Tensor:
    """timm's feature extractors return a list of maps (one here); the trunk returns the map itself."""
    return outputs[-1]


@lru_cache(maxsize=None)
def natural_reduction(name: str) -> int:
    """Total stride of ``name``'s last feature map without output_stride (a weightless build)."""
    timm = import_timm()
    with torch.device("meta"):
        trunk = timm.create_model(name, features_only=True, out_indices=(-1,))
    return int(trunk.feature_info.reduction()[-1])


@lru_cache(maxsize=None)
def head_prefixes(name: str) -> tuple[str, ...]:
    """Top-level modules of timm's full model that the trunk lacks (the classifier head, a last 1x1 conv):
    the parts a full timm state dict may carry beyond the trunk. Empty when the trunk renames stages (then
    a plain timm state dict cannot fit anyway)."""
    timm = import_timm()
    with torch.device("meta"):
        full = set(timm.create_model(name).state_dict())
        trunk = set(timm.create_model(name, features_only=True, out_indices=(-1,)).state_dict())
    if not trunk <= full:
        return ()
    return tuple(sorted({key.split(".")[0] + "." for key in full - trunk}))


def check_timm_trunk(name: str, last_stride: int, height: int, width: int) -> None:
    """Refuse before training what building ``timm/<name>`` would refuse, and a trunk that does not give an NCHW
    feature map for ``height`` x ``width`` images (a weightless build and forward on the meta device)."""
    timm_backbone(name)
    with torch.device("meta"):
        trunk, channels = build_timm_trunk(name, last_stride)
        try:
            out = trunk.eval()(torch.empty(2, 3, height, width))
        except (RuntimeError, AssertionError, ValueError, NotImplementedError) as error:
            raise TimmBackboneError(f"backbone '{TIMM_PREFIX}{name}' cannot run on {height}x{width} images: "
                                    f"{one_line(error)}") from error
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[1] != channels:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TimmBackboneError(f"backbone '{TIMM_PREFIX}{name}' gives {shape} for {height}x{width} images, "
                                f"not a feature map [N, {channels}, h, w]")


def timm_pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """The trunk's tensors from timm's pretrained weights (its cache, else its download)."""
    try:
        trunk, _ = build_timm_trunk(name, pretrained=True)
    except (OSError, RuntimeError) as error:  # network and cache errors (Hub errors are OSErrors), checksums
        if isinstance(error, RuntimeError) and "hash" not in str(error):
            raise
        raise WeightsDownloadError(f"timm could not fetch the pretrained weights of '{name}' from "
                                   f"{_weights_source(name)} ({one_line(error)}); timm keeps them in "
                                   f"'{_cache_folder(name)}' once downloaded (or set model.pretrained to none "
                                   "or to a weights file)") from error
    return trunk.state_dict()


def _weights_source(name: str) -> str:
    cfg = import_timm().models.get_pretrained_cfg(name)
    if cfg.hf_hub_id and _has_hub():
        return f"the Hugging Face Hub repo 'https://huggingface.co/{cfg.hf_hub_id}'"
    return cfg.url or str(cfg.file)


def _cache_folder(name: str) -> str:
    cfg = import_timm().models.get_pretrained_cfg(name)
    if cfg.hf_hub_id and _has_hub():
        from huggingface_hub import constants

        return constants.HF_HUB_CACHE
    return f"{torch.hub.get_dir()}/checkpoints"


def _has_hub() -> bool:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return False
    return True
