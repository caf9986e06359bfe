"""Write docs/RESULTS.md tables from the JSON lines in docs/results/ (python benchmarks/results_table.py).

Only the tables are generated; the prose around them lives in docs/RESULTS_intro.md and is copied first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_rows import TABLES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
TEST_SETS = ("market1501-devsplit", "viper")
TITLES = {
    "ablation": "Table 1. Bag of Tricks ablation (each row adds one trick to the row above)",
    "selectors": "Table 2. Triplet selection, with and without cross-entropy (full recipe otherwise)",
    "init": "Table 3. ImageNet vs random initialisation (full recipe)",
}


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table(entries: list[dict]) -> list[str]:
    head = "| row | " + " | ".join(f"{t} R1 | {t} mAP" for t in TEST_SETS) + " | epochs | wall (s) | img/s |"
    lines = [head, "|" + "---|" * (2 * len(TEST_SETS) + 4)]
    for e in entries:
        cells = []
        for name in TEST_SETS:
            m = e["metrics"].get(name, {})
            cells += [pct(m.get("rank1")), pct(m.get("mAP"))]
        lines.append(f"| {e['row']} | " + " | ".join(cells) + f" | {e['epochs']} | {e['wall_s']:.0f} | "
                     f"{e['images_per_s']:.1f} |")
    return lines


def render() -> str:
    intro = ROOT / "docs" / "RESULTS_intro.md"
    parts = [intro.read_text().rstrip() + "\n"] if intro.exists() else ["# Results\n"]
    for name, title in TITLES.items():
        path = RESULTS / f"{name}.jsonl"
        if not path.exists():
            parts.append(f"## {title}\n\nNot run yet (`python benchmarks/accuracy.py --table {name}`).\n")
            continue
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        order = [label for label, _ in TABLES[name]()]  # rows in the table's own order, not run order
        entries.sort(key=lambda e: order.index(e["row"]) if e["row"] in order else len(order))
        parts.append(f"## {title}\n\nFrom `docs/results/{name}.jsonl`; rank-1 (R1) and mAP in %.\n\n"
                     + "\n".join(table(entries)) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    out = ROOT / "docs" / "RESULTS.md"
    out.write_text(render())
    print(f"wrote {out}", file=sys.stderr)
