"""The photometric half of training augmentation, on a whole batch at once: uint8 images [B, 3, H, W] ->
AugMix-like mixing (data/augmix.py) -> colour jitter -> random grayscale -> normalise -> random erasing, every
image with its own random draws; an augmentation that is off draws nothing, so the others' draws stay the same.

Per image, torchvision's PIL ColorJitter, ToTensor and Normalize cost about 45 ms of one core per 64-image
batch at 128x64 (benchmarks/augment_speed.py); the same arithmetic as a few tensor operations over the batch
costs a fraction of that, and on a 2-core machine every millisecond a data-loader worker spends is taken from
the training threads. Geometry (resize, flip, pad + crop) stays per image (data/transforms.py).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from trytry_reid.data.augmix import augmix, augmix_plan
from trytry_reid.data.colour import grayscale
from trytry_reid.data.transforms import check_probability, check_stats
from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD

ERASE_SCALE = (0.02, 0.33)  # erased fraction of the image area (Zhong et al. 2020; torchvision's defaults)
ERASE_RATIO = (0.3, 3.3)  # erased box's height / width
ERASE_ATTEMPTS = 10  # box draws per image; none that fits inside the image: the image is left as it is


def jitter_factors(batch: int, strength: float, generator: torch.Generator) -> torch.Tensor:
    """[B, 3] brightness, contrast and saturation factors, each uniform in [max(0, 1 - strength), 1 + strength]."""
    low = max(0.0, 1.0 - strength)
    return torch.empty(batch, 3).uniform_(low, 1.0 + strength, generator=generator)


def color_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, then contrast, then saturation, each blended and clamped to [0, 1] as torchvision's
    ``adjust_*`` on float images. torchvision draws the order at random; without the clamps the three commute
    (brightness scales each pixel and the grey levels alike; contrast and saturation blend towards grey levels
    that they themselves keep), so a fixed order changes only where pixels saturate.

    images: [B, 3, H, W] in [0, 1]; factors: [B, 3] from :func:`jitter_factors`.
    """
    brightness, contrast, saturation = (factors[:, i].view(-1, 1, 1, 1) for i in range(3))
    out = images.mul(brightness).clamp_(0.0, 1.0)
    mean_gray = grayscale(out).mean(dim=(1, 2, 3), keepdim=True)
    out.mul_(contrast).add_((1.0 - contrast) * mean_gray).clamp_(0.0, 1.0)
    gray = grayscale(out).mul_(1.0 - saturation)  # before out changes in place
    return out.mul_(saturation).add_(gray).clamp_(0.0, 1.0)


def erase_boxes(batch: int, height: int, width: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """[B, 4] boxes (top, left, box height, box width) to erase, as torchvision's RandomErasing draws them:
    with probability ``p``, the first of ERASE_ATTEMPTS (area fraction, aspect ratio) draws whose box fits
    strictly inside the image, at a uniform position. Images left alone get a 0 x 0 box."""
    area = height * width
    scale = torch.empty(batch, ERASE_ATTEMPTS).uniform_(*ERASE_SCALE, generator=generator)
    log_ratio = torch.empty(batch, ERASE_ATTEMPTS).uniform_(*map(math.log, ERASE_RATIO), generator=generator)
    box_h = (area * scale * log_ratio.exp()).sqrt().round().long()
    box_w = (area * scale / log_ratio.exp()).sqrt().round().long()
    fits = (box_h < height) & (box_w < width)
    first = fits.int().argmax(dim=1)
    rows = torch.arange(batch)
    chosen = fits.any(dim=1) & (torch.rand(batch, generator=generator) < p)
    box_h, box_w = box_h[rows, first] * chosen, box_w[rows, first] * chosen
    top = (torch.rand(batch, generator=generator) * (height - box_h + 1)).long()
    left = (torch.rand(batch, generator=generator) * (width - box_w + 1)).long()
    return torch.stack([top, left, box_h, box_w], dim=1)


def erase(images: torch.Tensor, boxes: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """``images`` [B, C, H, W] with each image's box (a row of :func:`erase_boxes`) set to ``value``."""
    top, left, box_h, box_w = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    rows = torch.arange(images.shape[-2]).view(1, -1, 1)
    cols = torch.arange(images.shape[-1]).view(1, 1, -1)
    inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
    return images.masked_fill(inside.unsqueeze(1), value)


def random_grayscale(images: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Each image of [B, 3, H, W] replaced by its luma in all three channels with probability ``p``."""
    chosen = (torch.rand(len(images), generator=generator) < p).view(-1, 1, 1, 1)
    return torch.where(chosen, grayscale(images).expand_as(images), images)


class BatchPhotometric:
    """uint8 images [B, 3, H, W] -> normalised float32 [B, 3, H, W]: AugMix-like mixing of probability
    ``augmix_p``, colour jitter of strength ``color_jitter`` (brightness, contrast, saturation; 0 = off),
    grayscale with probability ``grayscale_p``, normalisation by ``mean``/``std``, then random erasing with
    probability ``random_erasing_p`` filling with 0 (the dataset mean colour)."""

    def __init__(self, *, color_jitter: float = 0.0, random_erasing_p: float = 0.0, grayscale_p: float = 0.0,
                 augmix_p: float = 0.0, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        if color_jitter < 0:
            raise ValueError(f"transform color_jitter={color_jitter}: expected a value >= 0")
        for name, p in (("random_erasing_p", random_erasing_p), ("grayscale_p", grayscale_p),
                        ("augmix_p", augmix_p)):
            check_probability(name, p)
        check_stats(mean, std)
        self.color_jitter, self.random_erasing_p = float(color_jitter), float(random_erasing_p)
        self.grayscale_p, self.augmix_p = float(grayscale_p), float(augmix_p)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"BatchPhotometric: expected uint8 images [B, 3, H, W], got {images.dtype} "
                             f"{tuple(images.shape)}")
        out = images.float().div_(255.0)
        if self.augmix_p > 0:
            out = augmix(out, augmix_plan(len(out), self.augmix_p, generator))
        if self.color_jitter > 0:
            out = color_jitter(out, jitter_factors(len(out), self.color_jitter, generator))
        if self.grayscale_p > 0:
            out = random_grayscale(out, self.grayscale_p, generator)
        out = out.sub_(self.mean).div_(self.std)
        if self.random_erasing_p > 0:
            boxes = erase_boxes(len(out), out.shape[-2], out.shape[-1], self.random_erasing_p, generator)
            out = erase(out, boxes)
        return out
