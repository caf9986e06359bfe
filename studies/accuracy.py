"""Train and evaluate the rows of the accuracy study; append one JSON line per row to docs/results/<table>.jsonl.

    python benchmarks/accuracy.py --table recipe_val            # run (or resume) one table in the foreground
    python benchmarks/accuracy.py --table all --background      # detach; progress in docs/results/accuracy.log
    python benchmarks/accuracy.py --table recipe_val --dry-run  # print the rows only
    OMP_NUM_THREADS=1 python benchmarks/accuracy.py --table recipe_val --indices 0 2 4 &   # two rows at a
    OMP_NUM_THREADS=1 python benchmarks/accuracy.py --table recipe_val --indices 1 3 5 &   # time on 2 cores

A row already present in the table's JSONL file (same config, overrides and seed) is skipped, so an
interrupted list resumes where it stopped; a row whose exact run exists in another table reuses its metrics.
Each row is one `main.py` run in a subprocess; its own metrics.json, summary.json and the fully resolved
config.yml are read back and kept in the JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import yaml  # noqa: E402

from accuracy_rows import TABLES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
RENAME = {"market1501": "market1501-devsplit"}  # the test-set labels of docs/RESULTS.md


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_key(entry: dict) -> tuple:
    return entry["config"], tuple(entry["overrides"]), entry["seed"]


def known_runs() -> dict[tuple, dict]:
    """The rows already run, from the tables' own files (peers.jsonl and calibration.jsonl hold other records)."""
    return {run_key(e): e for name in TABLES for e in read_lines(RESULTS / f"{name}.jsonl")}


def run_row(table: str, index: int, label: str, overrides: list[str], seed: int) -> dict:
    config = TABLES[table].config
    out_dir = ROOT / "runs" / "accuracy" / table / f"{index:02d}-seed{seed}"
    cmd = [sys.executable, str(ROOT / "main.py"), "--config", str(ROOT / config), *overrides,
           f"train.seed={seed}", f"output_dir={out_dir}", "--overwrite"]
    print(f"[accuracy] {table} row {index} '{label}': {' '.join(cmd[2:])}", flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.time() - start
    metrics = json.loads((out_dir / "metrics.json").read_text())
    summary = json.loads((out_dir / "summary.json").read_text())
    return {"row": label, "config": config, "overrides": overrides, "seed": seed,
            "epochs": summary["epochs"], "wall_s": round(wall, 1), "train_s": summary.get("train_s"),
            "images_per_s": summary["images_per_s"], "threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "metrics": {RENAME.get(k, k): v for k, v in metrics["datasets"].items()},
            "resolved_config": yaml.safe_load((out_dir / "config.yml").read_text())}


def run_table(table: str, seed: int, dry_run: bool, only: list[str] | None = None,
              indices: list[int] | None = None) -> None:
    path = RESULTS / f"{table}.jsonl"
    done = {run_key(e) for e in read_lines(path)}
    for index, (label, overrides) in enumerate(TABLES[table].rows()):
        if (only and label not in only) or (indices and index not in indices):
            continue
        overrides = overrides + TABLES[table].budget
        key = (TABLES[table].config, tuple(overrides), seed)
        if key in done:
            continue
        if dry_run:
            print(f"{table} {index}: {label}: {' '.join(overrides)}")
            continue
        entry = known_runs().get(key)
        entry = dict(entry, row=label) if entry else run_row(table, index, label, overrides, seed)
        RESULTS.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")


def detach(argv: list[str]) -> None:
    log = RESULTS / "accuracy.log"
    RESULTS.mkdir(parents=True, exist_ok=True)
    args = [a for a in argv if a != "--background"]
    with log.open("a") as handle:
        proc = subprocess.Popen([sys.executable, __file__, *args], stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=ROOT)
    print(f"running in the background (pid {proc.pid}); progress in {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", choices=[*TABLES, "all"], default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--background", action="store_true")
    parser.add_argument("--rows", nargs="*", help="run only the rows with these labels (e.g. the endpoints)")
    parser.add_argument("--indices", nargs="*", type=int, help="run only the rows at these positions")
    args = parser.parse_args()
    if args.background:
        return detach(sys.argv[1:])
    for table in TABLES if args.table == "all" else [args.table]:
        run_table(table, args.seed, args.dry_run, args.rows, args.indices)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
