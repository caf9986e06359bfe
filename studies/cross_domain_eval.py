"""The cross-domain validation study (issue 30): the levers that need no training of their own, and the decision.

    python studies/accuracy.py --table cross_domain_val --seed 0      # the trained rows (accuracy_rows.py)
    python studies/cross_domain_eval.py --seed 0                       # rank saved weights again (below)
    python studies/cross_domain_eval.py --summary                      # per-seed table, means, ranges, rule

The protocol never scores a test split: every row trains the shipped recipe on cameras 1-4 of 401 devsplit
training ids and ranks (1) the 100 held-out ids within cameras 1-4, ``market1501-val`` (in domain: new people,
seen cameras); (2) the same ids within cameras 5-6, ``market1501-val-cams-5-6`` (a camera shift); (3) VIPeR's
validation half, ``viper_val`` (another dataset). VIPeR's test half and the devsplit test split are scored once,
by the final pair against torchreid, for the recipe this study chooses.

Evaluated rows (EVAL_ROWS) rank a finished trained row's weights again, with one change that needs no
training: flip at test, the feature before BNNeck (on the BNNeck row), or a different weight-average window
(equal-weight means of the epoch checkpoints of the recipe row, which keeps all twelve). Each appends one line,
shaped like the trained rows' (same config and seed; ``ranked_again`` says what was changed, ``ranked_from``
which row's weights), to docs/results/cross_domain_ranked.jsonl.

Decision rule (set before any run of the study). Per row and seed, the cross-domain score X is the mean of
the mAPs of ``market1501-val-cams-5-6`` and ``viper_val``; the in-domain score I is the mAP of
``market1501-val``. A lever is kept when, over seeds 0 and 1, (a) its mean X is above the recipe row's highest
X (the mean moves past the recipe's seed range) and (b) its mean I is at most 0.5 mAP under the recipe's mean
I. When several levers are kept, their combination is trained at the same seeds and adopted only if it passes
(a) and (b) too and its mean X beats the best single lever's; otherwise the kept lever with the highest mean X
alone is adopted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from trytry_reid.engine.checkpoint import load_checkpoint
from trytry_reid.evaluation.retrieval import evaluate_model
from trytry_reid.jobs import builders
from trytry_reid.jobs.config import load_config
from trytry_reid.serving.inference import load_model

from accuracy_rows import TABLES
from common import RESULTS as RESULTS_FOLDER
from common import ROOT, read_lines
from weight_average_study import average_state

TABLE = "cross_domain_val"
TRAINED = RESULTS_FOLDER / f"{TABLE}.jsonl"
RANKED = RESULTS_FOLDER / "cross_domain_ranked.jsonl"
IN_DOMAIN = "market1501-val"
CROSS_DOMAIN = ("market1501-val-cams-5-6", "viper_val")
RECIPE_ROW = "shipped recipe"
MAX_IN_DOMAIN_COST = 0.005  # rule (b): 0.5 mAP points

# (label, the trained row whose weights are ranked, config overrides for the ranking, epoch window a-b or None)
EVAL_ROWS = [
    ("flip at test", RECIPE_ROW, ["test.flip=true"], None),
    ("no weight average (epoch 12's weights)", RECIPE_ROW, [], "12-12"),
    ("uniform average of epochs 9-12", RECIPE_ROW, [], "9-12"),
    ("uniform average of epochs 1-12", RECIPE_ROW, [], "1-12"),
    ("BNNeck, retrieval before it", "BNNeck, retrieval after it", ["model.retrieval_feature=features"], None),
]


def run_dir(row: str, seed: int) -> Path:
    index = [label for label, _ in TABLES[TABLE].rows()].index(row)
    return ROOT / "runs" / "accuracy" / TABLE / f"{index:02d}-seed{seed}"


def window_weights(run: Path, window: str) -> dict[str, torch.Tensor]:
    first, last = (int(x) for x in window.split("-"))
    states = [load_checkpoint(run / "checkpoints" / f"epoch_{e:04d}.pt") for e in range(first, last + 1)]
    return average_state([s.get("trained_model", s["model"]) for s in states])


def rank_again(run: Path, overrides: list[str], window: str | None) -> dict[str, dict[str, float]]:
    """The run's saved (averaged) weights, or a window's average, ranked on the run's validation sets."""
    config = load_config(run / "config.yml", overrides)
    loaded = load_model(run / "checkpoints" / "last.pt")
    loaded.model.retrieval_feature = config.model.retrieval_feature
    if window is not None:
        loaded.model.load_state_dict(window_weights(run, window))
    options = builders.retrieval_options(config, "cpu")
    return {label: evaluate_model(loaded.model.eval(), label, s.query, s.gallery, loaded.transform(),
                                  **options).summary() for label, s in builders.build_test_sets(config, None)}


