"""rerank() vs fastreid 1.4.0's re_ranking at Market-1501 scale: time, peak memory, equality (one JSON).

    .venv/bin/python benchmarks/rerank_speed.py [--dim 512] [--scale market|smoke]

Features: seeded identity clusters with Market's label structure (3,368 queries, 15,913 gallery images incl.
distractors), L2-normalised. fastreid's re_ranking takes the q-g, q-q and g-g Euclidean distance matrices, so
its worker computes them first (timed separately, ``distance_seconds``); ours starts from the features and its
time includes its own distance work. Each side runs in its own subprocess (the anchor in the .bench-venv that
eval_speed.py prepares); peak memory is ru_maxrss minus the RSS just before the call.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SCALES, anchor_dir, current_rss_mb, ensure_anchors, load_by_path, make_labels, peak_rss_mb  # noqa: E402


def make_features(scale: str, dim: int, seed: int = 0):
    """Clustered, L2-normalised float32 features and their labels."""
    labels = make_labels(**SCALES[scale], seed=seed)
    q_pids, g_pids = labels[0], labels[1]
    rng = np.random.default_rng(seed + 2)
    centers = rng.normal(size=(int(max(q_pids.max(), g_pids.max())) + 1, dim)).astype(np.float32)
    feats = [centers[p] + 2.5 * rng.normal(size=(len(p), dim)).astype(np.float32) for p in (q_pids, g_pids)]
    feats[1][g_pids == 0] = rng.normal(size=(int((g_pids == 0).sum()), dim))  # distractors: anywhere
    qf, gf = (f / np.linalg.norm(f, axis=1, keepdims=True) for f in feats)
    return qf.astype(np.float32), gf.astype(np.float32), labels


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d, 0)).astype(np.float32)


def worker(impl: str, scale: str, dim: int, venv: Path, out_dir: Path) -> None:
    qf, gf, _ = make_features(scale, dim)
    result = {}
    if impl == "ours":
        from trytry_reid.evaluation.rerank import rerank
        before = current_rss_mb()
        start = time.perf_counter()
        final = rerank(qf, gf)
    else:
        re_ranking = load_by_path("fastreid_rerank", anchor_dir(venv, "fastreid") / "rerank.py").re_ranking
        start = time.perf_counter()
        q_g, q_q, g_g = euclidean(qf, gf), euclidean(qf, qf), euclidean(gf, gf)
        result["distance_seconds"] = time.perf_counter() - start
        before = current_rss_mb()
        start = time.perf_counter()
        final = re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3)
    result.update(seconds=time.perf_counter() - start, peak_extra_mb=peak_rss_mb() - before, rss_before_mb=before)
    np.save(out_dir / f"{impl}.npy", final)
    (out_dir / f"{impl}.json").write_text(json.dumps(result))


def measure(impl: str, scale: str, dim: int, venv: Path, out_dir: Path, timeout: int) -> dict:
    python = sys.executable if impl == "ours" else str(venv / "bin" / "python")
    cmd = [python, __file__, "--worker", impl, "--scale", scale, "--dim", str(dim), "--bench-venv", str(venv),
           "--out", str(out_dir)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if done.returncode:
        return {"error": done.stderr[-500:]}
    return json.loads((out_dir / f"{impl}.json").read_text())


def metrics(distmat: np.ndarray, labels) -> dict:
    from trytry_reid.evaluation import evaluate_rank
    out = evaluate_rank(distmat, *labels, max_rank=10)
    return {"rank1": float(out["cmc"][0]), "rank5": float(out["cmc"][4]), "mAP": out["mAP"], "mINP": out["mINP"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["market", "smoke"], default="market")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--bench-venv", type=Path, default=REPO / ".bench-venv")
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.scale, args.dim, args.bench_venv, args.out)
    status = ensure_anchors(args.bench_venv)["fastreid"]
    report = {"benchmark": "rerank_speed", "scale": args.scale, "dim": args.dim, "anchor": status,
              "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
              "note": "absolute times move with the machine's load; ratios are measured in the same run"}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        results = {impl: measure(impl, args.scale, args.dim, args.bench_venv, out_dir, args.timeout)
                   for impl in ("ours", "fastreid")}
        report["results"] = results
        if all("error" not in r for r in results.values()):
            labels = make_features(args.scale, 2)[2]
            ours, anchor = np.load(out_dir / "ours.npy"), np.load(out_dir / "fastreid.npy")
            diff = np.abs(ours - anchor)
            report["max_abs_matrix_diff"] = float(diff.max())
            report["fraction_of_entries_differing_over_1e-5"] = float((diff > 1e-5).mean())
            report["metrics"] = {"ours": metrics(ours, labels), "fastreid": metrics(anchor, labels)}
            report["speedup"] = results["fastreid"]["seconds"] / results["ours"]["seconds"]
            report["peak_memory_ratio"] = results["ours"]["peak_extra_mb"] / results["fastreid"]["peak_extra_mb"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
