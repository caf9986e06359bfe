"""Write docs/RESULTS.md, the README's headline table and MODEL_ZOO's table from the JSON lines in docs/results/.

The page is findings, one question at a time (studies/findings.py says which recorded rows answer which
question, with one sentence each); every number in its tables is computed here from the JSONL files.

    python studies/results_table.py                                   # rewrite all three
    python studies/results_table.py --check                           # are all three up to date?
    python studies/results_table.py --print-table peers FILE.jsonl    # print one kind of table for a file
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from common import RESULTS, ROOT, read_lines
from deploy_tables import infer_speed_table, int8_accuracy_table
from findings import CONTEXT, CURRENT_PAIR, FIGURES, QUESTIONS, RECIPE, Question
from peer_tables import SHOWN, pair_sets, peer_table, peers_section, readme_table, spread
from zoo_table import zoo_table

TEST_SETS = ("market1501-devsplit", "viper")
VALIDATION_SETS = ("market1501-val", "market1501-val-cams-5-6", "viper_val")
SHOWN_NAMES = {**SHOWN, "market1501-val": "validation", "market1501-val-cams-5-6": "validation, cameras 5-6",
               "viper_val": "VIPeR validation half"}


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def test_sets_of(entries: list[dict]) -> list[str]:
    """The test sets of a table: the usual two, or whatever its rows were ranked on (the validation split)."""
    return pair_sets(entries, TEST_SETS)


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


def slug(title: str) -> str:
    """The GitHub anchor of a heading."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def metric_cells(runs: list[dict], sets: list[str]) -> list[str]:
    return [spread([r["metrics"][name][key] for r in runs]) for name in sets for key in ("rank1", "mAP")]


def rows_table(question: Question, entries: dict[str, list[dict]]) -> list[str]:
    """Each row: R1 and mAP per test set (mean and range over its seeds), mAP minus its base row's, seeds."""
    found = {row.shown: [e for e in entries.get(row.source, []) if e["row"] == row.label] for row in question.rows}
    missing = [row.label for row in question.rows if not found[row.shown]]
    if missing:
        raise SystemExit(f"results_table: no recorded run for {missing} ({question.title})")
    first_runs = found[question.rows[0].shown]
    sets = [t for t in (*TEST_SETS, *VALIDATION_SETS) if all(t in r["metrics"] for r in first_runs)]
    head = " | ".join(f"{SHOWN_NAMES.get(t, t)} {k}" for t in sets for k in ("R1", "mAP"))
    lines = [f"| | {head} | mAP vs base | seeds |", "|" + "---|" * (2 * len(sets) + 3)]
    first = question.rows[0].shown

    def mean_map(shown: str) -> float:
        return statistics.mean(r["metrics"][sets[0]]["mAP"] for r in found[shown])

    for row in question.rows:
        runs = found[row.shown]
        base = row.base or first
        difference = round(100 * (mean_map(row.shown) - mean_map(base)), 1) + 0.0  # + 0.0: no "-0.0"
        delta = "base" if row.shown == first and row.base is None else f"{difference:+.1f}"
        seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in runs}))
        lines.append(f"| {row.shown} | " + " | ".join(metric_cells(runs, sets)) + f" | {delta} | {seeds} |")
    return lines


def small_calibration_table(entries: list[dict]) -> list[str]:
    lines = ["| model | devsplit AUC | EER | TPR at FPR 0.1 % | threshold | its FPR on VIPeR | its TPR there | "
             "open set: absent people matched |", "|" + "---|" * 8]
    for e in entries:
        dev, vip = e["datasets"]["market1501-devsplit"], e["datasets"]["viper"]
        there, at = vip["devsplit_threshold_here"], dev.get("open_set", {}).get("at_threshold", {})
        lines.append(f"| {e['row']} | {dev['auc']:.3f} | {pct(dev['eer'])} | {pct(dev['tpr_at_fpr']['0.001'])} | "
                     f"{e['threshold']:.3f} | {100 * there['fpr']:.2f} % | {pct(there['tpr'])} | "
                     f"{pct(at.get('far'))} |")
    return lines


