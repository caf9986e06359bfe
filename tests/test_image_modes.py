"""Every image mode is read as the picture it shows (data/image_modes.py), on every path that reads images:
files (training, extraction, verify, search), uploads to the HTTP API, and PIL images given to the Embedder.
Expected pixels are computed here from the definitions (16-bit: round(v * 255 / 65535); alpha: blended over
the ImageNet mean colour), never by the code under test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trytry_reid.data.images import ImageReadError, read_image

BACKGROUND = np.array([124, 116, 104], dtype=np.float64)   # round(255 * ImageNet mean), documented


def gradient16(height: int = 40, width: int = 24) -> np.ndarray:
    """A 16-bit grey gradient over the whole range: 0 top-left ... 65535 bottom-right."""
    ramp = np.linspace(0, 65535, height * width).round().astype(np.uint16)
    return ramp.reshape(height, width)


def expected8(values16: np.ndarray) -> np.ndarray:
    return np.floor(values16.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)


def saved(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def test_a_16_bit_png_is_scaled_by_its_bit_depth_not_read_as_white(tmp_path):
    values = gradient16()
    path = saved(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode == "I;16"
    pixels = np.asarray(read_image(str(path)))
    assert pixels.shape == (40, 24, 3)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected8(values))


def test_a_16_bit_pgm_decodes_to_mode_i_and_is_scaled_the_same(tmp_path):
    values = gradient16()
    path = saved(Image.fromarray(values), tmp_path / "deep.ppm")
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(np.asarray(read_image(str(path)))[..., 1], expected8(values))


def test_float_images_in_0_1_are_scaled_and_other_ranges_refused(tmp_path):
    values = np.linspace(0, 1, 32 * 16, dtype=np.float32).reshape(32, 16)
    path = saved(Image.fromarray(values), tmp_path / "unit.tiff")
    expected = np.floor(values.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(read_image(str(path)))[..., 0], expected)
    loud = saved(Image.fromarray(values * 300), tmp_path / "loud.tiff")
    with pytest.raises(ImageReadError, match=r"loud.tiff.*values in \[0, 300\]: expected \[0, 1\]"):
        read_image(str(loud))


def test_a_16_bit_image_using_only_its_lowest_levels_is_refused_not_blank(tmp_path):
    values = (np.arange(32 * 16) % 100).astype(np.uint16).reshape(32, 16)    # 0..99 of 65535: all 0 at 8 bits
    path = saved(Image.fromarray(values), tmp_path / "dark.png")
    with pytest.raises(ImageReadError, match="dark.png.*would be a blank"):
        read_image(str(path))


def test_cmyk_jpeg_is_converted_to_its_rgb_colour(tmp_path):
    path = saved(Image.new("RGB", (16, 32), (200, 30, 40)).convert("CMYK"), tmp_path / "print.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    assert np.abs(np.asarray(read_image(str(path))).astype(int) - [200, 30, 40]).max() <= 4


def test_transparency_is_blended_over_the_documented_background(tmp_path):
    rgba = np.zeros((32, 16, 4), dtype=np.uint8)
    rgba[..., :3] = (255, 255, 255)          # white hidden behind alpha: a plain convert would show it
    rgba[:16, :, 3] = 0                      # top half fully transparent
    rgba[16:, :, 3] = 128                    # bottom half half-transparent
    path = saved(Image.fromarray(rgba, "RGBA"), tmp_path / "cutout.png")
    pixels = np.asarray(read_image(str(path))).astype(np.float64)
    np.testing.assert_allclose(pixels[:16], np.broadcast_to(BACKGROUND, (16, 16, 3)), atol=1)
    blended = BACKGROUND + (255 - BACKGROUND) * 128 / 255
    np.testing.assert_allclose(pixels[16:], np.broadcast_to(blended, (16, 16, 3)), atol=1)


def test_a_palette_image_with_a_transparent_colour_and_a_fully_transparent_one(tmp_path):
    palette = Image.new("P", (16, 32), 1)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(0, (0, 0, 16, 16))                  # top half: colour 0 (red), made transparent below
    path = saved(palette, tmp_path / "pal.png", transparency=0)
    pixels = np.asarray(read_image(str(path))).astype(np.float64)
    np.testing.assert_allclose(pixels[:16], np.broadcast_to(BACKGROUND, (16, 16, 3)), atol=1)
    assert pixels[16:].reshape(-1, 3).tolist()[0] == [0, 255, 0]
    clear = np.zeros((32, 16, 2), dtype=np.uint8)
    empty = saved(Image.fromarray(clear, "LA"), tmp_path / "clear.png")
    with pytest.raises(ImageReadError, match="clear.png.*fully transparent"):
        read_image(str(empty))


def sideways_jpeg(path: Path) -> tuple[Path, np.ndarray]:
    """A 24 x 48 (w x h) picture, red on the left and blue on the right, stored rotated with the EXIF tag
    (orientation 6: turn 90 degrees clockwise to show) that a phone writes; returns the file and the picture."""
    shown = np.zeros((48, 24, 3), dtype=np.uint8)
    shown[:, :12] = (220, 20, 20)
    shown[:, 12:] = (20, 20, 220)
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)     # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif.tobytes())
    return path, shown


def test_exif_rotated_jpegs_are_read_upright(tmp_path):
    path, shown = sideways_jpeg(tmp_path / "phone.jpg")
    pixels = np.asarray(read_image(str(path))).astype(int)
    assert pixels.shape == shown.shape
    assert np.abs(pixels[:, 2:10] - shown[:, 2:10]).max() <= 12 and np.abs(pixels[:, 14:] - shown[:, 14:]).max() <= 12


@pytest.mark.parametrize("kind", ["deep", "phone"])
def test_uploads_read_the_same_pixels_as_files(tmp_path, kind):
    from trytry_reid.serving.uploads import decode_upload

    if kind == "deep":
        values = gradient16(96, 48)
        path = saved(Image.fromarray(values), tmp_path / "deep.png")
        truth = np.repeat(expected8(values)[..., None], 3, axis=2)
    else:
        path, truth = sideways_jpeg(tmp_path / "phone.jpg")
    for fit in (None, (truth.shape[1] // 2, truth.shape[0] // 2)):     # whole, and reduced by 2 in both sides
        pixels = np.asarray(decode_upload(path.read_bytes(), 1 << 20, fit)).astype(int)
        factor = truth.shape[0] // pixels.shape[0]
        assert factor == (1 if fit is None else 2)
        assert pixels.shape == (truth.shape[0] // factor, truth.shape[1] // factor, 3)
        shrunk = truth.reshape(pixels.shape[0], factor, pixels.shape[1], factor, 3).mean(axis=(1, 3))
        width = pixels.shape[1]
        away_from_the_edge = [1, width // 4, width // 2 - 2, width // 2 + 1, 3 * width // 4, width - 2]
        columns = slice(None) if kind == "deep" else away_from_the_edge     # JPEG blurs the colour edge
        assert np.abs(pixels - shrunk)[:, columns].max() <= (1 if kind == "deep" else 12)


def test_the_embedder_reads_pil_images_by_the_same_rules(tmp_path):
    from trytry_reid.serving.embedder import Embedder

    from test_export import write_tiny_checkpoint

    embedder = Embedder.from_checkpoint(write_tiny_checkpoint(tmp_path / "tiny.pt"))
    values = gradient16(64, 32)
    deep = Image.fromarray(values)
    eight = Image.fromarray(expected8(values)).convert("RGB")
    features = embedder.embed([deep, eight, str(saved(deep, tmp_path / "deep.png"))])
    assert np.abs(features[0] - features[1]).max() < 1e-6 and np.abs(features[2] - features[1]).max() < 1e-6
    path, shown = sideways_jpeg(tmp_path / "phone.jpg")
    with Image.open(path) as opened:
        from_pil = embedder.embed(opened)
    assert np.abs(from_pil - embedder.embed(str(path))).max() < 1e-6


def test_images_below_the_minimum_crop_size_are_refused_by_the_reader(tmp_path):
    from data_fixtures import write_image

    for size in ((1, 1), (7, 64), (64, 7)):
        path = write_image(tmp_path / f"small_{size[0]}x{size[1]}.png", (90, 10, 200), size=size)
        with pytest.raises(ImageReadError, match=rf"small_.*{size[0]}x{size[1]} pixels is below the minimum "
                                                 r"crop size of 8x8"):
            read_image(str(path))
    assert read_image(str(write_image(tmp_path / "ok.png", (1, 2, 3), size=(8, 8)))).size == (8, 8)


@pytest.mark.parametrize("tag", range(1, 9))
def test_every_exif_orientation_turns_like_pillows_exif_transpose(tmp_path, tag):
    from PIL import ImageOps

    rng = np.random.default_rng(tag)
    stored = Image.fromarray(rng.integers(0, 256, size=(24, 16, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = tag
    path = saved(stored, tmp_path / "turned.png", exif=exif.tobytes())
    with Image.open(path) as opened:
        reference = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(read_image(str(path))), reference)


def test_figures_show_the_picture_the_model_embeds(tmp_path):
    """Ranking grids read a lazily opened JPEG upright, like the model does (a phone photo stays portrait)."""
    from trytry_reid.visualization.ranking import GridLayout, RankingRow, ranking_grid_array

    path, _ = sideways_jpeg(tmp_path / "phone.jpg")
    row = RankingRow(0, 1, 0, np.array([0]), np.array([0.5]), np.array([True]), np.array([1]), np.array([1]))
    grid = ranking_grid_array([row], [str(path)], [str(path)], cell_size=(64, 32))
    layout = GridLayout(1, 1, 64, 32, False)
    x, y = layout.box_origin(0, 0)
    cell = grid[y + layout.border: y + layout.border + 64, x + layout.border: x + layout.border + 32].astype(int)
    assert np.abs(cell[32, 4] - [220, 20, 20]).max() <= 20 and np.abs(cell[32, 28] - [20, 20, 220]).max() <= 20
