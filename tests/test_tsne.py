"""t-SNE: clustered inputs stay clustered in 2-D, identity sampling, and the scatter's pixels and legend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image
from sklearn.datasets import load_digits

from trytry_reid.visualization.tsne import DPI, FIGSIZE, draw_tsne, sample_identities, tsne_embed

PNG_SHAPE = (round(FIGSIZE[1] * DPI), round(FIGSIZE[0] * DPI), 3)  # (height, width, RGB)


def nearest_neighbour_agreement(points: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of points whose nearest other point (brute force) has the same label."""
    dist = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    return float((labels[dist.argmin(1)] == labels).mean())


def blobs(num_ids=5, per_id=16, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_ids), per_id)
    centers = rng.normal(scale=4.0, size=(num_ids, dim))
    return centers[labels] + rng.normal(size=(len(labels), dim)), labels


def test_tsne_keeps_gaussian_blobs_apart_and_is_seeded():
    features, labels = blobs()
    points = tsne_embed(features, seed=0)
    assert points.shape == (80, 2) and np.isfinite(points).all()
    assert nearest_neighbour_agreement(points, labels) >= 0.95
    small, _ = blobs(num_ids=2, per_id=6)
    assert np.array_equal(tsne_embed(small, seed=3), tsne_embed(small, seed=3))


def test_tsne_on_real_digits_separates_the_classes():
    digits = load_digits()  # the real 8x8 digits bundled with scikit-learn
    features, labels = digits.data[:250], digits.target[:250]
    assert nearest_neighbour_agreement(tsne_embed(features, seed=0), labels) >= 0.9


def test_tsne_small_sets_clip_perplexity_and_bad_input_is_refused():
    features, _ = blobs(num_ids=2, per_id=4)
    assert tsne_embed(features, perplexity=30.0).shape == (8, 2)  # perplexity 30 >= N would fail unclipped
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        tsne_embed(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        tsne_embed(np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="at least 4"):
        tsne_embed(np.zeros((3, 3)))


def test_sample_identities_keeps_whole_identities():
    labels = np.repeat(np.arange(50), 3)
    mask = sample_identities(labels, max_ids=20, seed=1)
    kept = np.unique(labels[mask])
    assert len(kept) == 20
    assert mask.sum() == 60  # every point of each kept identity
    assert np.array_equal(mask, sample_identities(labels, max_ids=20, seed=1))
    assert not np.array_equal(mask, sample_identities(labels, max_ids=20, seed=2))
    assert sample_identities(labels[:30], max_ids=20).all()  # 10 identities: nothing dropped


def exact_color_pixels(image: np.ndarray, rgba) -> int:
    rgb = np.round(np.asarray(rgba[:3]) * 255).astype(np.uint8)
    return int((image == rgb).all(-1).sum())


def test_draw_tsne_size_palette_and_legend(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([3, 5, 9], 30)
    points = rng.normal(size=(90, 2)) + np.repeat([[0, 0], [8, 0], [0, 8]], 30, axis=0)
    out = draw_tsne(points, labels, tmp_path / "sub" / "tsne.png", title="three ids")
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == PNG_SHAPE
    tab10 = colormaps["tab10"]
    # legend markers are drawn opaque in tab10 colours 0..2; colour 3 belongs to no identity
    assert all(exact_color_pixels(image, tab10(i)) > 20 for i in range(3))
    assert exact_color_pixels(image, tab10(3)) == 0


def test_draw_tsne_with_thumbnails_and_many_identities(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(40):
        path = tmp_path / f"thumb_{i}.png"
        Image.new("RGB", (8, 8), (255, 0, 255)).save(path)
        paths.append(str(path))
    points = rng.normal(size=(40, 2)) * 10
    out = draw_tsne(points, np.arange(40), tmp_path / "many.png", thumbnails=paths)
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == PNG_SHAPE
    assert exact_color_pixels(image, (1.0, 0.0, 1.0)) > 100  # thumbnails really drawn
    with pytest.raises(ValueError, match="one path per point"):
        draw_tsne(points, np.arange(40), tmp_path / "bad.png", thumbnails=paths[:3])
    with pytest.raises(ValueError, match=r"labels must have shape \(40,\)"):
        draw_tsne(points, np.arange(39), tmp_path / "bad.png")


def test_the_command_line_imports_scikit_learn_only_to_draw_a_map():
    """scikit-learn takes about a second to import: `verify`, `search` and `serve` start without it."""
    code = ("import sys, trytry_reid.visualization, trytry_reid.jobs.cli; "
            "assert 'sklearn' not in sys.modules, 'imported at start'; "
            "from trytry_reid.visualization import tsne_embed; import numpy as np; "
            "tsne_embed(np.random.default_rng(0).normal(size=(8, 4))); assert 'sklearn' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert done.returncode == 0, done.stderr
