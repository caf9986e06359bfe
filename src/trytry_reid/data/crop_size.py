"""The smallest crop the toolkit embeds: ``MIN_CROP_SIDE`` pixels per side.

A 1 x 1 or 3 x 200 crop holds no person; resized to the model's input it becomes a flat or smeared image
whose embedding lands somewhere in feature space and can match a real person within the threshold. Every
place that turns pixels into an embedding refuses smaller crops, with this one rule: image files (training,
extraction, index, verify, search: ``data/images.read_image``, and the cheap check of every dataset file),
``Embedder.embed`` and ``Embedder.embed_boxes`` (its ``on_small`` policy), and the HTTP API (422).
"""

from __future__ import annotations

from trytry_reid.errors import ReidError

MIN_CROP_SIDE = 8    # pixels; the 8 x 8 digits demo is the smallest legitimate input


class CropTooSmallError(ReidError, ValueError):
    """An image or box smaller than ``MIN_CROP_SIDE`` on a side; the message names it and its size."""


def crop_size_problem(width: int, height: int) -> str | None:
    """Why a ``width`` x ``height`` crop cannot be embedded, or None when it can."""
    if min(width, height) >= MIN_CROP_SIDE:
        return None
    return (f"{width}x{height} pixels is below the minimum crop size of {MIN_CROP_SIDE}x{MIN_CROP_SIDE} "
            f"(a crop that small holds no person to re-identify)")


def check_crop_size(width: int, height: int, what: str) -> None:
    """Raise :class:`CropTooSmallError` naming ``what`` when the crop is below the minimum."""
    problem = crop_size_problem(width, height)
    if problem is not None:
        raise CropTooSmallError(f"{what}: {problem}")
