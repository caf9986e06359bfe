"""Write docs/RESULTS.md from the JSON lines in docs/results/ (python studies/results_table.py).

Only the tables are generated; the prose around them lives in docs/RESULTS_intro.md and is copied first.

    python studies/results_table.py                                   # rewrite docs/RESULTS.md
    python studies/results_table.py --print-table peers FILE.jsonl    # print one kind of table for a file
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from accuracy_rows import TABLES
from common import RESULTS, ROOT, read_lines

TEST_SETS = ("market1501-devsplit", "viper")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def test_sets_of(entries: list[dict]) -> list[str]:
    """The test sets of a table: the usual two, or whatever its rows were ranked on (the validation split)."""
    names = {name for e in entries for name in e["metrics"]}
    return [t for t in TEST_SETS if t in names] or sorted(names)


def table(entries: list[dict]) -> list[str]:
    sets = test_sets_of(entries)
    head = "| row | " + " | ".join(f"{t} R1 | {t} mAP" for t in sets) + " | seed | epochs | wall (s) | img/s |"
    lines = [head, "|" + "---|" * (2 * len(sets) + 5)]
    for e in entries:
        cells = []
        for name in sets:
            m = e["metrics"].get(name, {})
            cells += [pct(m.get("rank1")), pct(m.get("mAP"))]
        lines.append(f"| {e['row']} | " + " | ".join(cells) + f" | {e['seed']} | {e['epochs']} | {e['wall_s']:.0f} | "
                     f"{e['images_per_s']:.1f} |")
    return lines


def spread(values: list[float]) -> str:
    """Mean, and the range when there is more than one value: '63.2 (62.5-63.9)'."""
    text = f"{100 * statistics.mean(values):.1f}"
    return text if len(values) == 1 else f"{text} ({100 * min(values):.1f}-{100 * max(values):.1f})"


def peer_table(entries: list[dict]) -> list[str]:
    """One row per pair, system and label, newest pair first: mean (range) over that row's seeds."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for e in sorted(entries, key=lambda e: e["pair"], reverse=True):
        groups.setdefault((e["pair"], e["system"], e["label"]), []).append(e)
    sets = test_sets_of(entries)
    head = "| system | " + " | ".join(f"{t} R1 | {t} mAP" for t in sets) + \
        " | epochs | seeds | training img/s | training time (s) | pair |"
    lines = [head, "|" + "---|" * (2 * len(sets) + 6)]
    for (pair, system, label), runs in groups.items():
        cells = []
        for name in sets:
            cells += [spread([r["metrics"][name]["rank1"] for r in runs]),
                      spread([r["metrics"][name]["mAP"] for r in runs])]
        speed = statistics.mean(r["images_per_s"] for r in runs)
        train_s = statistics.mean(r["train_s"] for r in runs)
        lines.append(f"| {system}, {label} | " + " | ".join(cells) + f" | {runs[0]['epochs']} | "
                     f"{', '.join(str(r['seed']) for r in runs)} | {speed:.1f} | {train_s:.0f} | {pair} |")
    return lines


CALIBRATION_TITLE = "Same person or not: calibrated verification in domain, across domains and in open-set search"
CALIBRATION_NOTE = """From `docs/results/calibration.jsonl` (`python studies/calibration_table.py --checkpoint C`).
Every query-gallery pair of a test set is scored by cosine distance (Market protocol: same-identity same-camera pairs
left out); "same person" iff distance <= threshold. The threshold is calibrated on the devsplit at FPR 1e-3
(`thr`) and then used unchanged on VIPeR: `FPR there` is the false-positive rate it really gets on VIPeR's
pairs (0.10 % would mean it transfers). Open set: half of the devsplit's gallery identities dropped (seed 0);
DIR = rank-1 right and within the threshold, over queries whose identity is still in the gallery; FAR =
queries whose identity is absent but whose best match passes; `pair thr` = the pair-calibrated threshold used
for that search. Rates in %, except AUC and the threshold (a cosine distance). A pair FPR is not a search FAR:
a query whose person is absent is compared with every gallery image and is "found" if any one passes, which
for G independent comparisons happens with probability 1 - (1 - FPR)^G (63 % for FPR 1e-3 and G = 1,000);
the last two columns measure it instead of assuming it."""


def calibration_table(entries: list[dict]) -> list[str]:
    head = ("| row | devsplit AUC | EER | TPR@1e-3 | thr | VIPeR AUC | EER | TPR@1e-3 | devsplit thr: FPR there | "
            "TPR there | open-set DIR@FAR 1e-2 | DIR@FAR 1e-3 | pair thr: FAR | DIR |")
    lines = [head, "|" + "---|" * 14]
    for e in entries:
        dev, vip = e["datasets"]["market1501-devsplit"], e["datasets"]["viper"]
        there, open_set = vip["devsplit_threshold_here"], dev.get("open_set", {})
        dirs = {f"{p['target_far']:g}": p["dir"] for p in open_set.get("dir_at_far", [])}
        at = open_set.get("at_threshold", {})
        cells = [f"{dev['auc']:.4f}", pct(dev["eer"]), pct(dev["tpr_at_fpr"]["0.001"]), f"{e['threshold']:.4f}",
                 f"{vip['auc']:.4f}", pct(vip["eer"]), pct(vip["tpr_at_fpr"]["0.001"]), f"{100 * there['fpr']:.2f}",
                 pct(there["tpr"]), pct(dirs.get("0.01")), pct(dirs.get("0.001")), pct(at.get("far")),
                 pct(at.get("dir"))]
        lines.append(f"| {e['row']} | " + " | ".join(cells) + " |")
    return lines


