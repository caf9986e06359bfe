"""evaluate_rank vs the torchreid 0.2.5 / fastreid 1.4.0 evaluators: time, peak memory, equality (one JSON).

    .venv/bin/python benchmarks/eval_speed.py [--scale market|msmt|both] [--skip-python-anchors]

The anchors live in their own environment (``.bench-venv``, gitignored), created on first use: pip downloads
the two sdists, the Cython ``rank_cylib`` is built with Cython there, and the rank modules are loaded from
the unpacked sources by path (importing the packages themselves would pull in torch and their model zoos).
Every implementation runs in its own subprocess on the same seeded random distance matrix; peak memory is the
subprocess's ru_maxrss minus its RSS just before the call (the distance matrix is already allocated then).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (
    ANCHORS,
    REPO,
    SCALES,
    anchor_dir,
    current_rss_mb,
    ensure_anchors,
    load_by_path,
    make_labels,
    peak_rss_mb,
)

MAX_RANK = 50


def make_case(scale: str, seed: int = 0):
    spec = SCALES[scale]
    labels = make_labels(**spec, seed=seed)
    dist = np.random.default_rng(seed + 1).random((spec["num_q"], spec["num_g"]), dtype=np.float32)
    return dist, labels


def prepare(impl: str, venv: Path):
    """Import one implementation (outside the timed region); returns f(dist, labels) -> {cmc, mAP[, mINP]}."""
    if impl == "ours":
        from trytry_reid.evaluation import evaluate_rank

        def ours(dist, labels):
            out = evaluate_rank(dist, *labels, max_rank=MAX_RANK)
            return {"cmc": out["cmc"].tolist(), "mAP": out["mAP"], "mINP": out["mINP"]}
        return ours
    anchor, kind = impl.rsplit("_", 1)
    folder = anchor_dir(venv, anchor)
    if kind == "cython":
        cy = load_by_path("rank_cy", next((folder / "rank_cylib").glob("rank_cy*.so")))
        return lambda dist, labels: _anchor_output(cy.evaluate_cy(dist, *labels, MAX_RANK, False))
    module = load_by_path(f"{anchor}_rank", folder / "rank.py")
    return lambda dist, labels: _anchor_output(module.eval_market1501(dist, *labels, MAX_RANK))


def _anchor_output(result) -> dict:
    """(cmc, mAP) from torchreid, (cmc, all_AP, all_INP) from fastreid."""
    out = {"cmc": np.asarray(result[0], dtype=np.float64).tolist()}
    out["mAP"] = float(np.mean(result[1])) if len(result) == 3 else float(result[1])
    if len(result) == 3:
        out["mINP"] = float(np.mean(result[2]))
    return out


def worker(impl: str, scale: str, venv: Path, out_path: Path) -> None:
    evaluate = prepare(impl, venv)
    dist, labels = make_case(scale)
    before = current_rss_mb()
    start = time.perf_counter()
    result = evaluate(dist, labels)
    result.update(seconds=time.perf_counter() - start, peak_extra_mb=peak_rss_mb() - before,
                  rss_before_mb=before, distmat_mb=dist.nbytes / 2**20)
    out_path.write_text(json.dumps(result))


def measure(impl: str, scale: str, venv: Path, timeout: int) -> dict:
    python = sys.executable if impl == "ours" else str(venv / "bin" / "python")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [python, __file__, "--worker", impl, "--scale", scale, "--bench-venv", str(venv), "--out", str(out)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        if done.returncode or not out.exists():
            return {"error": done.stderr[-500:]}
        return json.loads(out.read_text())


def compare(ours: dict, other: dict) -> dict:
    if "error" in other or "error" in ours:
        return {}
    out = {"max_abs_cmc_diff": float(np.max(np.abs(np.array(ours["cmc"]) - np.array(other["cmc"])))),
           "abs_mAP_diff": abs(ours["mAP"] - other["mAP"]), "speedup": other["seconds"] / ours["seconds"]}
    if "mINP" in other:
        out["abs_mINP_diff"] = abs(ours["mINP"] - other["mINP"])
    return out


def run_scale(scale: str, impls: list[str], venv: Path, timeout: int) -> dict:
    results = {impl: measure(impl, scale, venv, timeout) for impl in impls}
    ours = results["ours"]
    report = {"shape": [SCALES[scale]["num_q"], SCALES[scale]["num_g"]], "results": {}, "vs_ours": {}}
    for impl, res in results.items():
        report["results"][impl] = {k: v for k, v in res.items() if k != "cmc"} | (
            {"rank1": res["cmc"][0]} if "cmc" in res else {})
        if impl != "ours":
            report["vs_ours"][impl] = compare(ours, res)
    cython = [res["seconds"] for impl, res in results.items() if impl.endswith("_cython") and "seconds" in res]
    if cython and "seconds" in ours:
        report["speedup_vs_fastest_cython"] = min(cython) / ours["seconds"]
        report["ours_extra_memory_within_distmat_plus_1GiB"] = ours["peak_extra_mb"] <= 1024 + ours["distmat_mb"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["market", "msmt", "both", "smoke"], default="market")
    parser.add_argument("--skip-python-anchors", action="store_true", help="only the Cython anchors")
    parser.add_argument("--bench-venv", type=Path, default=REPO / ".bench-venv")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per implementation run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.scale, args.bench_venv, args.out)
    status = ensure_anchors(args.bench_venv)
    impls = ["ours"] + [f"{a}_cython" for a in ANCHORS if status[a].get("cython")]
    if not args.skip_python_anchors:
        impls += [f"{a}_python" for a in ANCHORS if status[a].get("python")]
    scales = ["market", "msmt"] if args.scale == "both" else [args.scale]
    report = {"benchmark": "eval_speed", "anchors": status, "cpu_count": os.cpu_count(),
              "load_average_at_start": os.getloadavg(),
              "note": "absolute times move with the machine's load; ratios are measured in the same run",
              "scales": {scale: run_scale(scale, impls, args.bench_venv, args.timeout) for scale in scales}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
