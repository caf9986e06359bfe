"""Ranking grids: each chosen query followed by its top-k gallery images, borders coloured by match.

``ranking_rows`` decides who ranks where (pure numpy, the Market-1501 protocol's exclusion of same-identity
same-camera gallery items); ``ranking_grid_array`` draws the rows as an RGB array (for TensorBoard's
``add_image(..., dataformats="HWC")``); ``draw_ranking_grid`` writes the same picture as a PNG plus sidecar
JSON and CSV files listing every row's files, distances and match flags (the JSON also names the real folder
holding those files, ``dataset_roots``: the only place ``serve --eval-run`` serves images from).

The grid is composed with Pillow at exact pixel positions (``GridLayout``), so borders sit where the layout
says and tests can read them back; text uses the DejaVu Sans font shipped with matplotlib.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from trytry_reid.atomic import atomic_file
from trytry_reid.data.image_modes import as_rgb
from trytry_reid.data.images import common_folder

QUERY_COLOR = (30, 100, 220)
MATCH_COLOR = (0, 160, 0)
WRONG_COLOR = (215, 0, 0)
BACKGROUND = (255, 255, 255)
LETTERBOX = (235, 235, 235)
TEXT_COLOR = (30, 30, 30)
SEPARATOR_COLOR = (170, 170, 170)

MARGIN = 10  # around the whole grid
GAP = 6  # between neighbouring cells in a row, and between rows
QUERY_GAP = 18  # extra space between the query column and rank 1, with a separator line in it


@dataclass(frozen=True, eq=False)
class RankingRow:
    """One query's top-k gallery list; the arrays have equal length <= top_k (shorter when fewer valid items)."""

    query_index: int
    query_pid: int
    query_camid: int
    gallery_indices: np.ndarray  # [k] int64, best first
    distances: np.ndarray  # [k] float64
    is_match: np.ndarray  # [k] bool: gallery pid == query pid
    gallery_pids: np.ndarray  # [k] int64
    gallery_camids: np.ndarray  # [k] int64


