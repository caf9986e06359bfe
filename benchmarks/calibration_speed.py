"""Speed and peak memory of the verification calibration at Market scale (3,368 x 15,913 = 53.6 M pairs).

    python benchmarks/calibration_speed.py [--scale market|msmt|smoke] [--dim 512] [--sklearn]

Features are seeded clustered unit vectors (a noisy view of an identity centre each) with Market-like labels
(750 ids, 6 cameras, 2,793 gallery distractors), so the ROC is a realistic curve, not chance. Each
implementation runs in its own subprocess; peak memory is the kernel's resident high-water mark (VmHWM, reset
through /proc/self/clear_refs just before the call, so set-up transients do not count) minus the RSS at that
moment (features, and for ``distmat`` the [Q, G] matrix, already allocated; freed heap memory trimmed first).
Printed as one JSON document:

* ``distmat``: ``pair_histograms`` over a precomputed float32 [Q, G] matrix (what an evaluation already has)
  + ``calibrate`` (ROC, AUC, EER, TPR at 1e-2/1e-3/1e-4);
* ``features``: ``pair_histograms_from_features``, distances computed chunk by chunk, no [Q, G] matrix;
* ``sklearn`` (``--sklearn``, the anchor "a list of pairs"): the kept pairs' labels and distances as arrays,
  ``roc_curve`` + ``roc_auc_score``; its AUC and TPR@1e-3 are compared with ours (``agreement``).
* ``overhead`` (in process): at devsplit scale (1,076 x 3,218, 1,280-d) the seconds ``evaluate_rank``, the
  calibration and the TensorBoard figure take, i.e. what calibrating adds to each training evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SCALES, current_rss_mb, make_labels  # noqa: E402

IMPLS = ("distmat", "features", "sklearn")
NOISE = 3.0  # per-dimension noise around a unit-variance centre: same-person cosine ~0.1, a realistic AUC


def reset_peak() -> float:
    """Give freed heap memory back (so reused set-up garbage cannot hide the call's own buffers), reset the
    resident high-water mark (Linux >= 4.0) and return the RSS now, in MiB."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return current_rss_mb()


def peak_rss_mb() -> float:
    """VmHWM: the most resident memory since the last reset_peak(), in MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_features(scale: str, dim: int, seed: int = 0):
    """Clustered unit features for Market-like labels; distractors get their own random centers."""
    spec = SCALES[scale]
    q_pids, g_pids, q_cams, g_cams = make_labels(**spec, seed=seed)
    rng = np.random.default_rng(seed + 2)
    centers = rng.standard_normal((spec["num_ids"] + 1, dim), dtype=np.float32)

    def views(pids):
        out = centers[pids] + NOISE * rng.standard_normal((len(pids), dim), dtype=np.float32)
        out[pids == 0] = rng.standard_normal((int((pids == 0).sum()), dim), dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return views(q_pids), views(g_pids), (q_pids, g_pids, q_cams, g_cams)


def run_ours(impl: str, qf, gf, labels) -> dict:
    from trytry_reid.evaluation.calibration import calibrate
    from trytry_reid.evaluation.distance import compute_distance
    from trytry_reid.evaluation.pair_histograms import pair_histograms, pair_histograms_from_features

    distmat = compute_distance(qf, gf, metric="cosine", chunk_size=256) if impl == "distmat" else None
    before, start = reset_peak(), time.perf_counter()
    hist = pair_histograms(distmat, *labels) if impl == "distmat" else \
        pair_histograms_from_features(qf, gf, *labels, metric="cosine")
    counted = time.perf_counter() - start
    calibration = calibrate(hist)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "histogram_seconds": counted, "peak_extra_mb": peak_rss_mb() - before,
            "auc": calibration.auc, "auc_error_bound": calibration.auc_error_bound,
            "tpr_at_1e-3": calibration.at(1e-3).tpr, "tpr_error_bound_at_1e-3": calibration.at(1e-3).tpr_error_bound,
            "eer": calibration.eer, "num_positive": hist.num_positive, "num_negative": hist.num_negative,
            "distmat_mb": 0.0 if distmat is None else distmat.nbytes / 2**20}


def run_sklearn(qf, gf, labels) -> dict:
    from sklearn.metrics import roc_auc_score, roc_curve

    from trytry_reid.evaluation.distance import compute_distance

    q_pids, g_pids, q_cams, g_cams = labels
    distmat = compute_distance(qf, gf, metric="cosine", chunk_size=256)
    before, start = reset_peak(), time.perf_counter()
    same = (q_pids[:, None] == g_pids[None, :]) & (g_pids[None, :] != 0)
    kept = ~(same & (q_cams[:, None] == g_cams[None, :]))
    y, score = same[kept], -distmat[kept]
    auc = roc_auc_score(y, score)
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    return {"seconds": time.perf_counter() - start, "peak_extra_mb": peak_rss_mb() - before, "auc": float(auc),
            "tpr_at_1e-3": float(tpr[fpr <= 1e-3].max()), "distmat_mb": distmat.nbytes / 2**20}


def worker(impl: str, scale: str, dim: int, out: Path) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    qf, gf, labels = make_features(scale, dim)
    result = run_sklearn(qf, gf, labels) if impl == "sklearn" else run_ours(impl, qf, gf, labels)
    out.write_text(json.dumps(result))


def measure(impl: str, scale: str, dim: int, timeout: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--worker", impl, "--scale", scale, "--dim", str(dim), "--out", str(out)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        if done.returncode or not out.exists():
            return {"error": done.stderr[-800:]}
        return json.loads(out.read_text())


def evaluation_overhead(seed: int = 0) -> dict:
    """Devsplit scale: what a training evaluation spends on ranking vs on calibrating (+ its figure)."""
    from trytry_reid.evaluation import evaluate_rank
    from trytry_reid.evaluation.calibration import calibrate
    from trytry_reid.evaluation.distance import compute_distance
    from trytry_reid.evaluation.pair_histograms import pair_histograms
    from trytry_reid.visualization.calibration_plot import calibration_array

    SCALES["devsplit"] = dict(num_q=1076, num_g=3218, num_ids=246, num_cams=6, num_distractors=0)
    qf, gf, labels = make_features("devsplit", 1280, seed)
    distmat = compute_distance(qf, gf, metric="cosine")
    timings = {}
    start = time.perf_counter()
    evaluate_rank(distmat, *labels)
    timings["evaluate_rank_s"] = time.perf_counter() - start
    start = time.perf_counter()
    calibration = calibrate(pair_histograms(distmat, *labels))
    timings["calibration_s"] = time.perf_counter() - start
    start = time.perf_counter()
    calibration_array({"devsplit": calibration}, calibration.at(1e-3).threshold)
    timings["tensorboard_figure_s"] = time.perf_counter() - start
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="market", choices=sorted(SCALES))
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sklearn", action="store_true", help="also run the list-of-pairs sklearn anchor")
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.scale, args.dim, args.out)
        return
    spec = SCALES[args.scale]
    report = {"scale": args.scale, "pairs": spec["num_q"] * spec["num_g"], "dim": args.dim,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    for impl in IMPLS if args.sklearn else IMPLS[:2]:
        report[impl] = measure(impl, args.scale, args.dim, args.timeout)
    if args.sklearn and "error" not in report["sklearn"]:
        report["agreement"] = {impl: {"auc_diff": abs(report[impl]["auc"] - report["sklearn"]["auc"]),
                                      "auc_error_bound": report[impl]["auc_error_bound"],
                                      "tpr_at_1e-3_diff":
                                          report["sklearn"]["tpr_at_1e-3"] - report[impl]["tpr_at_1e-3"],
                                      "tpr_error_bound": report[impl]["tpr_error_bound_at_1e-3"]}
                               for impl in IMPLS[:2] if "error" not in report[impl]}
    report["overhead"] = evaluation_overhead()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
