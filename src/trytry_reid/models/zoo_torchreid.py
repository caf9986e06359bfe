"""torchreid (0.2.5) model files as ReidModels: the architectures, how to tell them from the keys, the key table.

Key table (after ``module.`` is stripped):

====================================  =================================  ======================================
torchreid key                         ReidModel key                      note
====================================  =================================  ======================================
``conv1.*`` ... ``conv5.*``,          ``trunk.<same>``                   OSNet trunks keep torchreid's names
``pool2.*``, ``pool3.*``
``conv1``, ``bn1``, ``layer1-4.*``    ``trunk.<same>``                   ResNet (IBN-a) trunks
``fc.0.{weight,bias}``                ``embedding.{weight,bias}``        the 512-d "fc" block's Linear
``fc.1.*``                            ``embedding_bn.*``                 its BatchNorm1d (a ReLU follows)
``classifier.*``, ``fc.{weight,bias}``  dropped                          identity / ImageNet classifiers
====================================  =================================  ======================================

torchreid's eval output is the global average of the last feature map passed through "fc" when the model
has one (Linear, BatchNorm1d, ReLU): ReidModel with average pooling, ``embedding_bn_relu`` and no BNNeck gives
the same vector, then L2-normalises it. torchreid's test transform resizes bilinearly (Pillow) to 256x128 and
normalises with ImageNet's mean and std.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD
from trytry_reid.models.resnet_ibn import DEPTH_OF_LAYER3
from trytry_reid.models.zoo_file import ImportOptions, ImportPlan, Renamed, ZooImportError, block_indices

OSNETS = ("osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25", "osnet_ibn_x1_0", "osnet_ain_x1_0",
          "osnet_ain_x0_75", "osnet_ain_x0_5", "osnet_ain_x0_25")
# torchreid model name -> (backbone of this project, last stride); torchreid builds resnet50_fc512 with last
# stride 1, its other ResNets with 2; OSNet's last stride is its last transition's pooling (models/osnet.py).
ARCHS: dict[str, tuple[str, int]] = {
    **{name: (name, 2) for name in OSNETS},
    "resnet50_ibn_a": ("resnet50_ibn_a", 2),
    "resnet50": ("resnet50", 2),
    "resnet101": ("resnet101", 2),
    "resnet50_fc512": ("resnet50", 1),
}
OSNET_STEM_WIDTHS = {64: "x1_0", 48: "x0_75", 32: "x0_5", 16: "x0_25"}
HEIGHT, WIDTH = 256, 128


def infer_arch(state: dict[str, torch.Tensor], path: Path) -> str:
    """The torchreid model name that the keys and shapes describe."""
    keys = list(state)
    if "conv1.conv.weight" in state:
        width = OSNET_STEM_WIDTHS.get(state["conv1.conv.weight"].shape[0])
        if width is None:
            raise ZooImportError(f"'{path}': an OSNet with {state['conv1.conv.weight'].shape[0]} stem channels; "
                                 f"torchreid's widths have {', '.join(map(str, OSNET_STEM_WIDTHS))}")
        variant = "ain_" if "pool2.0.conv.weight" in state else "ibn_" if "conv2.0.IN.weight" in state else ""
        return f"osnet_{variant}{width}"
    if "layer1.0.conv3.weight" in state:
        depth = DEPTH_OF_LAYER3.get(block_indices(keys, "layer3"))
        if depth is None:
            raise ZooImportError(f"'{path}': a ResNet with {block_indices(keys, 'layer3')} blocks in layer3; "
                                 "importable: ResNet-50 (6) and ResNet-101 (23)")
        if "layer1.0.bn1.IN.weight" in state:
            return f"resnet{depth}_ibn_a"
        return "resnet50_fc512" if depth == 50 and "fc.0.weight" in state else f"resnet{depth}"
    raise ZooImportError(f"'{path}': not a torchreid model this project can import (no OSNet 'conv1.conv.weight' "
                         f"nor ResNet 'layer1.0.conv3.weight'); importable: {', '.join(ARCHS)}")


def rename(state: dict[str, torch.Tensor]) -> Renamed:
    """The key table above."""
    weights, dropped = {}, []
    for key, value in state.items():
        if key.startswith("classifier.") or key in ("fc.weight", "fc.bias"):
            dropped.append(key)
        elif key.startswith("fc.0."):
            weights["embedding." + key[len("fc.0."):]] = (key, value)
        elif key.startswith("fc.1."):
            weights["embedding_bn." + key[len("fc.1."):]] = (key, value)
        else:
            weights["trunk." + key] = (key, value)
    return Renamed(weights, dropped)


def plan(state: dict[str, torch.Tensor], path: Path, options: ImportOptions) -> ImportPlan:
    """How ``state`` (a torchreid model) becomes a ReidModel."""
    if options.pooling not in (None, "avg"):
        raise ZooImportError(f"--pooling {options.pooling}: torchreid's models average-pool; leave it out")
    inferred = infer_arch(state, path)
    arch = options.arch or inferred
    if arch not in ARCHS:
        raise ZooImportError(f"--arch {arch}: not a torchreid architecture this project imports; importable: "
                             f"{', '.join(ARCHS)} (the file looks like {inferred})")
    backbone, last_stride = ARCHS[arch]
    embedding_dim = int(state["fc.0.weight"].shape[0]) if "fc.0.weight" in state else 0
    model = {"backbone": backbone, "last_stride": options.last_stride or last_stride, "embedding_dim": embedding_dim,
             "embedding_bn_relu": embedding_dim > 0, "bnneck": False, "pooling": "avg",
             "retrieval_feature": "bn_features"}
    preprocessing = {"height": options.height or HEIGHT, "width": options.width or WIDTH,
                     "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "interpolation": "bilinear"}
    notes = [] if options.height else [f"input {HEIGHT}x{WIDTH} (torchreid's default; the file does not record "
                                       "it: pass --height/--width if the model was trained at another size)"]
    return ImportPlan(arch, model, rename(state), preprocessing, notes=notes)
