"""fast-reid (1.4.0, and its older model-zoo files) ResNet models as ReidModels: the key table, the head.

Key table (after ``module.`` is stripped):

================================================  ==========================  ===================================
fast-reid key                                     ReidModel key               note
================================================  ==========================  ===================================
``backbone.<k>``                                  ``trunk.<k>``               ``fastreid_r50[_ibn][_nl]`` trunks
``heads.pool_layer.p`` ``[1]``                    ``pool.p`` ``[]``           GeM with a learned p (SBS)
``heads.bottleneck.0.*`` (BatchNorm)              ``bnneck.*``                the BNNeck (bias frozen at 0)
``heads.bnneck.*``                                ``bnneck.*``                the same, in older files
``heads.bottleneck.0.weight`` (1x1 conv)          ``embedding.weight``        ``EMBEDDING_DIM > 0``; bias set 0
``heads.bottleneck.1.*``                          ``bnneck.*``                its BNNeck then
``heads.weight``, ``heads.classifier.*``          dropped                     identity classifier
``pixel_mean``, ``pixel_std`` (0-255)             ``data.mean`` / ``std``     divided by 255
================================================  ==========================  ===================================

fast-reid's EmbeddingHead returns, in eval mode, the pooled feature after its bottleneck (embedding and/or
BNNeck) whatever ``NECK_FEAT`` says (that setting picks the training feature): ReidModel's ``bn_features``.
Its test transform resizes bicubically (Pillow) to ``INPUT.SIZE_TEST`` (256x128 for BoT and AGW, 384x128 for
SBS) and leaves pixels in 0-255; the model subtracts ``PIXEL_MEAN`` and divides by ``PIXEL_STD`` (ImageNet's
times 255), which is ImageNet normalisation of [0, 1] pixels.

What the weights cannot tell is taken from the published configs and printed: the last stride (1 in all of
them), the input size (384x128 when the file learned a GeM p, as SBS; else 256x128), and a pooling without
weights (average for BoT; GeM with p = 3 for AGW, told apart by AGW's non-local blocks).
"""

from __future__ import annotations

from pathlib import Path

import torch

from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD
from trytry_reid.models.backbones import BACKBONES
from trytry_reid.models.resnet_ibn import DEPTH_OF_LAYER3
from trytry_reid.models.zoo_file import ImportOptions, ImportPlan, Renamed, ZooImportError, block_indices

CLASSIFIER_KEYS = ("heads.weight",)
CLASSIFIER_PREFIXES = ("heads.classifier.",)
PIXEL_KEYS = ("pixel_mean", "pixel_std")
POOLINGS = ("avg", "gem", "max")
LAST_STRIDE = 1


def infer_arch(state: dict[str, torch.Tensor], path: Path) -> str:
    """The ``fastreid_*`` backbone the keys describe: depth from layer3's blocks, IBN, non-local blocks."""
    keys = list(state)
    if "backbone.layer1.0.conv3.weight" not in state:
        raise ZooImportError(f"'{path}': not a fast-reid ResNet model (no 'backbone.layer1.0.conv3.weight'); "
                             "importable: fast-reid's build_resnet_backbone at depth 50 or 101 (BoT, AGW, SBS)")
    blocks = block_indices(keys, "backbone.layer3")
    if blocks not in DEPTH_OF_LAYER3:
        raise ZooImportError(f"'{path}': a ResNet with {blocks} blocks in layer3; importable: ResNet-50 (6) and "
                             "ResNet-101 (23)")
    ibn = "backbone.layer1.0.bn1.IN.weight" in state
    non_local = any(key.startswith("backbone.NL_") for key in keys)
    name = f"fastreid_r{DEPTH_OF_LAYER3[blocks]}{'_ibn' if ibn else ''}{'_nl' if non_local else ''}"
    if name not in BACKBONES:
        raise ZooImportError(f"'{path}': a fast-reid {name[len('fastreid_'):]} is not importable; importable: "
                             f"{', '.join(fastreid_backbones())}")
    return name


def fastreid_backbones() -> list[str]:
    return [name for name in BACKBONES if name.startswith("fastreid_")]


