"""Uploaded query images with bounded memory: size caps, a reduced decode, and few decodes at once.

A small file can hold a huge image (a flat-colour 4900 x 5000 PNG is 82 KB), and fifty of them decoded at
once took a server from 0.75 GB to 5.3 GB that it never gave back. Memory per upload is bounded by:

* the bytes (``max_bytes``, 413) and the pixel count read from the header before decoding
  (``MAX_IMAGE_PIXELS``, 413);
* a reduced decode: ``fit`` is about twice the model's input; a JPEG is decoded directly at 1/2, 1/4 or 1/8
  scale (Pillow ``draft``), any other format is reduced by an integer factor right after decoding
  (``Image.reduce``), so what is kept and transformed stays near ``fit`` whatever the upload's size;
* :class:`UploadGate`: at most ``limit`` uploads are decoded and embedded at once (the rest wait), and each
  hands the heap memory it freed back to the OS when done (glibc ``malloc_trim``; the server's many threads
  each get their own malloc arena, where freed blocks would otherwise stay resident), so the resident size
  stays bounded during a burst and returns near where it started after it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from fastapi import HTTPException
from PIL import Image

from trytry_reid.data.crop_size import crop_size_problem
from trytry_reid.data.image_modes import SIDEWAYS, ImageModeError, orientation, to_rgb, turned

MAX_IMAGE_PIXELS = 25_000_000           # refuse decompression bombs before decoding
REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr")   # what Image.reduce accepts
# other modes -> a reducible one that keeps every value (any other, e.g. a palette: RGB)
LOSSLESS_REDUCIBLE = {"1": "L", "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I", "La": "LA", "PA": "RGBA",
                      "RGBa": "RGBA"}


def decode_upload(data: bytes, max_bytes: int, fit: tuple[int, int] | None = None) -> Image.Image:
    """Bytes of an uploaded file -> upright 8-bit RGB image (``data/image_modes.py``), or an HTTPException
    saying what is wrong with it: 413 too large, 415 not a readable image, 422 readable but unusable (below
    the minimum crop size, a mode or value range that cannot be read, nothing visible).

    With ``fit`` = (width, height), an image at least twice as large in both sides is decoded or reduced
    to no less than ``fit`` (aspect kept), never to the full size in memory for long."""
    if len(data) > max_bytes:
        raise HTTPException(413, f"upload is larger than the {max_bytes} byte limit")
    if not data:
        raise HTTPException(400, "the 'image' upload is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise HTTPException(413, f"image is {image.width}x{image.height} pixels; "
                                         f"the limit is {MAX_IMAGE_PIXELS} pixels")
            problem = crop_size_problem(image.width, image.height)
            if problem is not None:
                raise HTTPException(422, f"the uploaded image is {problem}")
            how = orientation(image)
            stored_fit = fit if fit is None or how not in SIDEWAYS else (fit[1], fit[0])
            if stored_fit is not None:
                image.draft("RGB", stored_fit)   # JPEG only: decode at a reduced scale, still >= fit
            image.load()
            return to_rgb(turned(reduce_to_fit(image, stored_fit), how))
    except ImageModeError as error:
        raise HTTPException(422, f"the uploaded image cannot be used: {error}") from error
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise HTTPException(415, f"the upload is not a readable image ({type(error).__name__})") from error


def reduce_to_fit(image: Image.Image, fit: tuple[int, int] | None) -> Image.Image:
    """``image`` reduced by the largest integer factor that keeps both sides >= ``fit`` (itself when < 2).
    A mode ``Image.reduce`` does not take is first converted without loss (16-bit to ``I``, palette to
    RGB or RGBA), so ``to_rgb`` still reads its values."""
    if fit is None:
        return image
    factor = min(image.width // max(1, fit[0]), image.height // max(1, fit[1]))
    if factor < 2:
        return image
    if "transparency" in image.info:           # a transparent colour: reduce would drop the info
        image = image.convert("RGBA")
    elif image.mode not in REDUCIBLE_MODES:
        image = image.convert(LOSSLESS_REDUCIBLE.get(image.mode, "RGB"))
    return image.reduce(factor)


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere, e.g. musl or macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_free_memory() -> None:
    """Hand the heap's free pages back to the OS (every malloc arena); a no-op without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class UploadGate:
    """At most ``limit`` uploads decoded and embedded at once; each hands its freed memory back when done."""

    def __init__(self, limit: int = 2) -> None:
        if limit < 1:
            raise ValueError(f"the number of uploads handled at once must be >= 1, got {limit}")
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._slots:
            try:
                yield
            finally:
                release_free_memory()
