"""Colour arithmetic shared by the batch augmentations."""

from __future__ import annotations

import torch

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 1, H, W] luma."""
    red, green, blue = GRAY_WEIGHTS
    gray = images[:, 0:1].mul(red)
    return gray.add_(images[:, 1:2], alpha=green).add_(images[:, 2:3], alpha=blue)
