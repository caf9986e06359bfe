"""INT8 against fp32 for one trained checkpoint: mAP, rank-1 and top-10 agreement per engine and test set.

    python studies/int8_accuracy.py --checkpoint runs/x/checkpoints/best.pt [--shared DIR] [--record]

For each format (onnx, openvino) the checkpoint is exported twice through the `export` job, as users run it:
fp32 (checked for parity on 256 devsplit query crops) and INT8 (calibrated on ``--calibration-count`` crops of
the devsplit's training split, then measured on the devsplit and VIPeR). One JSON line per (engine, test set):
mAP and rank-1 with PyTorch fp32 and with the INT8 model, their change in points and the top-10 agreement;
plus one per fp32 export with its parity figures. ``--record`` appends them to docs/results/int8_accuracy.jsonl.
The checkpoint is only read.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from trytry_reid.jobs.commands import checkpoint_config
from trytry_reid.jobs.export import run_export

from common import RESULTS, add_shared_argument, shared_overrides, shared_paths

FORMATS = {"onnx": ".onnx", "openvino": ".xml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--calibration-count", type=int, default=300)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--record", action="store_true", help="append the lines to docs/results/int8_accuracy.jsonl")
    add_shared_argument(parser)
    args = parser.parse_args()
    paths = shared_paths(args.shared)
    devsplit = paths["devsplit"]
    args.calibration_images, args.parity_images = devsplit / "bounding_box_train", devsplit / "query"
    overrides = shared_overrides(args.shared)
    config = lambda: checkpoint_config(args.checkpoint, overrides)  # noqa: E731
    common = {"study": "int8_accuracy", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "checkpoint": str(args.checkpoint), "calibration": "devsplit bounding_box_train",
              "calibration_count": args.calibration_count, "load_average": list(os.getloadavg())}
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            out = Path(tmp) / f"fp32{FORMATS[fmt]}"
            _, _, report = run_export(args.checkpoint, out, fmt, check_images=args.parity_images)
            if report is not None:
                lines.append({**common, "format": fmt, "precision": "fp32", **report["check_images"]})
            start = time.perf_counter()
            _, _, report = run_export(args.checkpoint, Path(tmp) / f"int8{FORMATS[fmt]}", fmt, int8=True,
                                      calibration_images=args.calibration_images,
                                      calibration_count=args.calibration_count, test_config=config,
                                      max_map_drop=100.0)
            seconds = time.perf_counter() - start
            for row in report["test_sets"]:
                lines.append({**common, "format": fmt, **row, "export_and_check_seconds": seconds})
    text = "\n".join(json.dumps(line) for line in lines)
    print(text)
    if args.record:
        with open(RESULTS / "int8_accuracy.jsonl", "a") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
