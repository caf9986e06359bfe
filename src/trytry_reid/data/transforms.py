"""Train and test transforms (torchvision): PIL RGB image -> normalised float tensor [3, height, width]."""

from __future__ import annotations

from typing import Sequence

import torchvision.transforms as T

from ..imagenet import IMAGENET_MEAN, IMAGENET_STD


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
                          random_erasing_p: float = 0.0, color_jitter: float = 0.0,
                          mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> T.Compose:
    """Resize, flip, pad + random crop back to size, optional colour jitter, normalise, optional erasing.

    ``color_jitter`` is the brightness/contrast/saturation strength (0 = off). Random erasing runs after
    normalisation and fills with 0, i.e. the dataset mean colour.
    """
    check_size(height, width)
    check_probability("flip_p", flip_p)
    check_probability("random_erasing_p", random_erasing_p)
    check_stats(mean, std)
    if pad < 0 or color_jitter < 0:
        raise ValueError(f"transform pad={pad} color_jitter={color_jitter}: expected values >= 0")
    steps: list = [T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR, antialias=True)]
    if flip_p > 0:
        steps.append(T.RandomHorizontalFlip(flip_p))
    if pad > 0:
        steps += [T.Pad(pad), T.RandomCrop((height, width))]
    if color_jitter > 0:
        steps.append(T.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    steps += [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    if random_erasing_p > 0:
        steps.append(T.RandomErasing(p=random_erasing_p, value=0))
    return T.Compose(steps)


def build_test_transform(height: int, width: int, *, mean: Sequence[float] = IMAGENET_MEAN,
                         std: Sequence[float] = IMAGENET_STD) -> T.Compose:
    """Resize, to tensor, normalise: deterministic."""
    check_size(height, width)
    check_stats(mean, std)
    return T.Compose([T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                      T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))])
