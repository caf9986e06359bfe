"""What the study scripts share: the repository's paths, the JSONL results files, and the shared data folder.

The study configs (``studies/configs/``) name no machine path. The runners take ``--shared DIR`` (default: the
``shared/`` folder next to the repository) holding ``data/market1501-devsplit``, ``data/viper`` and
``weights/mobilenet_v2_imagenet_features.pth``, and pass them as overrides placed before each row's own
overrides, so a row such as ``model.pretrained=none`` still wins.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))  # the studies run from a clone without an install too
RESULTS = ROOT / "docs" / "results"
DEFAULT_SHARED = ROOT.parent / "shared"
IN_DOMAIN, CROSS_DOMAIN = "market1501-devsplit", "viper"
# Rows recorded before the studies had their own folder name their config under benchmarks/.
FORMER_CONFIG_FOLDERS = ("benchmarks/configs/",)


def read_lines(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file, one per non-empty line; [] when the file does not exist."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def config_key(config: str) -> str:
    """A recorded row's config path as the runners name it now (studies/configs/...)."""
    for folder in FORMER_CONFIG_FOLDERS:
        if config.startswith(folder):
            return "studies/configs/" + config[len(folder):]
    return config


def add_shared_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help="folder holding data/market1501-devsplit, data/viper and weights/ "
                             f"(default: {DEFAULT_SHARED})")


def shared_paths(shared: Path) -> dict[str, Path]:
    """The devsplit, VIPeR and ImageNet MobileNetV2 weights under ``shared``; exits naming what is missing."""
    paths = {"devsplit": shared / "data" / IN_DOMAIN, "viper": shared / "data" / CROSS_DOMAIN,
             "weights": shared / "weights" / "mobilenet_v2_imagenet_features.pth"}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise SystemExit(f"missing under --shared {shared}: {', '.join(missing)}")
    return paths


# test sets -> the VIPeR dataset ranked with them (data/identity_halves.py) and whether the devsplit's test split is
TEST_SETS = {"test": ("viper", True),  # the devsplit test split and all of VIPeR
             "test_half": ("viper_test", True),  # the devsplit test split and VIPeR's test half
             "validation": ("viper_val", False)}  # VIPeR's validation half alone (a validation run's own split first)


def shared_overrides(shared: Path, test_sets: str = "test") -> list[str]:
    """Training data, ImageNet weights and the ``test_sets`` (a key of TEST_SETS) as overrides."""
    paths = shared_paths(shared)
    viper, devsplit = TEST_SETS[test_sets]
    datasets = [f"{{name: market1501, root: {paths['devsplit']}, label: {IN_DOMAIN}}}"] if devsplit else []
    datasets.append(f"{{name: {viper}, root: {paths['viper']}}}")
    return [f"data.root={paths['devsplit']}", f"model.pretrained={paths['weights']}",
            f"test.datasets=[{', '.join(datasets)}]"]


def train_run(config: str, overrides: list[str], out_dir: Path, label: str) -> dict:
    """One ``main.py`` training run in a subprocess (``config`` relative to the repository, then ``overrides``)
    into ``out_dir``, announced as ``label``; what a study row records of it: wall time, the run's summary,
    its ranked test sets and the fully resolved config it trained with."""
    import yaml

    cmd = [sys.executable, str(ROOT / "main.py"), "--config", str(ROOT / config), *overrides,
           f"output_dir={out_dir}", "--overwrite"]
    print(f"{label}: {' '.join(cmd[2:])}", flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.time() - start
    summary = json.loads((out_dir / "summary.json").read_text())
    return {"wall_s": round(wall, 1), "epochs": summary["epochs"], "train_s": summary.get("train_s"),
            "images_per_s": summary["images_per_s"], "threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "metrics": json.loads((out_dir / "metrics.json").read_text())["datasets"],
            "resolved_config": yaml.safe_load((out_dir / "config.yml").read_text())}