def calibration_section() -> str:
    path = RESULTS / "calibration.jsonl"
    if not path.exists():
        return (f"## {CALIBRATION_TITLE}\n\nNot run yet (`python studies/calibration_table.py --checkpoint C "
                f"--row LABEL`).\n")
    return f"## {CALIBRATION_TITLE}\n\n{CALIBRATION_NOTE}\n\n" + "\n".join(calibration_table(read_lines(path))) + "\n"


AVERAGE_TITLE = "Which span a weight average should cover (validation split)"
AVERAGE_NOTE = """From `docs/results/weight_average.jsonl` (`python studies/weight_average_study.py --run R`): one
validation run per seed (the shipped recipe with its exponential average, every epoch checkpoint kept), then
equal-weight means of the trained weights at the ends of epochs a-b, ranked on the run's held-out training ids
with the averaged BatchNorm statistics or with statistics recomputed on 50 training batches. "run average" is the
run's own exponential average (ema_decay 0.998, round 11's recipe), "trained, last epoch" its final weights.
mAP (R1) in %."""


def average_table(entries: list[dict]) -> list[str]:
    """One row per averaging row label, one column per seed, then the mean mAP over the seeds."""
    seeds = sorted({e["seed"] for e in entries})
    rows: dict[str, dict[int, dict]] = {}
    for e in entries:
        rows.setdefault(e["row"], {})[e["seed"]] = next(iter(e["metrics"].values()))
    lines = ["| weights ranked | " + " | ".join(f"seed {s}" for s in seeds) + " | mean mAP |",
             "|" + "---|" * (len(seeds) + 2)]
    for label, by_seed in rows.items():
        cells = [f"{pct(by_seed[s]['mAP'])} ({pct(by_seed[s]['rank1'])})" if s in by_seed else "-" for s in seeds]
        maps = [m["mAP"] for m in by_seed.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {pct(statistics.mean(maps))} |")
    return lines


def render() -> str:
    intro = ROOT / "docs" / "RESULTS_intro.md"
    parts = [intro.read_text().rstrip() + "\n"] if intro.exists() else ["# Results\n"]
    peers = RESULTS / "peers.jsonl"
    if peers.exists():
        parts.append("## Against torchreid (same data, init, input, batch and epochs; same run)\n\n"
                     "From `docs/results/peers.jsonl` (`studies/peer_torchreid.py`); rank-1 (R1) and mAP in %, "
                     "mean over the seeds with the range in brackets.\n\n" + "\n".join(peer_table(read_lines(peers)))
                     + "\n")
    for name, spec in TABLES.items():
        path = RESULTS / f"{name}.jsonl"
        if not path.exists():
            parts.append(f"## {spec.title}\n\nNot run yet (`python studies/accuracy.py --table {name}`).\n")
            continue
        entries = read_lines(path)
        order = [label for label, _ in spec.rows()]  # rows in the table's own order, not run order
        entries.sort(key=lambda e: order.index(e["row"]) if e["row"] in order else len(order))
        missing = [(i, label) for i, label in enumerate(order) if label not in {e["row"] for e in entries}]
        note = "" if not missing else (
            "\nNot run yet: " + "; ".join(label for _, label in missing) + " (`python studies/accuracy.py "
            f"--table {name} --indices {' '.join(str(i) for i, _ in missing)}`).\n")
        parts.append(f"## {spec.title}\n\nFrom `docs/results/{name}.jsonl`; rank-1 (R1) and mAP in %.\n\n"
                     + "\n".join(table(entries)) + "\n" + note)
    averages = RESULTS / "weight_average.jsonl"
    if averages.exists():
        parts.append(f"## {AVERAGE_TITLE}\n\n{AVERAGE_NOTE}\n\n" + "\n".join(average_table(read_lines(averages)))
                     + "\n")
    parts.append(calibration_section())
    return "\n".join(parts)


PRINTABLE = {"peers": peer_table, "weight_average": average_table, "calibration": calibration_table,
             "study": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-table", nargs=2, metavar=("KIND", "JSONL"),
                        help=f"print the table of one JSONL file instead; KIND is one of {', '.join(PRINTABLE)}")
    args = parser.parse_args()
    if args.print_table:
        kind, path = args.print_table
        if kind not in PRINTABLE:
            parser.error(f"--print-table: unknown kind '{kind}' (one of {', '.join(PRINTABLE)})")
        print("\n".join(PRINTABLE[kind](read_lines(Path(path)))))
        return
    out = ROOT / "docs" / "RESULTS.md"
    out.write_text(render())
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
