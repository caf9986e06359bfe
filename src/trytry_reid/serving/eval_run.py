"""The evaluation-run file the web page browses: queries, their ranked gallery rows, match flags and AP.

Accepted format (the ranking figure's sidecar JSON, ``visualization/ranking.py``, plus an optional ``ap``)::

    {"rows": [{"query_path": "query/0001_c1s1_000151_00.jpg", "query_pid": 1, "ap": 0.52,
               "ranked": [{"gallery_path": "...", "distance": 0.31, "is_match": true}, ...]}, ...]}

A bare list of rows is accepted too. Relative paths are resolved against the JSON file's folder. When a
row has no ``ap``, the AP of the shown row is used (precision at each shown match, averaged over the shown
matches; 0 when none is shown) and the row says ``"ap_source": "shown_row"``.

Only images under the file's ``dataset_roots`` (written by ``rank`` / ``evaluate --rank`` / ``train``: the
real folder of the evaluated dataset) are served; a file without it may only name images under its own
folder. Every path is resolved (symlinks followed) when the file is loaded and must lie under a resolved
root, or loading fails naming the path: a ranking file that names ``/etc/passwd`` or a link leading out of
the dataset is refused, not served. Rows keep the resolved paths; the server re-checks them per request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trytry_reid.errors import ReidError


class EvalRunError(ReidError, ValueError):
    """An evaluation-run file that cannot be browsed; the message names the file and what is wrong."""


@dataclass(frozen=True)
class EvalRow:
    query_path: Path
    query_pid: int | None
    ap: float
    ap_source: str            # "file" or "shown_row"
    gallery_paths: tuple[Path, ...]
    distances: tuple[float, ...]
    matches: tuple[bool, ...]


def shown_row_ap(matches: tuple[bool, ...]) -> float:
    """Average of precision@i over the positions i holding a match (0.0 without matches)."""
    hits, total = 0, 0.0
    for position, match in enumerate(matches, start=1):
        if match:
            hits += 1
            total += hits / position
    return total / hits if hits else 0.0


def dataset_roots(payload: object, source: Path) -> list[Path]:
    """The resolved folders whose images may be served: the file's ``dataset_roots``, else its own folder."""
    declared = payload.get("dataset_roots") if isinstance(payload, dict) else None
    if declared is None:
        return [source.parent.resolve()]
    if not isinstance(declared, list) or not all(isinstance(r, str) for r in declared):
        raise EvalRunError(f"evaluation run file '{source}': 'dataset_roots' must be a list of folder paths")
    roots = [(source.parent / root).resolve() for root in declared]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        raise EvalRunError(f"evaluation run file '{source}': dataset root(s) {missing} are not folders")
    return roots


def _inside(path: Path, roots: list[Path], where: str) -> Path:
    """``path`` resolved (symlinks followed), or ValueError when that is not under one of ``roots``."""
    real = path.resolve()
    if not any(real.is_relative_to(root) for root in roots):
        raise EvalRunError(f"{where}: '{real}' is outside the dataset roots {[str(r) for r in roots]}; only "
                         f"images under them are served (regenerate the file with `trytry-reid rank`)")
    return real


def _parse_row(row: object, number: int, base: Path, source: Path, roots: list[Path]) -> EvalRow:
    where = f"'{source}' row {number}"
    if not isinstance(row, dict) or "query_path" not in row or not isinstance(row.get("ranked"), list):
        raise EvalRunError(f"{where}: expected an object with 'query_path' and a 'ranked' list")
    try:
        ranked = [(base / item["gallery_path"], float(item["distance"]), bool(item["is_match"]))
                  for item in row["ranked"]]
    except (KeyError, TypeError, ValueError) as error:
        raise EvalRunError(f"{where}: each 'ranked' item needs 'gallery_path', 'distance', 'is_match' "
                         f"({type(error).__name__}: {error})") from error
    ranked = [(_inside(p, roots, where), d, m) for p, d, m in ranked]
    matches = tuple(m for _, _, m in ranked)
    has_ap = isinstance(row.get("ap"), (int, float)) and not isinstance(row.get("ap"), bool)
    return EvalRow(query_path=_inside(base / row["query_path"], roots, where), query_pid=row.get("query_pid"),
                   ap=float(row["ap"]) if has_ap else shown_row_ap(matches),
                   ap_source="file" if has_ap else "shown_row",
                   gallery_paths=tuple(p for p, _, _ in ranked),
                   distances=tuple(d for _, d, _ in ranked), matches=matches)


def load_eval_run(path: str | Path) -> list[EvalRow]:
    """Read and check an evaluation-run JSON; rows keep the file's order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation run file '{path}' does not exist")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise EvalRunError(f"evaluation run file '{path}' is not valid JSON: {error}") from error
    rows = payload.get("rows") if isinstance(payload, dict) else payload
    if not isinstance(rows, list):
        raise EvalRunError(f"evaluation run file '{path}': expected {{'rows': [...]}} or a list of rows")
    roots = dataset_roots(payload, path)
    return [_parse_row(row, i, path.parent, path, roots) for i, row in enumerate(rows)]
