"""t-SNE maps of embeddings: a seeded 2-D embedding and a scatter coloured by identity.

Figures are drawn on a ``matplotlib.figure.Figure`` with the Agg canvas directly, so pyplot's global backend
and state are never touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from PIL import Image
from threadpoolctl import threadpool_limits

from trytry_reid.atomic import write_figure
from trytry_reid.data.image_modes import as_rgb

FIGSIZE = (8.0, 7.0)  # inches
DPI = 120  # the PNG is FIGSIZE * DPI pixels: 960 x 840
THUMB_PX = 34  # a thumbnail's longer side in pixels


def tsne_embed(
    features: np.ndarray, seed: int = 0, perplexity: float = 30.0, num_threads: int | None = 1
) -> np.ndarray:
    """2-D t-SNE of ``features`` [N, D] -> [N, 2] (float64), seeded.

    The perplexity is clipped to (N - 1) / 3 (at least 1) so small sets work; scikit-learn needs it < N.
    ``num_threads`` caps scikit-learn's OpenMP threads (None: its default). One thread is the default
    because in a process that has imported torch, two OpenMP runtimes busy-wait against each other on a
    loaded CPU: 80 points took 14-31 s with 2 threads and about 1 s with one on the 2-core dev machine.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D], got shape {x.shape}")
    if x.shape[0] < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("features hold NaN or infinite values; t-SNE cannot embed them")
    from sklearn.manifold import TSNE  # imported here: scikit-learn takes about a second to import

    perplexity = float(min(perplexity, max(1.0, (x.shape[0] - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    with threadpool_limits(limits=num_threads, user_api="openmp"):
        return tsne.fit_transform(x)


def sample_identities(labels: Sequence[int] | np.ndarray, max_ids: int = 20, seed: int = 0) -> np.ndarray:
    """Boolean mask [N] keeping every point of at most ``max_ids`` identities (a seeded choice when more)."""
    labels_a = np.asarray(labels)
    if max_ids < 1:
        raise ValueError(f"max_ids must be >= 1, got {max_ids}")
    ids = np.unique(labels_a)
    if len(ids) <= max_ids:
        return np.ones(len(labels_a), dtype=bool)
    kept = np.random.default_rng(seed).choice(ids, size=max_ids, replace=False)
    return np.isin(labels_a, kept)


def _palette(num_ids: int) -> list:
    """tab10 for up to 10 identities, tab20 (paired shades) up to 20, then tab20 cycled."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if num_ids <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(num_ids)]


def _marker_size(num_points: int) -> float:
    return float(np.clip(6000 / max(num_points, 1), 8, 40))


def _spread_subset(points: np.ndarray, min_gap: float, max_count: int) -> list[int]:
    """Indices of points at least ``min_gap`` apart (in units of the plot's extent), greedily, at most max_count."""
    span = np.ptp(points, axis=0)
    scaled = (points - points.min(axis=0)) / np.where(span > 0, span, 1.0)
    chosen: list[int] = []
    for i, point in enumerate(scaled):
        if len(chosen) >= max_count:
            break
        if not chosen or np.min(np.abs(scaled[chosen] - point).max(axis=1)) >= min_gap:
            chosen.append(i)
    return chosen


def _add_thumbnails(ax, points: np.ndarray, paths: Sequence[str], colors: list, max_count: int) -> None:
    """Small image thumbnails (longer side THUMB_PX) at well-separated points, framed in the identity colour."""
    for i in _spread_subset(points, min_gap=0.05, max_count=max_count):
        with Image.open(paths[i]) as raw:
            image = as_rgb(raw)     # the picture the model embeds (orientation, 16-bit, transparency)
        zoom = THUMB_PX / max(image.size) * 72 / DPI  # OffsetImage scales by dpi / 72
        box = AnnotationBbox(OffsetImage(np.asarray(image), zoom=zoom), points[i], frameon=True, pad=0.05,
                             bboxprops={"edgecolor": colors[i], "linewidth": 1.5})
        ax.add_artist(box)


def _scatter(ax, points: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> list:
    """One scatter call per identity (so the legend has an entry each); returns the per-point colours."""
    palette = _palette(len(ids))
    size = _marker_size(len(points))
    for color, ident in zip(palette, ids):
        chosen = labels == ident
        ax.scatter(points[chosen, 0], points[chosen, 1], s=size, color=color, label=str(ident),
                   alpha=0.85, linewidths=0)
    lookup = {ident: color for ident, color in zip(ids.tolist(), palette)}
    return [lookup[label] for label in labels.tolist()]


def draw_tsne(
    points: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    out_path: str | Path,
    *,
    title: str | None = None,
    thumbnails: list[str] | None = None,
    max_legend: int = 20,
    legend_title: str = "identity",
    max_thumbnails: int = 150,
) -> Path:
    """Write a scatter of ``points`` [N, 2] coloured by ``labels`` [N] to ``out_path`` (FIGSIZE x DPI pixels).

    A legend lists the identities when there are at most ``max_legend``; ``thumbnails`` (one image path per
    point) adds small images at up to ``max_thumbnails`` of the points.
    """
    pts, labels_a = np.asarray(points, dtype=np.float64), np.asarray(labels)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape [N, 2], got {pts.shape}")
    if labels_a.shape != (len(pts),):
        raise ValueError(f"labels must have shape ({len(pts)},) (one per point), got {labels_a.shape}")
    if thumbnails is not None and len(thumbnails) != len(pts):
        raise ValueError(f"thumbnails must hold one path per point ({len(pts)}), got {len(thumbnails)}")
    ids = np.unique(labels_a)
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = _scatter(ax, pts, labels_a, ids)
    if thumbnails is not None:
        _add_thumbnails(ax, pts, thumbnails, colors, max_thumbnails)
    _decorate(ax, len(pts), len(ids), title, max_legend, legend_title)
    return write_figure(fig, out_path, DPI)


def _decorate(ax, num_points: int, num_ids: int, title, max_legend: int, legend_title: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#888888")
    ax.set_title(title or "t-SNE of the embeddings", fontsize=14)
    if num_ids <= max_legend:
        columns = 1 if num_ids <= 12 else 2
        scale = max(1.0, 60 / _marker_size(num_points)) ** 0.5  # legend dots as large as s=60
        legend = ax.legend(title=legend_title, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=11,
                           title_fontsize=12, ncols=columns, markerscale=scale, frameon=False,
                           handletextpad=0.3)
        for handle in legend.legend_handles:
            handle.set_alpha(1.0)
    ax.text(0.99, 0.01, f"{num_points} points, {num_ids} classes", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=10, color="#555555")
