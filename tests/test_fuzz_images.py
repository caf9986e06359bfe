"""Property tests (Hypothesis) over every way pixels come in: image files of any mode, size, format and EXIF
orientation, uploads of the same bytes, and the Embedder's inputs (arrays of any dtype and shape, PIL images,
box arrays). Each is read as the picture a reference written here from the rules says (data/image_modes.py:
16-bit scaled by 257, floats by 255, alpha blended over the ImageNet mean colour, orientation turned as
Pillow's exif_transpose does), or refused with a clear error; never another exception, never a blank made
from a picture that is not blank. Examples are derandomised (the same on every run); raise
TRYTRY_REID_FUZZ_EXAMPLES to explore more."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from trytry_reid.data.images import ImageReadError, read_image
from trytry_reid.errors import ReidError

from test_export import write_tiny_checkpoint

EXAMPLES = int(os.environ.get("TRYTRY_REID_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
BACKGROUND = np.array([124, 116, 104], dtype=np.float64)
FORMATS = {"1": ["PNG", "BMP", "TIFF"], "L": ["PNG", "BMP", "TIFF"], "LA": ["PNG", "TIFF"],
           "P": ["PNG", "GIF", "TIFF"], "RGB": ["PNG", "BMP", "TIFF", "WEBP"], "RGBA": ["PNG", "TIFF"],
           "CMYK": ["TIFF"], "I;16": ["PNG", "TIFF"], "I": ["TIFF"], "F": ["TIFF"]}
EXIF_FORMATS = ("PNG", "TIFF", "WEBP")


@st.composite
def picture(draw) -> dict:
    """A mode, a format that stores it losslessly, a size, pixel values (by a seeded pattern) and an optional
    EXIF orientation."""
    mode = draw(st.sampled_from(sorted(FORMATS)))
    fmt = draw(st.sampled_from(FORMATS[mode]))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    pattern = draw(st.sampled_from(["random", "flat", "low", "wide", "nan", "clear", "opaque"]))
    seed = draw(st.integers(0, 2**16))
    tag = draw(st.sampled_from([None, 1, 2, 3, 4, 5, 6, 7, 8])) if fmt in EXIF_FORMATS else None
    return {"mode": mode, "format": fmt, "size": (width, height), "pattern": pattern, "seed": seed, "tag": tag}


def pixels(spec: dict) -> tuple[Image.Image, np.ndarray | str]:
    """The image to save and what reading it must give: an RGB array, or a word the refusal must contain."""
    rng = np.random.default_rng(spec["seed"])
    mode, (width, height), pattern = spec["mode"], spec["size"], spec["pattern"]
    shape = (height, width)
    if mode in ("I;16", "I", "F"):
        return numeric(mode, pattern, rng, shape)
    if mode in ("LA", "RGBA"):
        bands = 2 if mode == "LA" else 4
        values = rng.integers(0, 256, size=(*shape, bands), dtype=np.uint8)
        values[..., -1] = {"clear": 0, "opaque": 255}.get(pattern, values[..., -1])
        image = Image.fromarray(values, mode)
        colour = np.repeat(values[..., :1], 3, 2) if mode == "LA" else values[..., :3]
        return image, blend(colour, values[..., -1])
    if mode == "P":
        palette = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
        index = rng.integers(0, 4, size=shape, dtype=np.uint8)
        image = Image.fromarray(index, "P")
        image.putpalette(palette.flatten().tolist())
        if pattern == "clear":
            image.info["transparency"] = 0
            return image, blend(palette[index], np.where(index == 0, 0, 255))
        return image, palette[index]
    values = rng.integers(0, 256, size=(*shape, {"1": 1, "L": 1, "RGB": 3, "CMYK": 4}[mode]), dtype=np.uint8)
    if mode == "1":
        image = Image.fromarray(values[..., 0] > 127).convert("1")
        return image, np.repeat(np.where(values > 127, 255, 0).astype(np.uint8), 3, 2)
    image = Image.fromarray(values[..., 0] if mode == "L" else values, mode)
    if mode == "CMYK":
        return image, np.asarray(image.convert("RGB"))          # "converted by Pillow" is the rule
    return image, np.repeat(values, 3, 2) if mode == "L" else values


def numeric(mode: str, pattern: str, rng, shape) -> tuple[Image.Image, np.ndarray | str]:
    if mode == "F":
        values = rng.random(shape, dtype=np.float32)
        values = {"flat": np.full(shape, 0.5, np.float32), "wide": values * 300 - 10,
                  "low": values * 1e-3}.get(pattern, values).astype(np.float32)
        if pattern == "nan":
            values.flat[0] = np.nan
        image = Image.fromarray(values, "F")
        if not np.isfinite(values).all():
            return image, "NaN"
        if values.min() < 0 or values.max() > 1:
            return image, "expected [0, 1]"
        scaled = np.floor(values.astype(np.float64) * 255 + 0.5)
    else:
        top = {"low": 100, "wide": 200_000 if mode == "I" else 65536}.get(pattern, 65536)
        values = rng.integers(-5 if pattern == "wide" and mode == "I" else 0, top, size=shape)
        values = np.full(shape, 40_000) if pattern == "flat" else values
        image = Image.fromarray(values.astype(np.uint16 if mode == "I;16" else np.int32))    # I;16 or I
        if values.min() < 0 or values.max() > 65535:
            return image, "only 16-bit samples in [0, 65535] can be read"
        scaled = np.floor(values * 255 / 65535 + 0.5)
    if values.min() != values.max() and scaled.min() == scaled.max():
        return image, "would be a blank"
    return image, np.repeat(scaled.astype(np.uint8)[..., None], 3, 2)


def blend(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray | str:
    """``colour`` over the background with ``alpha`` (0..255); refused when nothing is visible."""
    if alpha.max() == 0:
        return "fully transparent"
    a = alpha.astype(np.float64)[..., None] / 255
    return np.floor(colour * a + BACKGROUND * (1 - a) + 0.5).astype(np.uint8)


def encoded(spec: dict) -> tuple[bytes, np.ndarray | str]:
    """The file's bytes and the expected reading, turned by the EXIF tag as Pillow's exif_transpose does."""
    image, expected = pixels(spec)
    options = {"lossless": True, "exact": True} if spec["format"] == "WEBP" else {}
    if spec["format"] == "PNG" and "transparency" in image.info:
        options["transparency"] = image.info["transparency"]
    if spec["tag"] is not None:
        exif = Image.Exif()
        exif[0x0112] = spec["tag"]
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, spec["format"], **options)
    if min(spec["size"]) < 8:
        return buffer.getvalue(), "below the minimum crop size of 8x8"
    if spec["format"] == "TIFF" and spec["tag"] in (5, 6, 7, 8):
        return buffer.getvalue(), "a TIFF whose EXIF orientation"
    if not isinstance(expected, str) and spec["tag"] is not None:
        reference = Image.fromarray(expected)
        reference.info["exif"] = options["exif"]
        expected = np.asarray(ImageOps.exif_transpose(reference))
    return buffer.getvalue(), expected


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-images")


@FUZZ
@given(spec=picture())
def test_files_and_uploads_are_read_as_the_reference_says_or_refused(folder, spec):
    from fastapi import HTTPException

    from trytry_reid.serving.uploads import decode_upload

    data, expected = encoded(spec)
    path = folder / f"image.{spec['format'].lower()}"
    path.write_bytes(data)
    try:
        got = np.asarray(read_image(str(path)))
    except ImageReadError as error:
        assert isinstance(expected, str) and expected in str(error) and str(path) in str(error), (spec, error)
        with pytest.raises(HTTPException) as refused:
            decode_upload(data, 1 << 20)
        assert refused.value.status_code == 422 and expected in refused.value.detail
        return
    assert not isinstance(expected, str), (spec, "read, but must be refused", expected)
    assert got.dtype == np.uint8 and got.shape == expected.shape, spec
    assert np.abs(got.astype(int) - expected).max() <= 1, spec
    upload = np.asarray(decode_upload(data, 1 << 20))
    np.testing.assert_array_equal(upload, got)
    if expected.min() != expected.max():
        assert got.min() != got.max()                                       # never a blank


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from trytry_reid.serving.embedder import Embedder

    path = write_tiny_checkpoint(tmp_path_factory.mktemp("fuzz-embedder") / "small.pt", backbone="small_cnn")
    return Embedder.from_checkpoint(path)


DTYPES = [np.uint8, np.uint16, np.int64, np.float32, np.float64, np.bool_]


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.sampled_from([2, 3, 3, 3, 4]))
    shape = tuple(draw(st.integers(0, 24)) for _ in range(ndim))
    if ndim >= 3 and draw(st.booleans()):
        shape = (*shape[:-1], draw(st.sampled_from([1, 3, 4])))
    values = np.random.default_rng(draw(st.integers(0, 999))).integers(0, 256, size=shape)
    return values.astype(dtype)


def assert_unit_rows(features: np.ndarray, count: int, dim: int) -> None:
    assert features.dtype == np.float32 and features.shape == (count, dim)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-4)


@FUZZ
@given(items=st.lists(arrays(), min_size=1, max_size=3), bgr=st.booleans())
def test_the_embedder_embeds_valid_arrays_and_names_the_bad_one(embedder, items, bgr):
    valid = [a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and min(a.shape[:2]) >= 8 for a in items]
    try:
        features = embedder.embed(items, bgr=bgr)
    except (ReidError, ValueError, TypeError) as error:
        first_bad = valid.index(False)
        assert f"image {first_bad}:" in str(error), (error, [a.shape for a in items])
        return
    assert all(valid)
    assert_unit_rows(features, len(items), embedder.dim)


@FUZZ
@given(spec=picture())
def test_the_embedder_reads_pil_images_like_files(embedder, folder, spec):
    data, expected = encoded(spec)
    with Image.open(io.BytesIO(data)) as image:
        try:
            features = embedder.embed(image)
        except (ReidError, ValueError) as error:
            assert isinstance(expected, str) and "image 0:" in str(error), (spec, error)
            return
    assert not isinstance(expected, str), (spec, expected)
    assert_unit_rows(features, 1, embedder.dim)
    path = folder / f"pil.{spec['format'].lower()}"
    path.write_bytes(data)
    np.testing.assert_allclose(features, embedder.embed(str(path)), atol=1e-5)


COORDINATE = st.one_of(st.floats(-50, 250, allow_nan=False), st.sampled_from([np.nan, np.inf, -np.inf, 1e12]))


@FUZZ
@given(boxes=st.one_of(st.lists(st.lists(COORDINATE, min_size=4, max_size=4), max_size=5),
                       st.lists(st.lists(COORDINATE, min_size=0, max_size=6), min_size=1, max_size=3)),
       on_small=st.sampled_from(["error", "nan"]))
def test_box_arrays_give_one_row_per_box_or_a_clear_error(embedder, boxes, on_small):
    frame = np.random.default_rng(0).integers(0, 256, size=(120, 200, 3), dtype=np.uint8)
    try:
        features = embedder.embed_boxes(frame, boxes, on_small=on_small)
    except (ReidError, ValueError) as error:
        assert any(word in str(error) for word in ("boxes", "box ")), error
        return
    assert features.shape == (len(boxes), embedder.dim) and features.dtype == np.float32
    kept = ~np.isnan(features).any(axis=1)
    assert on_small == "nan" or kept.all()
    assert_unit_rows(features[kept], int(kept.sum()), embedder.dim)
