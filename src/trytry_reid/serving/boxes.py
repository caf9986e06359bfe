"""A tracker's boxes as crops of its frame: checked, clipped to the frame, and measured against the minimum
crop size (``data/crop_size.py``).

``Embedder.embed_boxes`` decides what a box too small to embed (or empty after clipping) becomes with
``on_small``: ``"error"`` (the default) raises naming the first such box and how many there are;
``"nan"`` keeps one row per box and fills those boxes' rows with NaN, so a tracker can go on with the rest
(``np.isnan(features[:, 0])`` is the mask of boxes left out; their distances are NaN and ``same_person`` is
False for them).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from trytry_reid.data.crop_size import MIN_CROP_SIDE, CropTooSmallError
from trytry_reid.data.image_modes import as_rgb

ON_SMALL = ("error", "nan")


def frame_pixels(frame) -> np.ndarray:
    """A frame (H x W x 3 uint8 array, or PIL image read like any image) as an H x W x 3 uint8 array."""
    if isinstance(frame, Image.Image):
        return np.asarray(as_rgb(frame))
    pixels = np.asarray(frame)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"frame must be an H x W x 3 uint8 array (or a PIL image), got shape {pixels.shape} "
                         f"dtype {pixels.dtype}")
    return pixels


def crop_bounds(boxes_xyxy, frame_hw: tuple[int, int]) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Integer (x1, y1, x2, y2) per box, clipped to the frame and rounded outward to whole pixels, and a bool
    mask [K] of the boxes below the minimum crop size after clipping (empty ones included)."""
    try:
        boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    except (TypeError, ValueError) as error:      # ragged rows, text
        raise ValueError(f"boxes must be a [K, 4] array of numbers (x1, y1, x2, y2): {error}") from None
    boxes = boxes.reshape(0, 4) if boxes.ndim == 1 and boxes.size == 0 else boxes     # no box at all
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be a [K, 4] array of (x1, y1, x2, y2), got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes hold NaN or infinite coordinates")
    height, width = frame_hw
    x1, x2 = np.clip(boxes[:, [0, 2]], 0, width).T
    y1, y2 = np.clip(boxes[:, [1, 3]], 0, height).T
    x1, y1, x2, y2 = np.floor(x1), np.floor(y1), np.ceil(x2), np.ceil(y2)
    small = (x2 - x1 < MIN_CROP_SIDE) | (y2 - y1 < MIN_CROP_SIDE)
    return [tuple(int(v) for v in row) for row in np.stack([x1, y1, x2, y2], 1)], small


def check_on_small(on_small: str, bounds: list[tuple[int, int, int, int]], small: np.ndarray, boxes_xyxy,
                   frame_hw: tuple[int, int]) -> None:
    """Raise for ``on_small="error"`` when a box is too small or empty; refuse an unknown policy."""
    if on_small not in ON_SMALL:
        raise ValueError(f"on_small={on_small!r}: expected one of {', '.join(ON_SMALL)}")
    if on_small == "nan" or not small.any():
        return
    first = int(np.flatnonzero(small)[0])
    box = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)[first].tolist()
    x1, y1, x2, y2 = bounds[first]
    size = "empty" if x2 <= x1 or y2 <= y1 else \
        f"{x2 - x1}x{y2 - y1} pixels, below the minimum crop size of {MIN_CROP_SIDE}x{MIN_CROP_SIDE},"
    raise CropTooSmallError(
        f"box {first} {box} is {size} inside the {frame_hw[1]}x{frame_hw[0]} frame (after clipping); "
        f"{int(small.sum())} box(es) empty or below {MIN_CROP_SIDE} pixels a side in all: drop them, or pass "
        f"on_small='nan' to get NaN rows for them")