def rename(state: dict[str, torch.Tensor]) -> tuple[Renamed, int]:
    """The key table above; returns the renamed weights and the embedding size (0: none)."""
    conv = state.get("heads.bottleneck.0.weight")
    embedding_dim = int(conv.shape[0]) if conv is not None and conv.dim() == 4 else 0
    weights, dropped = {}, []
    for key, value in state.items():
        if key in CLASSIFIER_KEYS or key.startswith(CLASSIFIER_PREFIXES) or key in PIXEL_KEYS:
            dropped.append(key)
        elif key.startswith("backbone."):
            weights["trunk." + key[len("backbone."):]] = (key, value)
        elif key == "heads.pool_layer.p":
            weights["pool.p"] = (key, value.reshape(()) if value.numel() == 1 else value)
        elif key == "heads.bottleneck.0.weight" and embedding_dim:
            weights["embedding.weight"] = (key, value.flatten(1))
        elif key.startswith("heads.bottleneck.1." if embedding_dim else "heads.bottleneck.0."):
            weights["bnneck." + key.split(".", 3)[3]] = (key, value)
        elif key.startswith("heads.bnneck."):
            weights["bnneck." + key[len("heads.bnneck."):]] = (key, value)
        else:
            weights[f"(no place) {key}"] = (key, value)
    return Renamed(weights, dropped), embedding_dim


def pixel_statistics(state: dict[str, torch.Tensor], path: Path) -> tuple[list[float], list[float], list[str]]:
    """mean and std in [0, 1] units from ``pixel_mean`` / ``pixel_std`` (0-255), or ImageNet's when absent."""
    if not all(key in state for key in PIXEL_KEYS):
        return list(IMAGENET_MEAN), list(IMAGENET_STD), ["mean/std: ImageNet's (fast-reid's PIXEL_MEAN/PIXEL_STD "
                                                         "default; the file does not store them)"]
    values = [state[key].flatten().tolist() for key in PIXEL_KEYS]
    if any(len(v) != 3 for v in values) or min(values[1]) <= 0 or max(values[0]) <= 1.0:
        raise ZooImportError(f"'{path}': pixel_mean {values[0]} / pixel_std {values[1]}: expected 3 values each in "
                             "fast-reid's 0-255 units (std > 0)")
    mean, std = ([round(v / 255.0, 7) for v in item] for item in values)
    return mean, std, []


def choose_pooling(renamed: Renamed, backbone: str, options: ImportOptions, path: Path) -> tuple[str, list[str]]:
    """GeM when the file learned a p; otherwise --pooling, or the zoo's convention (AGW's GeM, BoT's average)."""
    if "pool.p" in renamed.weights:
        if options.pooling not in (None, "gem"):
            raise ZooImportError(f"--pooling {options.pooling}: '{path}' holds a learned GeM p "
                                 "('heads.pool_layer.p'); its pooling is gem")
        return "gem", []
    if options.pooling is not None:
        if options.pooling not in POOLINGS:
            raise ZooImportError(f"--pooling {options.pooling}: expected one of {', '.join(POOLINGS)}")
        return options.pooling, []
    pooling = "gem" if backbone.endswith("_nl") else "avg"
    why = "GeM p=3, AGW's (non-local blocks, no learned p)" if pooling == "gem" else "average, BoT's"
    return pooling, [f"pooling: {why}; the file holds no pooling weights: pass --pooling avg|gem|max if the "
                     "model used another"]


def plan(state: dict[str, torch.Tensor], path: Path, options: ImportOptions) -> ImportPlan:
    """How ``state`` (a fast-reid Baseline model) becomes a ReidModel."""
    inferred = infer_arch(state, path)
    arch = options.arch or inferred
    if arch not in fastreid_backbones():
        raise ZooImportError(f"--arch {arch}: not a fast-reid architecture this project imports; importable: "
                             f"{', '.join(fastreid_backbones())} (the file looks like {inferred})")
    renamed, embedding_dim = rename(state)
    pooling, notes = choose_pooling(renamed, arch, options, path)
    bnneck = any(ours.startswith("bnneck.") for ours in renamed.weights)
    model = {"backbone": arch, "last_stride": options.last_stride or LAST_STRIDE, "embedding_dim": embedding_dim,
             "embedding_bn_relu": False, "bnneck": bnneck, "pooling": pooling, "retrieval_feature": "bn_features"}
    filled = {"embedding.bias": torch.zeros(embedding_dim)} if embedding_dim else {}
    if pooling == "gem" and "pool.p" not in renamed.weights:
        filled["pool.p"] = torch.tensor(3.0)  # fast-reid's GeneralizedMeanPooling: a fixed p of 3
    mean, std, stats_notes = pixel_statistics(state, path)
    sbs = "heads.pool_layer.p" in state
    height, width = options.height or (384 if sbs else 256), options.width or 128
    if options.height is None:
        notes.append(f"input {height}x{width} (fast-reid's {'SBS' if sbs else 'BoT/AGW'} configs; the file does not "
                     "record it: pass --height/--width if the model was trained at another size)")
    if options.last_stride is None:
        notes.append(f"last stride {LAST_STRIDE} (all of fast-reid's published configs)")
    preprocessing = {"height": height, "width": width, "mean": mean, "std": std, "interpolation": "bicubic"}
    return ImportPlan(arch, model, renamed, preprocessing, filled=filled, notes=notes + stats_notes)