def _as_1d_int(values: Sequence[int] | np.ndarray, name: str, length: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != length:
        raise ValueError(f"{name} must be a 1-D sequence of length {length}, got shape {array.shape}")
    return array.astype(np.int64)


def _check_query_indices(query_indices: Sequence[int], num_queries: int) -> np.ndarray:
    chosen = np.asarray(list(query_indices), dtype=np.int64)
    if chosen.size == 0:
        raise ValueError("query_indices is empty: choose at least one query to draw")
    bad = chosen[(chosen < 0) | (chosen >= num_queries)]
    if bad.size:
        raise ValueError(f"query_indices {bad[:5].tolist()} out of range for {num_queries} queries")
    return chosen


def ranking_rows(
    distmat: np.ndarray,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    q_camids: Sequence[int],
    g_camids: Sequence[int],
    query_indices: Sequence[int],
    top_k: int = 10,
    remove_same_camera: bool = True,
) -> list[RankingRow]:
    """Top-k gallery items for each chosen query of ``distmat`` [Q, G] (smaller = more similar).

    With ``remove_same_camera`` the gallery items of the query's identity seen by the query's camera are
    skipped, as the Market-1501 protocol does. Equal distances keep gallery index order (stable sort).
    """
    dist = np.asarray(distmat, dtype=np.float64)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-D [num_query, num_gallery], got shape {dist.shape}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    num_q, num_g = dist.shape
    q_pids_a, q_cams_a = _as_1d_int(q_pids, "q_pids", num_q), _as_1d_int(q_camids, "q_camids", num_q)
    g_pids_a, g_cams_a = _as_1d_int(g_pids, "g_pids", num_g), _as_1d_int(g_camids, "g_camids", num_g)
    chosen = _check_query_indices(query_indices, num_q)
    sub = dist[chosen]  # [n, G]
    if np.isnan(sub).any():
        raise ValueError("distmat holds NaN distances for the chosen queries; cannot rank them")
    excluded = np.zeros(sub.shape, dtype=bool)
    if remove_same_camera:
        excluded = (g_pids_a[None, :] == q_pids_a[chosen, None]) & (g_cams_a[None, :] == q_cams_a[chosen, None])
    order = np.lexsort((sub, excluded), axis=-1)[:, :top_k]  # kept items first, then by distance, then index
    kept = np.minimum((~excluded).sum(axis=1), top_k)
    return [
        _make_row(int(q), q_pids_a[q], q_cams_a[q], order[i, : kept[i]], sub[i], g_pids_a, g_cams_a)
        for i, q in enumerate(chosen)
    ]


def _make_row(q, q_pid, q_cam, gallery, dist_row, g_pids, g_cams) -> RankingRow:
    return RankingRow(
        query_index=q,
        query_pid=int(q_pid),
        query_camid=int(q_cam),
        gallery_indices=gallery.astype(np.int64),
        distances=dist_row[gallery],
        is_match=g_pids[gallery] == q_pid,
        gallery_pids=g_pids[gallery],
        gallery_camids=g_cams[gallery],
    )


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of a ranking grid. Column 0 is the query; a box is an image plus its border."""

    n_rows: int
    n_cols: int  # gallery columns (top-k)
    cell_h: int
    cell_w: int
    has_title: bool

    @property
    def border(self) -> int:
        return max(3, round(min(self.cell_h, self.cell_w) / 16))

    @property
    def font_size(self) -> int:
        return int(np.clip(round(self.cell_w * 0.19), 11, 16))

    @property
    def title_h(self) -> int:
        return self.font_size + 14 if self.has_title else 0

    @property
    def header_h(self) -> int:
        return self.font_size + 8

    @property
    def label_h(self) -> int:
        """Two text lines under each box: distance (or "query") and identity."""
        return 2 * (self.font_size + 3) + 4

    @property
    def box_w(self) -> int:
        return self.cell_w + 2 * self.border

    @property
    def box_h(self) -> int:
        return self.cell_h + 2 * self.border

    @property
    def width(self) -> int:
        return 2 * MARGIN + (self.n_cols + 1) * self.box_w + self.n_cols * GAP + QUERY_GAP

    @property
    def height(self) -> int:
        rows = self.n_rows * (self.box_h + self.label_h) + (self.n_rows - 1) * GAP
        return 2 * MARGIN + self.title_h + self.header_h + rows

    def box_origin(self, row: int, col: int) -> tuple[int, int]:
        """(x, y) of the top-left pixel of the bordered box at ``row``, ``col`` (col 0 = query)."""
        x = MARGIN + col * (self.box_w + GAP) + (QUERY_GAP if col > 0 else 0)
        y = MARGIN + self.title_h + self.header_h + row * (self.box_h + self.label_h + GAP)
        return x, y


@lru_cache(maxsize=16)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    return ImageFont.truetype(font_manager.findfont(props), size)


def _fit_image(path: str, cell_h: int, cell_w: int) -> Image.Image:
    """The image at ``path`` scaled to fit the cell (aspect kept, letterboxed); small images use nearest."""
    try:
        with Image.open(path) as raw:
            image = as_rgb(raw)     # the picture the model embeds (orientation, 16-bit, transparency)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read image for the ranking grid: {path} ({error})") from error
    scale = min(cell_w / image.width, cell_h / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS
    image = image.resize(size, resample) if size != image.size else image
    cell = Image.new("RGB", (cell_w, cell_h), LETTERBOX)
    cell.paste(image, ((cell_w - size[0]) // 2, (cell_h - size[1]) // 2))
    return cell


def _format_distance(value: float) -> str:
    if not np.isfinite(value):
        return str(value)
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.3g}"


def _centered_text(draw, center_x: int, top: int, text: str, font, fill, max_width: int) -> None:
    """Draw ``text`` centred at ``center_x``; shorten it with an ellipsis when wider than ``max_width``."""
    while len(text) > 1 and draw.textlength(text, font=font) > max_width:
        text = text[:-2] + "…"
    width = draw.textlength(text, font=font)
    draw.text((center_x - width / 2, top), text, font=font, fill=fill)


def _draw_box(canvas, draw, layout: GridLayout, row: int, col: int, path: str, color) -> None:
    x, y = layout.box_origin(row, col)
    draw.rectangle([x, y, x + layout.box_w - 1, y + layout.box_h - 1], fill=color)
    canvas.paste(_fit_image(path, layout.cell_h, layout.cell_w), (x + layout.border, y + layout.border))


def _draw_labels(draw, layout: GridLayout, row: int, col: int, lines: tuple[str, str], color) -> None:
    x, y = layout.box_origin(row, col)
    center, top = x + layout.box_w // 2, y + layout.box_h + 3
    font, step = _font(layout.font_size), layout.font_size + 3
    _centered_text(draw, center, top, lines[0], _font(layout.font_size, bold=True), color, layout.box_w + GAP)
    _centered_text(draw, center, top + step, lines[1], font, TEXT_COLOR, layout.box_w + GAP)


def _draw_header(draw, layout: GridLayout, title: str | None) -> None:
    if title:
        room = layout.width - 2 * MARGIN
        size = layout.font_size + 3  # shrink a long title down to 10 px before shortening it
        while size > 10 and draw.textlength(title, font=_font(size, True)) > room:
            size -= 1
        _centered_text(draw, layout.width // 2, MARGIN, title, _font(size, True), TEXT_COLOR, room)
    top = MARGIN + layout.title_h
    for col in range(layout.n_cols + 1):
        x, _ = layout.box_origin(0, col)
        text = "query" if col == 0 else f"rank {col}"
        _centered_text(draw, x + layout.box_w // 2, top, text, _font(layout.font_size, True), TEXT_COLOR,
                       layout.box_w + GAP)
    sep_x = layout.box_origin(0, 1)[0] - QUERY_GAP // 2 - GAP // 2
    draw.line([sep_x, top, sep_x, layout.height - MARGIN], fill=SEPARATOR_COLOR, width=1)


def ranking_grid_array(
    rows: Sequence[RankingRow],
    query_paths: Sequence[str],
    gallery_paths: Sequence[str],
    *,
    cell_size: tuple[int, int] = (128, 64),
    title: str | None = None,
) -> np.ndarray:
    """The ranking grid as an RGB array [H, W, 3] uint8 (see ``GridLayout`` for the geometry).

    Query boxes have a blue border; gallery boxes green for a true match, red for a wrong one, with the
    distance and the gallery identity under each image.
    """
    if not rows:
        raise ValueError("no ranking rows to draw")
    cell_h, cell_w = (int(v) for v in cell_size)
    if cell_h < 8 or cell_w < 8:
        raise ValueError(f"cell_size must be at least (8, 8) pixels (h, w), got {cell_size}")
    n_cols = max(1, max(len(row.gallery_indices) for row in rows))
    layout = GridLayout(len(rows), n_cols, cell_h, cell_w, bool(title))
    canvas = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _draw_header(draw, layout, title)
    for r, row in enumerate(rows):
        _draw_box(canvas, draw, layout, r, 0, str(query_paths[row.query_index]), QUERY_COLOR)
        _draw_labels(draw, layout, r, 0, ("query", f"id {row.query_pid}"), QUERY_COLOR)
        for c, (g, dist, match, pid) in enumerate(
            zip(row.gallery_indices, row.distances, row.is_match, row.gallery_pids), start=1
        ):
            color = MATCH_COLOR if match else WRONG_COLOR
            _draw_box(canvas, draw, layout, r, c, str(gallery_paths[g]), color)
            _draw_labels(draw, layout, r, c, (_format_distance(float(dist)), f"id {pid}"), color)
    return np.asarray(canvas, dtype=np.uint8).copy()


def _sidecar_rows(rows, query_paths, gallery_paths) -> list[dict]:
    return [
        {
            "query_index": row.query_index,
            "query_path": str(query_paths[row.query_index]),
            "query_pid": row.query_pid,
            "query_camid": row.query_camid,
            "ranked": [
                {"rank": rank, "gallery_index": int(g), "gallery_path": str(gallery_paths[g]),
                 "pid": int(pid), "camid": int(cam), "distance": float(d), "is_match": bool(m)}
                for rank, (g, pid, cam, d, m) in enumerate(zip(row.gallery_indices, row.gallery_pids,
                                                               row.gallery_camids, row.distances,
                                                               row.is_match), start=1)
            ],
        }
        for row in rows
    ]


def _dataset_roots(entries: list[dict]) -> list[str]:
    """The real (symlinks resolved) folder holding every image of the rows: what `serve --eval-run` may serve."""
    paths = [Path(p).resolve() for e in entries for p in [e["query_path"]] + [i["gallery_path"] for i in e["ranked"]]]
    return [str(common_folder(paths))] if paths else []


def _write_sidecars(entries: list[dict], out_path: Path, title: str | None) -> None:
    payload = {"figure": out_path.name, "title": title, "dataset_roots": _dataset_roots(entries), "rows": entries}
    with atomic_file(out_path.with_suffix(".json"), "w") as handle:
        handle.write(json.dumps(payload, indent=2) + "\n")
    with atomic_file(out_path.with_suffix(".csv"), "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query_index", "query_path", "query_pid", "rank", "gallery_index", "gallery_path",
                         "gallery_pid", "distance", "is_match"])
        for e in entries:
            for item in e["ranked"]:
                writer.writerow([e["query_index"], e["query_path"], e["query_pid"], item["rank"],
                                 item["gallery_index"], item["gallery_path"], item["pid"],
                                 repr(item["distance"]), int(item["is_match"])])


def draw_ranking_grid(
    rows: Sequence[RankingRow],
    query_paths: Sequence[str],
    gallery_paths: Sequence[str],
    out_path: str | Path,
    *,
    cell_size: tuple[int, int] = (128, 64),
    title: str | None = None,
) -> Path:
    """Write the ranking grid PNG to ``out_path`` and ``.json``/``.csv`` sidecars beside it; return the PNG path."""
    out = Path(out_path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"ranking grid out_path must end in .png, got {out}")
    array = ranking_grid_array(rows, query_paths, gallery_paths, cell_size=cell_size, title=title)
    with atomic_file(out) as handle:
        Image.fromarray(array).save(handle, format="PNG")
    _write_sidecars(_sidecar_rows(rows, query_paths, gallery_paths), out, title)
    return out
