"""One query against a gallery index, answered with a threshold: ranked results, each flagged within /
beyond it, and "unknown" when none is within (the person is not in the gallery). Used by `search` and the
web API alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trytry_reid.evaluation.operating_point import Threshold, flag_results
from trytry_reid.serving.index import GalleryIndex


def index_calibration(index: GalleryIndex, loaded_model) -> dict | None:
    """The operating point to search with: the checkpoint's current one, the same that ``verify`` and the
    ``Embedder`` read (one source of truth). The query's model is that checkpoint (a LoadedModel, or any
    engine's InferenceModel: its contract's), and ``check_index_model`` has matched its weights to the index's;
    the copy ``index.json`` keeps from when the index was built is provenance only (``stale_copy_note`` says
    when it differs)."""
    return getattr(loaded_model, "contract", loaded_model).calibration


def stale_copy_note(index: GalleryIndex, loaded_model, checkpoint: str | Path) -> str | None:
    """One line when the operating point recorded in the index differs from the checkpoint's current one
    (``calibrate`` ran after ``index``); None when they agree."""
    recorded, current = index.info.get("calibration"), index_calibration(index, loaded_model)
    if recorded == current:
        return None
    was = "none" if recorded is None else f"threshold {recorded['threshold']:.4f}"
    now = "none (ranking only: calibrate it or pass --threshold)" if current is None else \
        f"threshold {current['threshold']:.4f} (calibrated {current.get('date', 'at an unknown date')})"
    return (f"note: the index recorded {was} when it was built; checkpoint {checkpoint} now stores {now}; "
            f"using the checkpoint's (run `trytry-reid index` again to refresh the index's copy)")


def search_answer(index: GalleryIndex, query: np.ndarray, k: int, threshold: Threshold) -> dict:
    """``query`` [1, D] -> {"threshold": Threshold.to_json(), "unknown": bool | None, "results": [{"rank",
    "id", "path", "name", "distance", "within": bool | None}]} nearest first (None: no threshold)."""
    distances, ids = index.search(query, k)
    found = ids[0] >= 0
    distances, ids = distances[0][found], ids[0][found]
    within, unknown = flag_results(distances, threshold)
    results = [{"rank": rank, "id": int(i), "path": index.paths[i], "name": Path(index.paths[i]).name,
                "distance": float(d), "within": None if within is None else bool(within[rank - 1])}
               for rank, (d, i) in enumerate(zip(distances, ids), start=1)]
    return {"threshold": threshold.to_json(), "unknown": unknown, "results": results}


def format_answer(answer: dict, threshold: Threshold) -> str:
    """The answer as printed lines: rank, distance, within/beyond, path; then the verdict."""
    lines = []
    for item in answer["results"]:
        flag = "" if item["within"] is None else ("  within" if item["within"] else "  beyond")
        lines.append(f"{item['rank']:3d}  {item['distance']:.4f}{flag}  {item['path']}")
    if answer["unknown"] is None:
        lines.append(threshold.describe())
    elif answer["unknown"]:
        lines.append(f"unknown: no gallery image within the {threshold.describe()}; the query is not in the gallery")
    else:
        within = sum(item["within"] for item in answer["results"])
        lines.append(f"known: {within} of {len(answer['results'])} results within the {threshold.describe()}")
    return "\n".join(lines)
