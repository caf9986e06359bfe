"""Train and evaluate the rows of the accuracy study; append one JSON line per row to docs/results/<table>.jsonl.

    python studies/accuracy.py --table recipe_val            # run (or resume) one table in the foreground
    python studies/accuracy.py --table all --background      # detach; progress in docs/results/accuracy.log
    python studies/accuracy.py --table recipe_val --dry-run  # print the rows not run yet
    OMP_NUM_THREADS=1 python studies/accuracy.py --table recipe_val --indices 0 2 4 &   # two rows at a
    OMP_NUM_THREADS=1 python studies/accuracy.py --table recipe_val --indices 1 3 5 &   # time on 2 cores
    python studies/accuracy.py --check-recipe config/mobilenet_market_cpu.yml   # exit 1 naming what differs

A row already present in the table's JSONL file (same config, overrides and seed) is skipped, so an
interrupted list resumes where it stopped; a row whose exact run exists in another table reuses its metrics.
Rows recorded under the former benchmarks/configs/ path count as the same rows (common.config_key). Each row
is one `main.py` run in a subprocess, on the study config + the --shared overrides (data, weights, test sets)
+ the row's overrides; its own metrics.json, summary.json and the fully resolved config.yml are read back and
kept in the JSON line (``overrides`` holds the row's own, the key of the row).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from accuracy_rows import CHOSEN, CHOSEN_ROW, SHIPPED, STUDY_12, TABLES
from common import RESULTS, ROOT, add_shared_argument, config_key, read_lines, shared_overrides, train_run

RENAME = {"market1501": "market1501-devsplit"}  # the test-set labels of docs/RESULTS.md


def run_key(entry: dict) -> tuple:
    return config_key(entry["config"]), tuple(entry["overrides"]), entry["seed"]


def known_runs(results: Path = RESULTS) -> dict[tuple, dict]:
    """The rows already run, from the tables' own files (peers.jsonl and calibration.jsonl hold other records)."""
    return {run_key(e): e for name in TABLES for e in read_lines(results / f"{name}.jsonl")}


def run_row(table: str, index: int, label: str, overrides: list[str], seed: int, shared: list[str]) -> dict:
    config = TABLES[table].config
    out_dir = ROOT / "runs" / "accuracy" / table / f"{index:02d}-seed{seed}"
    run = train_run(config, [*shared, *overrides, f"train.seed={seed}"], out_dir,
                    f"[accuracy] {table} row {index} '{label}'")
    return {"row": label, "config": config, "overrides": overrides, "seed": seed,
            "epochs": run["epochs"], "wall_s": run["wall_s"], "train_s": run["train_s"],
            "images_per_s": run["images_per_s"], "threads": run["threads"],
            "metrics": {RENAME.get(k, k): v for k, v in run["metrics"].items()},
            "shared_overrides": shared, "resolved_config": run["resolved_config"]}


def print_orphans(table: str, entries: list[dict]) -> None:
    """Name the recorded rows whose (config, overrides) no row of the table makes any more."""
    spec = TABLES[table]
    made = {(spec.config, tuple(overrides + spec.budget)) for _, overrides in spec.rows()}
    for entry in entries:
        if run_key(entry)[:2] not in made:
            print(f"{table}: recorded row '{entry['row']}' (seed {entry['seed']}) is no longer a row of the table")


def run_table(table: str, seed: int, dry_run: bool, only: list[str] | None = None,
              indices: list[int] | None = None, shared: Path | None = None) -> None:
    path = RESULTS / f"{table}.jsonl"
    done = {run_key(e) for e in read_lines(path)}
    if dry_run:
        print_orphans(table, read_lines(path))
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
        entry = dict(entry, row=label, config=key[0]) if entry else run_row(
            table, index, label, overrides, seed, shared_overrides(shared, TABLES[table].test_sets))
        RESULTS.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_recipe(config: Path) -> int:
    """0 when ``config`` is the 12-epoch study's base + the chosen validation row + the shipped arithmetic
    (SHIPPED) in every key that changes the model it trains; else 1, printing each differing key. The data
    root, the weights file and the test sets get the same placeholder values on both sides; the study only
    turns figures off and keeps one epoch checkpoint, and each file names itself."""
    import tempfile

    from trytry_reid.jobs.config import load_config, to_dict

    problems = []
    if (CHOSEN_ROW, CHOSEN) not in TABLES["recipe_val"].rows():
        problems.append(f"the chosen row '{CHOSEN_ROW}' is not a row of recipe_val")
    if SHIPPED[:len(CHOSEN)] != CHOSEN:
        problems.append("SHIPPED does not start with the chosen row's overrides")
    with tempfile.TemporaryDirectory() as tmp:
        root, weights = Path(tmp) / "data", Path(tmp) / "weights.pth"
        root.mkdir()
        weights.write_bytes(b"")
        same = [f"data.root={root}", f"model.pretrained={weights}", "test.datasets=[]"]
        study = flatten(to_dict(load_config(ROOT / STUDY_12, [*SHIPPED, *same])))
        shipped = flatten(to_dict(load_config(config, same)))
    for key in ("train.checkpoint_keep", "test.figures", "name"):
        study.pop(key), shipped.pop(key)
    for key in sorted(set(study) | set(shipped)):
        if study.get(key) != shipped.get(key):
            problems.append(f"{key}: {study.get(key)!r} in {STUDY_12} + the chosen row, "
                            f"{shipped.get(key)!r} in {config}")
    for problem in problems:
        print(f"check-recipe: {problem}")
    if not problems:
        print(f"check-recipe: {config} is {STUDY_12} + the chosen row '{CHOSEN_ROW}' + the shipped arithmetic")
    return 1 if problems else 0


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
    parser.add_argument("--check-recipe", type=Path, metavar="CONFIG",
                        help="only check that CONFIG is the 12-epoch study's base + the chosen row (exit 1 if not)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSONL folder (default: docs/results)")
    parser.add_argument("--known-runs", action="store_true",
                        help="only print the recorded rows' keys (config, overrides, seed), one JSON list a line")
    add_shared_argument(parser)
    args = parser.parse_args()
    if args.check_recipe:
        sys.exit(check_recipe(args.check_recipe))
    if args.known_runs:
        for key in known_runs(args.results):
            print(json.dumps([key[0], list(key[1]), key[2]]))
        return
    if args.background:
        return detach(sys.argv[1:])
    for table in TABLES if args.table == "all" else [args.table]:
        run_table(table, args.seed, args.dry_run, args.rows, args.indices, args.shared)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
