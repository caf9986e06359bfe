"""The deployment tables of docs/RESULTS.md: inference speed per engine (docs/results/infer_speed.jsonl, from
benchmarks/infer_speed.py) and INT8 accuracy (docs/results/int8_accuracy.jsonl, from studies/int8_accuracy.py);
each shows the latest recorded run (of each model, for speed)."""

from __future__ import annotations

MODEL_NAMES = {"mobilenet_v2": "MobileNetV2 128x64", "resnet50": "ResNet-50 256x128", "osnet_x0_25": "OSNet x0.25"}
SET_NAMES = {"market1501-devsplit": "devsplit", "viper": "VIPeR"}


def speed_runs(entries: list[dict]) -> list[tuple[dict, list[dict], dict]]:
    """Each run in infer_speed.jsonl: (start line, engine rows, end line or {} when it was cut short)."""
    runs = []
    for entry in entries:
        if entry.get("state") == "start":
            runs.append((entry, [], {}))
        elif entry.get("state") == "end" and runs:
            runs[-1] = (runs[-1][0], runs[-1][1], entry)
        elif runs and "engine" in entry:
            runs[-1][1].append(entry)
    if not runs:
        raise SystemExit("results_table: docs/results/infer_speed.jsonl holds no run")
    return runs


def _ratio(value: float | None, ratio: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ({ratio:.2f}x)"


def _context(start: dict, rows: list[dict], end: dict) -> str:
    threads = start["config"].get("threads") or start["torch_threads"]
    after = f" and {end['load_average_after'][0]:.1f} after" if end else ""
    matmul = sorted({round(r["matmul_gflop_per_s_b32"]) for r in rows if "matmul_gflop_per_s_b32" in r})
    models = ", ".join(dict.fromkeys(MODEL_NAMES.get(r["model"], r["model"]) for r in rows))
    return (f"{models}: run of {start['date'][:16].replace('T', ' ')}, {start.get('cpu_model', start['cpu'])} "
            f"({', '.join(start['cpu_flags'])}), {threads} thread(s) per engine, load average "
            f"{start['load_average_before'][0]:.1f} before{after}; a 2048² fp32 matmul on as many threads ran at "
            f"{' and '.join(map(str, matmul))} GFLOP/s.")


def infer_speed_table(entries: list[dict]) -> list[str]:
    """For each model, the engines of the latest run that measured it (a context line per run shown)."""
    latest: dict[str, tuple[dict, list[dict], dict]] = {}
    for start, rows, end in speed_runs(entries):
        for model in {r["model"] for r in rows}:
            latest[model] = (start, [r for r in rows if r["model"] == model], end)
    lines = [f"- {_context(*run)}" for run in latest.values()]
    lines += ["", "| model | engine | crops/s, batch 32 (x eager) | batch 1: p50 / p99 ms | of the matmul's GFLOP/s | "
              "extract end to end, crops/s (x model only) | max diff to eager |", "|" + "---|" * 7]
    for _, rows, _ in latest.values():
        for r in rows:
            latency = "-" if "latency_ms_p50_b1" not in r else \
                f"{r['latency_ms_p50_b1']:.1f} / {r['latency_ms_p99_b1']:.1f}"
            fraction = r.get("fraction_of_matmul_b32")
            lines.append(f"| {MODEL_NAMES.get(r['model'], r['model'])} | {r['engine']} | "
                         f"{_ratio(r.get('crops_per_s_b32'), r.get('ratio_vs_eager_b32'))} | {latency} | "
                         f"{'-' if fraction is None else f'{100 * fraction:.0f} %'} | "
                         f"{_ratio(r.get('extract_crops_per_s'), r.get('extract_over_model_only'))} | "
                         f"{r['max_abs_diff_vs_eager']:.1e} |")
    return lines


def int8_accuracy_table(entries: list[dict]) -> list[str]:
    """The latest run's INT8 rows: mAP and rank-1 with PyTorch fp32 and INT8, per engine and test set."""
    rows = [e for e in entries if "test_set" in e]
    if not rows:
        raise SystemExit("results_table: docs/results/int8_accuracy.jsonl holds no run")
    latest = [e for e in rows if e["time"] == rows[-1]["time"]]
    lines = ["| engine | test set | mAP fp32 -> INT8 (change) | rank-1 fp32 -> INT8 (change) | top-10 overlap |",
             "|" + "---|" * 5]
    for e in latest:
        lines.append(f"| {e['engine']} | {SET_NAMES.get(e['test_set'], e['test_set'])} | "
                     f"{100 * e['mAP_pytorch']:.1f} -> {100 * e['mAP']:.1f} ({e['mAP_change_points']:+.2f}) | "
                     f"{100 * e['rank1_pytorch']:.1f} -> {100 * e['rank1']:.1f} ({e['rank1_change_points']:+.2f}) | "
                     f"{100 * e['top10_overlap']:.0f} % |")
    return lines
