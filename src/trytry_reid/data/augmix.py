"""AugMix-like style mixing on a whole batch (Hendrycks et al. 2020, photometric operations only).

Each chosen image becomes ``m * image + (1 - m) * sum_i w_i * chain_i(image)``: ``WIDTH`` chains of 1 to
``MAX_DEPTH`` operations drawn at random, mixed with Dirichlet(1) weights ``w`` and blended with the original
by ``m ~ U(0, 1)``. The operations change tone and colour only (a person's shape and position stay where they
are, so the mix never shows two ghosts): autocontrast, posterize, solarize, brightness, contrast and
saturation, each with its own level ``u ~ U(0, 1)``:

    autocontrast      each channel stretched to [0, 1] (a flat channel is left as it is)
    posterize         keep 4 + floor(4u) of the 8 bits of each value
    solarize          values >= 1 - u/2 inverted (x -> 1 - x)
    brightness        x * f                               f = 0.5 + u, clamped to [0, 1]
    contrast          f * x + (1 - f) * mean grey level   f = 0.5 + u, clamped
    saturation        f * x + (1 - f) * grey              f = 0.5 + u, clamped

AugMix's consistency loss between views is left out: this is the mixing alone, as an augmentation.
All random draws come from the batch's generator (:func:`augmix_plan`), so a batch is the same for a seed.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from trytry_reid.data.colour import grayscale

WIDTH = 3  # chains mixed per image
MAX_DEPTH = 3  # operations per chain: 1 to MAX_DEPTH, drawn per chain


def autocontrast(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    flat = high <= low
    scale = torch.where(flat, torch.ones_like(high), 1.0 / (high - low).masked_fill(flat, 1.0))
    return ((x - low.masked_fill(flat, 0.0)) * scale).clamp_(0.0, 1.0)


def posterize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    step = 2.0 ** (4 - (4 * level).floor().clamp(max=3)).view(-1, 1, 1, 1)  # 2 ** (8 - bits)
    return (x * 255.0 / step).floor() * step / 255.0


def solarize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    threshold = (1.0 - level / 2).view(-1, 1, 1, 1)
    return torch.where(x >= threshold, 1.0 - x, x)


def brightness(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    return (x * (0.5 + level).view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def contrast(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    factor = (0.5 + level).view(-1, 1, 1, 1)
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return (x * factor + (1.0 - factor) * mean).clamp_(0.0, 1.0)


def saturation(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    factor = (0.5 + level).view(-1, 1, 1, 1)
    return (x * factor + (1.0 - factor) * grayscale(x)).clamp_(0.0, 1.0)


# images [N, 3, H, W] in [0, 1], levels [N] in [0, 1) -> images [N, 3, H, W] in [0, 1]
OPERATIONS: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] = (
    autocontrast, posterize, solarize, brightness, contrast, saturation)


class AugMixPlan(NamedTuple):
    """The random draws of one batch of B images."""

    chosen: torch.Tensor  # [B] bool: the image is mixed
    ops: torch.Tensor  # [B, WIDTH, MAX_DEPTH] indices into OPERATIONS
    levels: torch.Tensor  # [B, WIDTH, MAX_DEPTH] in [0, 1)
    depths: torch.Tensor  # [B, WIDTH] in 1..MAX_DEPTH
    weights: torch.Tensor  # [B, WIDTH] Dirichlet(1): non-negative, summing to 1
    keep: torch.Tensor  # [B] the original's share m, U(0, 1)


def augmix_plan(batch: int, p: float, generator: torch.Generator) -> AugMixPlan:
    chosen = torch.rand(batch, generator=generator) < p
    ops = torch.randint(len(OPERATIONS), (batch, WIDTH, MAX_DEPTH), generator=generator)
    levels = torch.rand(batch, WIDTH, MAX_DEPTH, generator=generator)
    depths = torch.randint(1, MAX_DEPTH + 1, (batch, WIDTH), generator=generator)
    gammas = -torch.rand(batch, WIDTH, generator=generator).clamp_(min=1e-12).log()  # Gamma(1) = Exp(1)
    keep = torch.rand(batch, generator=generator)
    return AugMixPlan(chosen, ops, levels, depths, gammas / gammas.sum(dim=1, keepdim=True), keep)


def run_chain(x: torch.Tensor, ops: torch.Tensor, levels: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """Each image through its own chain: x [N, 3, H, W]; ops, levels [N, MAX_DEPTH]; depths [N]."""
    out = x.clone()
    for step in range(ops.shape[1]):
        for index, operation in enumerate(OPERATIONS):
            rows = ((ops[:, step] == index) & (depths > step)).nonzero().flatten()
            if len(rows):
                out[rows] = operation(out[rows], levels[rows, step])
    return out


def augmix(images: torch.Tensor, plan: AugMixPlan) -> torch.Tensor:
    """``images`` [B, 3, H, W] in [0, 1] with the plan's chosen images replaced by their mix."""
    rows = plan.chosen.nonzero().flatten()
    if not len(rows):
        return images
    x = images[rows]
    mixed = torch.zeros_like(x)
    for chain in range(plan.ops.shape[1]):
        out = run_chain(x, plan.ops[rows, chain], plan.levels[rows, chain], plan.depths[rows, chain])
        mixed += plan.weights[rows, chain].view(-1, 1, 1, 1) * out
    keep = plan.keep[rows].view(-1, 1, 1, 1)
    result = images.clone()
    result[rows] = keep * x + (1.0 - keep) * mixed
    return result