def speed_table(entries: list[dict], field: str, unit: str) -> list[str]:
    """One row per variant, one column per recorded run (its date): the value and the ratio to the reference."""
    variants = list(dict.fromkeys(name for e in entries for name in e[field]))   # a renamed variant: '-' before
    dates = [e["date"][:16].replace("T", " ") for e in entries]
    lines = [f"| {unit} | " + " | ".join(dates) + " |", "|" + "---|" * (len(entries) + 1)]
    for name in variants:
        cells = [f"{e[field][name]:.1f} ({e['ratio'][name]:.2f}x)" if name in e[field] else "-" for e in entries]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def question_table(question: Question, entries: dict[str, list[dict]]) -> list[str]:
    if question.kind == "rows":
        return rows_table(question, entries)
    if question.kind == "weight_average":
        return average_table([dict(e, row=shown) for label, shown in question.labels
                              for e in entries["weight_average"] if e["row"] == label])
    if question.kind == "calibration":
        return small_calibration_table(entries["calibration"])
    if question.kind == "infer_speed":
        return infer_speed_table(entries["infer_speed"])
    if question.kind == "int8_accuracy":
        return int8_accuracy_table(entries["int8_accuracy"])
    if question.kind == "osnet_loop":
        return table(entries["osnet_loop"])
    if question.kind == "precision_speed":
        return speed_table(entries["precision_speed"], "images_per_s", "one training step, images/s (ratio)")
    return speed_table(entries["augment_speed"], "cpu_ms_per_batch", "CPU ms per 64-image batch (speed-up)")


def render() -> str:
    names = ["peers", "recipe_val", "study_12", "ablation", "selectors", "init", "weight_average", "calibration",
             "precision_speed", "augment_speed", "infer_speed", "int8_accuracy", "osnet_loop", "cross_domain_val",
             "cross_domain_ranked"]
    entries = {name: read_lines(RESULTS / f"{name}.jsonl") for name in names}
    parts = ["# Results: the CPU recipe and how it was chosen\n", CONTEXT + "\n", "## The recipe\n",
             RECIPE + "\n", peers_section(entries["peers"], CURRENT_PAIR)]
    for question in QUESTIONS:
        parts.append(f"## {question.title}\n\n" + "\n".join(question_table(question, entries)) + "\n\n"
                     + question.sentence + "\n")
    parts.append(f"## Figures\n\n{FIGURES}\n")
    return "\n".join(parts)


README_START = "<!-- generated by studies/results_table.py from docs/results/peers.jsonl; do not edit -->\n"
README_END = "<!-- end of the generated table -->\n"


ZOO_START = ("<!-- generated by studies/results_table.py from docs/results/zoo_speed.jsonl and peers.jsonl; "
             "do not edit -->\n")


def between_markers(text: str, start_marker: str, generated: str, page: str) -> str:
    """``text`` with what lies between ``start_marker`` and README_END replaced by ``generated``."""
    start = text.find(start_marker)
    end = text.find(README_END, start)
    if start < 0 or end < 0:
        raise SystemExit(f"{page} lacks the markers around its generated table: {start_marker!r} and "
                         f"{README_END!r}")
    return text[:start + len(start_marker)] + generated + text[end:]


def render_readme(text: str, peers: list[dict]) -> str:
    """The README with its headline table (between the two markers) written from the current pair."""
    return between_markers(text, README_START, readme_table(peers, CURRENT_PAIR), "README.md")


def render_zoo(text: str, speed: list[dict], peers: list[dict]) -> str:
    """docs/MODEL_ZOO.md with its table of architectures written from zoo_speed.jsonl and the current pair."""
    return between_markers(text, ZOO_START, zoo_table(speed, peers, CURRENT_PAIR), "docs/MODEL_ZOO.md")


def headline(entries: list[dict]) -> list[str]:
    """The README's table for the newest pair of a peers file."""
    return readme_table(entries, max(e["pair"] for e in entries)).splitlines()


PRINTABLE = {"peers": peer_table, "weight_average": average_table, "calibration": calibration_table,
             "study": table, "headline": headline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-table", nargs=2, metavar=("KIND", "JSONL"),
                        help=f"print the table of one JSONL file instead; KIND is one of {', '.join(PRINTABLE)}")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a generated page differs from the JSONL files")
    args = parser.parse_args()
    if args.print_table:
        kind, path = args.print_table
        if kind not in PRINTABLE:
            parser.error(f"--print-table: unknown kind '{kind}' (one of {', '.join(PRINTABLE)})")
        print("\n".join(PRINTABLE[kind](read_lines(Path(path)))))
        return
    readme, zoo = ROOT / "README.md", ROOT / "docs" / "MODEL_ZOO.md"
    peers = read_lines(RESULTS / "peers.jsonl")
    pages = {ROOT / "docs" / "RESULTS.md": render(), readme: render_readme(readme.read_text(), peers),
             zoo: render_zoo(zoo.read_text(), read_lines(RESULTS / "zoo_speed.jsonl"), peers)}
    if args.check:
        for out, text in pages.items():
            if out.read_text() != text:
                sys.exit(f"{out} is not what docs/results/*.jsonl give: run python studies/results_table.py")
        print(f"{', '.join(str(out) for out in pages)}: up to date")
        return
    for out, text in pages.items():
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
