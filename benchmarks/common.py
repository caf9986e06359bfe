"""What several benchmarks share: the JSON header and record of a speed result, interleaved timing, resident
memory, Market-like labels at a few scales, and the anchor environment of the peers' evaluators.

Imports only the standard library and numpy at the top: eval_speed.py's workers run in the anchor environment
(``.bench-venv``), which has no torch.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ANCHORS = {"torchreid": ("torchreid==0.2.5", "torchreid-0.2.5", "torchreid/reid/metrics"),
           "fastreid": ("fastreid==1.4.0", "fastreid-1.4.0", "fastreid/evaluation")}
SCALES = {"market": dict(num_q=3368, num_g=15913, num_ids=750, num_cams=6, num_distractors=2793),
          "msmt": dict(num_q=11659, num_g=82161, num_ids=3060, num_cams=15, num_distractors=0),
          "smoke": dict(num_q=300, num_g=2000, num_ids=100, num_cams=6, num_distractors=200)}


def make_labels(num_q, num_g, num_ids, num_cams, num_distractors, seed=0):
    """Market-like labels: every id in the query set, gallery ids cycled, distractors (pid 0), random cams."""
    rng = np.random.default_rng(seed)
    q_pids = rng.permutation(np.resize(np.arange(1, num_ids + 1), num_q)).astype(np.int64)
    g_pids = rng.permutation(np.concatenate([np.resize(np.arange(1, num_ids + 1), num_g - num_distractors),
                                             np.zeros(num_distractors, dtype=np.int64)])).astype(np.int64)
    return q_pids, g_pids, rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_by_path(name: str, path: Path):
    import importlib.machinery
    import importlib.util
    loader = (importlib.machinery.ExtensionFileLoader(name, str(path)) if path.suffix == ".so" else None)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def anchor_dir(venv: Path, anchor: str) -> Path:
    _, folder, sub = ANCHORS[anchor]
    return venv / "anchors" / folder / sub


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *args, "--quiet",
                           "--disable-pip-version-check"], capture_output=True, text=True)


def ensure_anchors(venv: Path) -> dict:
    """Create the anchor venv once, fetch both sdists, build each Cython rank_cylib. Returns a status dict."""
    status = {}
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if pip(venv, "install", "numpy", "cython", "setuptools").returncode:
        return {a: {"error": "pip install numpy cython setuptools failed in the anchor venv"} for a in ANCHORS}
    for anchor, (requirement, folder, _) in ANCHORS.items():
        status[anchor] = _prepare_anchor(venv, anchor, requirement, folder)
    return status


def _prepare_anchor(venv: Path, anchor: str, requirement: str, folder: str) -> dict:
    downloads = venv / "anchors"
    if not (downloads / folder).exists():
        got = pip(venv, "download", "--no-deps", "--no-binary", ":all:", requirement, "-d", str(downloads))
        if got.returncode:
            return {"python": False, "cython": False, "why": f"pip download {requirement} failed: {got.stderr[-300:]}"}
        with tarfile.open(downloads / f"{folder}.tar.gz") as tar:
            tar.extractall(downloads, filter="data")
    cylib = anchor_dir(venv, anchor) / "rank_cylib"
    info = {"python": (anchor_dir(venv, anchor) / "rank.py").exists(), "cython": False}
    if list(cylib.glob("rank_cy*.so")):
        info["cython"] = True
    elif not (cylib / "rank_cy.pyx").exists():
        info["why"] = (f"the {requirement} sdist ships {cylib.relative_to(downloads)}/setup.py but no rank_cy.pyx, "
                       "so its Cython evaluator cannot be built; only its pure-Python evaluator is measured")
    else:
        built = subprocess.run([str(venv / "bin" / "python"), "setup.py", "build_ext", "--inplace"], cwd=cylib,
                               capture_output=True, text=True)
        info["cython"] = built.returncode == 0 and bool(list(cylib.glob("rank_cy*.so")))
        if not info["cython"]:
            info["why"] = f"building rank_cylib failed: {built.stderr[-400:]}"
    return info


def timed(step: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - wall, time.process_time() - cpu


def result_header(config: dict, load_before: tuple[float, float, float]) -> dict:
    """The fields every speed benchmark's JSON opens with: when, on what, with which settings, under what load."""
    import torch

    return {"date": datetime.now().isoformat(timespec="seconds"), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "config": config,
            "load_average_before": load_before, "load_average_after": os.getloadavg()}


def print_and_record(result: dict, results: Path, record: bool) -> None:
    """Print ``result`` as JSON; with ``record``, also append it as one line to ``results``."""
    print(json.dumps(result, indent=2))
    if record:
        with results.open("a") as handle:
            handle.write(json.dumps(result) + "\n")


def interleaved_medians(steps: dict[str, Callable[[], None]], iters: int,
                        warmup: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per step of each variant; every round runs each variant once, in turn."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(iters):
        for name, step in steps.items():
            times[name].append(timed(step))
    return {name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
            for name, values in times.items()}
