"""onnxruntime (CPU) vs PyTorch embedding throughput for the same model, measured in the same run.

    python benchmarks/onnx_speed.py [--checkpoint CKPT | --backbone resnet50] [--batch 16] [--batches 4]

Without a checkpoint the model is built untrained from ``--backbone`` (speed does not depend on weights).
Both runtimes get the same random input batches; images/s counts the forward pass only (no decoding).
JSON on stdout: images/s for each, their ratio, and the max |difference| of the embeddings.
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

from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD
from trytry_reid.models import build_reid_model
from trytry_reid.serving.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from trytry_reid.serving.inference import LoadedModel, load_model


def untrained_model(backbone: str, height: int, width: int) -> LoadedModel:
    config = {"model": {"backbone": backbone, "last_stride": 1, "embedding_dim": 0, "bnneck": True,
                        "pooling": "avg"},
              "data": {"height": height, "width": width, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}
    model = build_reid_model(num_classes=0, **config["model"]).eval()
    return LoadedModel(model, height, width, tuple(IMAGENET_MEAN), tuple(IMAGENET_STD), config)


def images_per_second(run, batches: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    run(batches[0])                                                    # warm-up
    start = time.perf_counter()
    outputs = [run(batch) for batch in batches]
    return sum(len(b) for b in batches) / (time.perf_counter() - start), outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    import onnxruntime

    loaded = load_model(args.checkpoint) if args.checkpoint else \
        untrained_model(args.backbone, args.height, args.width)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((args.batch, 3, loaded.height, loaded.width), dtype=np.float32)
               for _ in range(args.batches)]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(loaded, Path(tmp) / "model.onnx")
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

        def torch_run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return loaded.model.embed(torch.from_numpy(batch)).numpy()

        torch_ips, torch_out = images_per_second(torch_run, batches)
        onnx_ips, onnx_out = images_per_second(lambda b: session.run([OUTPUT_NAME], {INPUT_NAME: b})[0], batches)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(torch_out, onnx_out))
    print(json.dumps({"model": str(args.checkpoint or args.backbone), "input": [loaded.height, loaded.width],
                      "batch": args.batch, "batches": args.batches, "torch_threads": torch.get_num_threads(),
                      "cpu_count": os.cpu_count(), "torch_images_per_s": torch_ips,
                      "onnxruntime_images_per_s": onnx_ips, "onnxruntime_over_torch": onnx_ips / torch_ips,
                      "max_abs_diff": diff}, indent=2))


if __name__ == "__main__":
    main()
