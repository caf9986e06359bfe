"""extract_features images/s vs a bare decode + model.embed loop on the same images (one JSON).

    .venv/bin/python benchmarks/extract_speed.py [--backbone resnet18] [--images 256] [--batch-size 32]

Both sides decode the same generated JPEG files with the same test transform and run ``model.embed`` in
eval mode under ``torch.inference_mode`` in the main process (workers=0), batch by batch. The passes are
interleaved and repeated; the best pass of each side is reported, with the ratio ours / bare.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trytry_reid.data.datasets import Record
from trytry_reid.data.images import read_image
from trytry_reid.data.transforms import build_test_transform
from trytry_reid.evaluation.features import extract_features
from trytry_reid.models import ReidModel, build_backbone


def write_images(folder: Path, count: int, height: int, width: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, quality=90)
        records.append(Record(str(path), pid=i // 4 + 1, camid=i % 2))
    return records


def bare_pass(model, records, transform, batch_size: int) -> np.ndarray:
    """The reference: decode, transform, stack and embed, nothing else."""
    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(records), batch_size):
            batch = torch.stack([transform(read_image(r.path)) for r in records[start:start + batch_size]])
            out.append(model.embed(batch).numpy())
    return np.concatenate(out)


def timed(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    trunk, dim = build_backbone(args.backbone, last_stride=1)
    model = ReidModel(trunk, dim, num_classes=0).eval()
    transform = build_test_transform(args.height, args.width)
    with tempfile.TemporaryDirectory() as tmp:
        records = write_images(Path(tmp), args.images, args.height, args.width)
        bare_times, ours_times = [], []
        for _ in range(args.repeats):
            seconds, bare = timed(lambda: bare_pass(model, records, transform, args.batch_size))
            bare_times.append(seconds)
            seconds, ours = timed(lambda: extract_features(model, records, transform, batch_size=args.batch_size,
                                                           progress=False))
            ours_times.append(seconds)
    report = {"benchmark": "extract_speed", "backbone": args.backbone, "images": args.images,
              "batch_size": args.batch_size, "size": [args.height, args.width],
              "torch_threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg(),
              "bare_images_per_s": args.images / min(bare_times), "ours_images_per_s": args.images / min(ours_times),
              "ratio_ours_over_bare": min(bare_times) / min(ours_times),
              "max_abs_feature_diff": float(np.abs(bare - ours).max()),
              "note": "absolute times move with the machine's load; best of the interleaved passes"}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
