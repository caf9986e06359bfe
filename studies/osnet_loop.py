"""OSNet trained in this project's loop from random init, beside the CPU recipe's MobileNetV2 from ImageNet, on the
validation split at the recipe's 12-epoch budget (issue 26 item 7; docs/MODEL_ZOO.md, "Training OSNet here").

    python studies/osnet_loop.py --data /path/to/market1501-devsplit --imagenet /path/to/mobilenet_v2.pth
        [--rows mobilenet_v2 osnet_x0_25 osnet_x1_0] [--record]

Every row is config/mobilenet_market_cpu.yml (the shipped recipe: 128x64, 12 epochs, lr 1e-3, last stride 1,
colour jitter 0.2, oneDNN bf16, the mean of the last 8 epochs' weights) with the validation overrides of the
recipe study (studies/accuracy_rows.py VALIDATION: 401 training ids, 100 held out, no test sets) and one
change: the backbone (OSNet trunks have no ImageNet weights here, so they start from random init). Each row is
one `main.py` run in a subprocess; one JSON line per row (wall time, training images/s, validation metrics,
the resolved config) goes to docs/results/osnet_loop.jsonl with --record.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from accuracy_rows import VALIDATION
from common import ROOT, train_run

RESULTS = ROOT / "docs" / "results" / "osnet_loop.jsonl"
CONFIG = "config/mobilenet_market_cpu.yml"
ROWS = {
    "mobilenet_v2": ["model.backbone=mobilenet_v2"],                 # + model.pretrained=<ImageNet file>
    "osnet_x0_25": ["model.backbone=osnet_x0_25", "model.pretrained=none"],
    "osnet_x1_0": ["model.backbone=osnet_x1_0", "model.pretrained=none"],
}


def run_row(name: str, data: Path, imagenet: Path | None, seed: int, out_root: Path) -> dict:
    overrides = [f"data.root={data}", *ROWS[name], *VALIDATION, f"train.seed={seed}"]
    if name == "mobilenet_v2":
        if imagenet is None:
            raise SystemExit("the mobilenet_v2 row needs --imagenet FILE (torchvision's MobileNetV2 weights)")
        overrides.append(f"model.pretrained={imagenet}")
    run = train_run(CONFIG, overrides, out_root / f"{name}-seed{seed}", f"[osnet_loop] {name}")
    return {"row": name, "config": CONFIG, "overrides": overrides, "seed": seed, "epochs": run["epochs"],
            "wall_s": run["wall_s"], "train_s": run["train_s"], "images_per_s": run["images_per_s"],
            "threads": run["threads"], "load_average_after": os.getloadavg(), "metrics": run["metrics"],
            "resolved_config": run["resolved_config"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the Market-1501 (devsplit) folder")
    parser.add_argument("--imagenet", type=Path, help="MobileNetV2 ImageNet weights (torchvision names)")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "osnet_loop")
    parser.add_argument("--record", action="store_true", help=f"append the JSON lines to {RESULTS}")
    args = parser.parse_args()
    for name in args.rows:
        row = run_row(name, args.data, args.imagenet, args.seed, args.out)
        print(json.dumps({k: v for k, v in row.items() if k != "resolved_config"}), flush=True)
        if args.record:
            with RESULTS.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
