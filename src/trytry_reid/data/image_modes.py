"""Any decoded image as the 8-bit RGB picture it shows, or a clear refusal; never a blank made by misreading.

Pillow's own ``convert("RGB")`` clips 16-bit values to 255, so a 16-bit PNG becomes pure white, and drops
alpha, so a transparent cut-out shows whatever colour its hidden pixels hold. The rules here, applied to
every image the toolkit embeds (files, uploads, PIL images given to the Embedder):

* orientation: an EXIF orientation tag is applied first (as ``ImageOps.exif_transpose`` does), so a phone
  photo stored sideways is read upright (a sideways TIFF is refused: see ``orientation``);
* ``RGB`` as it is; ``L`` and ``1`` (grey, black and white) repeated on the three channels; ``P`` (a palette),
  ``CMYK``,
  ``YCbCr``, ``LAB``, ``HSV`` converted by Pillow;
* 16-bit grey (``I;16*``, and ``I``, which is what 16-bit PPM / PGM files decode to): samples are 16-bit,
  scaled to 8 bits as ``round(v * 255 / 65535)``; an ``I`` image with values outside [0, 65535] is refused;
* floating point (``F``): values must lie in [0, 1] and are scaled by 255; other ranges (and NaN) are refused;
* transparency (``RGBA``, ``LA``, ``PA``, ``P`` / ``L`` / ``RGB`` with a transparent colour): the image is
  composited over ``ALPHA_BACKGROUND``, the ImageNet mean colour, which the standard normalisation maps to
  zero (transparent pixels carry no signal to the model); an image with no visible pixel is refused;
* an image whose varying values all round to one 8-bit colour (a 16-bit image using only its lowest values)
  is refused rather than embedded as a blank; any other mode is refused, naming it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from trytry_reid.errors import ReidError

ALPHA_BACKGROUND = (124, 116, 104)    # round(255 * ImageNet mean): zero after the usual normalisation
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
PILLOW_CONVERTS = ("1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV")
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose does)
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}
SIDEWAYS = (5, 6, 7, 8)     # orientations that swap width and height


class ImageModeError(ReidError, ValueError):
    """A decoded image whose pixels cannot be read as a picture (mode, value range, nothing visible)."""


def orientation(image: Image.Image) -> int:
    """The turn still to apply to ``image`` once decoded: its EXIF orientation (1: none, also for no tag or an
    unknown value). Read it before ``load()``. Pillow's TIFF loader turns a TIFF itself while decoding (and
    drops the tag), so a TIFF needs no turn here; a sideways TIFF (orientation 5 to 8) is refused, because
    Pillow decodes an uncompressed one in any mode but RGB into scrambled pixels."""
    value = image.getexif().get(ORIENTATION_TAG, 1)
    value = value if value in UPRIGHT else 1
    if image.format != "TIFF":
        return value
    if value in SIDEWAYS:
        raise ImageModeError(f"a TIFF whose EXIF orientation ({value}) turns it sideways: Pillow cannot decode "
                             f"every such TIFF correctly; save the picture upright, without the tag")
    return 1


def turned(image: Image.Image, how: int) -> Image.Image:
    """``image`` transposed as EXIF orientation ``how`` says (``image`` itself for 1)."""
    return image.transpose(UPRIGHT[how]) if how in UPRIGHT else image


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (see ``orientation``), decoded."""
    how = orientation(image)
    image.load()
    return turned(image, how)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` (any mode) as a new 8-bit RGB image by the rules in the module docstring."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image.copy()     # decoded, and independent of the file it was opened from
    if mode in SIXTEEN_BIT:
        return _grey_to_rgb(_sixteen_bit_to_8(np.asarray(image), mode))
    if mode == "F":
        return _grey_to_rgb(_float_to_8(np.asarray(image)))
    if mode in ALPHA_MODES or "transparency" in image.info:
        return _composite(image)
    if mode in PILLOW_CONVERTS:
        return image.convert("RGB")
    raise ImageModeError(f"image mode {mode!r} is not supported (use RGB, grey, 16-bit grey, CMYK or RGBA)")


def as_rgb(image: Image.Image) -> Image.Image:
    """Upright, then 8-bit RGB: what every reader in the toolkit embeds."""
    return to_rgb(upright(image))


def _sixteen_bit_to_8(values: np.ndarray, mode: str) -> np.ndarray:
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise ImageModeError(f"a 32-bit integer image (mode {mode!r}) with values in [{low}, {high}]: only "
                             f"16-bit samples in [0, 65535] can be read; save it as an 8- or 16-bit image")
    scaled = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)   # round(v / 257) = round(v * 255 / 65535)
    _refuse_flattened(low, high, scaled, f"16-bit values in [{low}, {high}]")
    return scaled


def _float_to_8(values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ImageModeError("a floating-point image (mode 'F') holding NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise ImageModeError(f"a floating-point image (mode 'F') with values in [{low:g}, {high:g}]: expected "
                             f"[0, 1]; save it as an 8-bit image")
    scaled = np.rint(values.astype(np.float64) * 255.0).astype(np.uint8)
    _refuse_flattened(low, high, scaled, f"floating-point values in [{low:g}, {high:g}]")
    return scaled


def _refuse_flattened(low: float, high: float, scaled: np.ndarray, described: str) -> None:
    """A varying image that became one flat colour at 8 bits would be embedded as a blank: refuse it."""
    if low != high and scaled.size and scaled.min() == scaled.max():
        raise ImageModeError(f"{described} all round to the one 8-bit level {int(scaled.flat[0])}: the image "
                             f"would be a blank; rescale it to use the full range")


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(grey), mode="L").convert("RGB")


def _composite(image: Image.Image) -> Image.Image:
    """Alpha (or a transparent palette colour) blended over ``ALPHA_BACKGROUND``; opaque images unchanged."""
    rgba = image.convert("LA").convert("RGBA") if image.mode == "La" else image.convert("RGBA")
    alpha = rgba.getchannel("A")
    low, high = alpha.getextrema()
    if high == 0:
        raise ImageModeError(f"an image (mode {image.mode!r}) that is fully transparent: no visible pixel")
    if low == 255:
        return rgba.convert("RGB")
    background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