def run_eval_rows(seed: int) -> None:
    done = {(e["row"], e["seed"]) for e in read_lines(RANKED)}
    trained = {(e["row"], e["seed"]): e for e in read_lines(TRAINED)}
    for label, source, overrides, window in EVAL_ROWS:
        if (label, seed) in done or (source, seed) not in trained:
            continue
        start = time.time()
        metrics = rank_again(run_dir(source, seed), overrides, window)
        changed = overrides + ([f"weights: uniform average of epochs {window}"] if window else [])
        entry = {**trained[(source, seed)], "row": label, "ranked_from": source, "ranked_again": changed,
                 "rank_wall_s": round(time.time() - start, 1), "metrics": metrics}
        with RANKED.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        print(f"[cross-domain] {label} seed {seed}: {json.dumps(metrics)}", flush=True)


def scores(entry: dict) -> tuple[float, float, dict[str, float]]:
    """(X, I, each set's mAP) of one line (see the decision rule)."""
    maps = {name: entry["metrics"][name]["mAP"] for name in (IN_DOMAIN, *CROSS_DOMAIN)}
    return statistics.mean(maps[name] for name in CROSS_DOMAIN), maps[IN_DOMAIN], maps


def summary(seeds: tuple[int, ...] = (0, 1)) -> dict[str, dict]:
    """Per row: each seed's scores, the means and ranges, and the rule's verdict against the recipe row."""
    rows: dict[str, dict[int, dict]] = {}
    for entry in read_lines(TRAINED) + read_lines(RANKED):
        rows.setdefault(entry["row"], {})[entry["seed"]] = entry
    out = {}
    for row, by_seed in rows.items():
        per_seed = {seed: scores(by_seed[seed]) for seed in seeds if seed in by_seed}
        if not per_seed:
            continue
        xs, ins = [x for x, _, _ in per_seed.values()], [i for _, i, _ in per_seed.values()]
        out[row] = {"seeds": sorted(per_seed), "X": xs, "I": ins,
                    "maps": {s: maps for s, (_, _, maps) in per_seed.items()},
                    "X_mean": statistics.mean(xs), "I_mean": statistics.mean(ins)}
    recipe = out.get(RECIPE_ROW)
    for row, result in out.items():
        complete = recipe is not None and len(result["seeds"]) == len(seeds) == len(recipe["seeds"])
        result["kept"] = None if not complete or row == RECIPE_ROW else bool(
            result["X_mean"] > max(recipe["X"]) and result["I_mean"] >= recipe["I_mean"] - MAX_IN_DOMAIN_COST)
    return out


def print_summary() -> None:
    names = (IN_DOMAIN, *CROSS_DOMAIN)
    print("| row | " + " | ".join(f"{n} mAP" for n in names) + " | X (cross-domain mean) | kept |")
    print("|---|" + "---|" * (len(names) + 2))
    for row, r in summary().items():
        cells = []
        for name in names:
            values = [100 * r["maps"][s][name] for s in r["seeds"]]
            cells.append(" / ".join(f"{v:.1f}" for v in values) + f" (mean {statistics.mean(values):.1f})")
        xs = [100 * x for x in r["X"]]
        verdict = {None: "-", True: "yes", False: "no"}[r["kept"]]
        print(f"| {row} | " + " | ".join(cells) + f" | {' / '.join(f'{x:.1f}' for x in xs)} "
              f"(mean {statistics.mean(xs):.1f}, range {min(xs):.1f}-{max(xs):.1f}) | {verdict} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="rank the evaluated rows of this seed's runs")
    parser.add_argument("--summary", action="store_true", help="print the table and the rule's verdicts only")
    args = parser.parse_args()
    if args.summary:
        print_summary()
        return
    run_eval_rows(args.seed)


if __name__ == "__main__":
    main()
