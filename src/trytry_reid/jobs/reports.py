"""What a run leaves for people: metrics.json, a printed table, ranking grids and t-SNE maps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from trytry_reid.atomic import atomic_file
from trytry_reid.evaluation.retrieval import RetrievalResult
from trytry_reid.visualization.query_choice import choose_queries
from trytry_reid.visualization.ranking import draw_ranking_grid, ranking_grid_array, ranking_rows
from trytry_reid.visualization.tsne import draw_tsne, sample_identities, tsne_embed

TABLE_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP", "auc", "tpr@fpr=1e-3")
DIGIT_SETS = {"digits", "mnist"}  # their identities are digits: the t-SNE legend says so


def file_slug(label: str) -> str:
    """A test-set label as part of a file name (``figures/ranking_<slug>.png``)."""
    return label.replace("/", "_")


def write_json(path: Path, data: dict) -> Path:
    """Write JSON atomically (temp file + rename), so a crash never leaves half a metrics file."""
    with atomic_file(path, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    return path


def write_metrics(path: Path, summaries: dict[str, dict[str, float]], epoch: int | None = None) -> Path:
    """metrics.json: {test set label: {rank1, rank5, rank10, mAP, mINP, ...}} plus the epoch evaluated."""
    return write_json(path, {"epoch": epoch, "datasets": summaries})


def format_table(summaries: dict[str, dict[str, float]]) -> str:
    """A fixed-width table of percentages, one row per test set (cross-domain results side by side); a
    metric a set lacks (e.g. no verification figures) shows as '-'."""
    width = max([len("test set")] + [len(label) for label in summaries])
    widths = [max(6, len(key)) for key in TABLE_KEYS]
    lines = [f"{'test set':<{width}}  " + "  ".join(f"{key:>{w}}" for key, w in zip(TABLE_KEYS, widths))]
    for label, metrics in summaries.items():
        cells = "  ".join(f"{100 * metrics[key]:{w}.2f}" if key in metrics else f"{'-':>{w}}"
                          for key, w in zip(TABLE_KEYS, widths))
        lines.append(f"{label:<{width}}  {cells}")
    return "\n".join(lines)


def cell_size_for(result: RetrievalResult) -> tuple[int, int]:
    """Tall crops for people (128x64); squares for digits and other square images."""
    from PIL import Image

    with Image.open(result.query[0].path) as image:
        width, height = image.size
    return (128, 64) if height >= 1.5 * width else (96, 96)


def fixed_queries(result: RetrievalResult, num: int, seed: int = 0) -> list[int]:
    """A seeded set of queries kept fixed across epochs (so one can watch their rankings improve)."""
    return choose_queries("random", min(num, len(result.query)), num_queries=len(result.query), seed=seed)


def ranking_array(result: RetrievalResult, query_indices: Sequence[int], top_k: int = 10) -> np.ndarray:
    """The ranking grid as an RGB array [H, W, 3] uint8 (for TensorBoard)."""
    rows = rows_for(result, query_indices, top_k)
    return ranking_grid_array(rows, [r.path for r in result.query], [r.path for r in result.gallery],
                              cell_size=cell_size_for(result), title=f"{result.label}: top-{top_k}")


def rows_for(result: RetrievalResult, query_indices: Sequence[int], top_k: int):
    q, g = result.query, result.gallery
    return ranking_rows(result.distmat, [r.pid for r in q], [r.pid for r in g], [r.camid for r in q],
                        [r.camid for r in g], list(query_indices), top_k=top_k)


def draw_ranking(result: RetrievalResult, out_path: Path, *, strategy: str = "first", num: int = 8,
                 top_k: int = 10, seed: int = 0, names: Sequence[str] | None = None) -> Path:
    """Ranking grid PNG (+ .json/.csv sidecars) for queries chosen by `strategy`."""
    indices = choose_queries(strategy, min(num, len(result.query)), num_queries=len(result.query), seed=seed,
                             all_ap=result.ranking.get("all_ap"), query_paths=[r.path for r in result.query],
                             names=names)
    rows = rows_for(result, indices, top_k)
    title = f"{result.label}: {strategy} {len(indices)} queries, top-{top_k} (green = same identity)"
    png = draw_ranking_grid(rows, [r.path for r in result.query], [r.path for r in result.gallery], out_path,
                            cell_size=cell_size_for(result), title=title)
    add_query_ap(png.with_suffix(".json"), result.ranking.get("all_ap"))
    return png


def add_query_ap(sidecar: Path, all_ap: np.ndarray | None) -> None:
    """Write each row's true AP (over the whole gallery) into the sidecar JSON; `serve --eval-run` sorts by
    it. A query without a valid match gets null."""
    if all_ap is None:
        return
    payload = json.loads(sidecar.read_text())
    for row in payload["rows"]:
        ap = float(all_ap[row["query_index"]])
        row["ap"] = None if np.isnan(ap) else ap
    write_json(sidecar, payload)


def draw_tsne_map(result: RetrievalResult, out_path: Path, *, max_ids: int = 20, seed: int = 0,
                  thumbnails: bool = False) -> Path:
    """t-SNE of query + gallery features of a sample of the query identities (gallery-only ids, such as
    Market's distractors, excluded)."""
    records = list(result.query) + list(result.gallery)
    features = np.concatenate([result.query_features, result.gallery_features])
    labels = np.asarray([r.pid for r in records])
    candidates = np.flatnonzero(np.isin(labels, [r.pid for r in result.query]))
    chosen = candidates[sample_identities(labels[candidates], max_ids=max_ids, seed=seed)]
    points = tsne_embed(features[chosen], seed=seed)
    paths = [records[i].path for i in chosen] if thumbnails else None
    title = f"{result.label}: t-SNE of {len(chosen)} embeddings, {len(np.unique(labels[chosen]))} identities"
    legend = "digit" if result.label in DIGIT_SETS else "identity"
    return draw_tsne(points, labels[chosen], out_path, title=title, thumbnails=paths, legend_title=legend)


def write_figures(results: Sequence[RetrievalResult], folder: Path, *, num_queries: int, top_k: int,
                  tsne_max_ids: int, seed: int = 0) -> list[Path]:
    """The end-of-run figures for every test set: a ranking grid and a t-SNE map each."""
    written = []
    for result in results:
        slug = file_slug(result.label)
        if num_queries > 0:
            written.append(draw_ranking(result, folder / f"ranking_{slug}.png", num=num_queries, top_k=top_k))
        written.append(draw_tsne_map(result, folder / f"tsne_{slug}.png", max_ids=tsne_max_ids, seed=seed))
    return written


def draw_search_result(query_path: str, gallery_paths: Sequence[str], ids: np.ndarray, distances: np.ndarray,
                       out_path: Path) -> Path:
    """One ranking row for a search: green where the file names carry the query's identity (Market-style
    names), red otherwise (also when names carry no identity)."""
    from trytry_reid.data.datasets import market_name_labels
    from trytry_reid.visualization.ranking import RankingRow

    q_pid, q_cam = market_name_labels(query_path) or (-1, -1)
    labels = np.asarray([market_name_labels(gallery_paths[i]) or (-1, -1) for i in ids], dtype=np.int64).reshape(-1, 2)
    row = RankingRow(query_index=0, query_pid=q_pid, query_camid=q_cam, gallery_indices=np.asarray(ids),
                     distances=np.asarray(distances, dtype=np.float64),
                     is_match=(labels[:, 0] == q_pid) & (q_pid >= 0), gallery_pids=labels[:, 0],
                     gallery_camids=labels[:, 1])
    return draw_ranking_grid([row], [query_path], list(gallery_paths), Path(out_path),
                             title=f"search: top-{len(ids)} for {Path(query_path).name}")
