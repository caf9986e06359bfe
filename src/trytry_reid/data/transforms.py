"""Per-image transforms (torchvision): test, PIL RGB image -> normalised float [3, height, width]; train, its
geometric half -> uint8 [3, height, width] (the photometric half is data/batch_augment.py).

Both resize the PIL image with Pillow's filter named by ``interpolation`` (INTERPOLATIONS: "bilinear", the
default and torchreid's; "bicubic", fast-reid's). Pillow's resize is antialiased: when it shrinks, each output
pixel averages all the input pixels its filter covers."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD

INTERPOLATIONS = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


def resize(height: int, width: int, interpolation: str) -> T.Resize:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"transform interpolation={interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}")
    return T.Resize((height, width), interpolation=INTERPOLATIONS[interpolation], antialias=True)


def check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"transform {name}={value!r}: expected a positive integer")


def check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"transform {name}={value!r}: expected a probability in [0, 1]")


def check_stats(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"transform mean={tuple(mean)} std={tuple(std)}: expected 3 values each, std > 0")


def build_train_transform(height: int, width: int, *, flip_p: float = 0.5, pad: int = 10,
                          interpolation: str = "bilinear") -> T.Compose:
    """The geometric half of training augmentation, per image: resize, flip, pad + random crop back to size,
    as uint8 [3, height, width]. Colour jitter, normalisation and random erasing follow on the whole batch
    (data/batch_augment.BatchPhotometric), so a training batch is normalised like the test transform's images.
    """
    check_size(height, width)
    check_probability("flip_p", flip_p)
    if pad < 0:
        raise ValueError(f"transform pad={pad}: expected a value >= 0")
    steps: list = [resize(height, width, interpolation)]
    if flip_p > 0:
        steps.append(T.RandomHorizontalFlip(flip_p))
    if pad > 0:
        steps += [T.Pad(pad), T.RandomCrop((height, width))]
    return T.Compose([*steps, T.PILToTensor()])


class ToNormalizedTensor:
    """PIL RGB image -> float32 [3, H, W], ``(pixel / 255 - mean) / std``: the values of torchvision's
    ``ToTensor`` then ``Normalize``, bit for bit (the same operations in the same order), in one pass and
    without their intermediate tensors; per crop at 128x64 it takes about two thirds of their time."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        check_stats(mean, std)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            raise TypeError(f"ToNormalizedTensor expects a PIL RGB image, got {getattr(image, 'mode', type(image))}")
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        return pixels.to(torch.float32).div_(255).sub_(self.mean).div_(self.std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def build_test_transform(height: int, width: int, *, mean: Sequence[float] = IMAGENET_MEAN,
                         std: Sequence[float] = IMAGENET_STD, interpolation: str = "bilinear") -> T.Compose:
    """Resize, to tensor, normalise: deterministic."""
    check_size(height, width)
    check_stats(mean, std)
    return T.Compose([resize(height, width, interpolation),
                      ToNormalizedTensor(mean, std)])
