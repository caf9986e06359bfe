"""CPU inference of every engine side by side, in one process: crops/s at batch 1, 8, 32 and 128, batch-1
latency p50/p99, achieved GFLOP/s against a plain fp32 matmul measured in the same run, and end-to-end
extraction of a real folder; each engine as a ratio to PyTorch fp32 eager measured interleaved with it.

    .venv/bin/python benchmarks/infer_speed.py [--quick] [--models mobilenet_v2 resnet50]
        [--images /path/to/market1501/bounding_box_test] [--record]

Engines: PyTorch fp32 eager (``model.embed`` as trained), with BatchNorm folded (NCHW), optimised (folded +
channels_last: the torch engine extraction runs), TorchScript-frozen (headroom, not shipped), the optimised
copy under bf16 autocast (oneDNN bf16 kernels; CPUs with avx512_bf16 or AMX), onnxruntime fp32 / INT8 and
OpenVINO fp32 / INT8 (the files ``export`` writes), and OpenVINO with its CPU default bf16 inference precision
(not fp32-exact: its ``max_abs_diff_vs_eager`` says by how much). Weights are untrained (speed does not depend
on them); INT8 models are calibrated on 100 crops of ``--images``. Model-only inputs are real crops of
``--images``, decoded once. Blocks of calls of each engine alternate, round after round; crops/s is from the
median call (``crops_per_s_best_*``: the fastest call). A header line names the machine (CPU flags, threads,
load average); then one JSON line per (model, engine), printed as soon as its model is measured, with the
matmul's GFLOP/s of each batch size's rounds and the load average; an end line closes the run. ``--record``
appends the lines to docs/results/infer_speed.jsonl as they come.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trytry_reid.data.images import read_image
from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD
from trytry_reid.models import BACKBONES, build_reid_model
from trytry_reid.serving.folder_images import find_images
from trytry_reid.serving.inference import LoadedModel

from common import REPO, result_header
from infer_engines import build_engines, extract_speed, model_gflop

SIZES = {"resnet50": (256, 128), "mobilenet_v2": (128, 64), "osnet_x0_25": (256, 128)}  # those BACKBONES has
BATCHES = (1, 8, 32, 128)
END_TO_END = ("pytorch_fp32_eager", "pytorch_fp32_optimised", "onnx_fp32", "onnx_int8", "openvino_fp32",
              "openvino_int8")    # the engines measured end to end: the reference and what `extract` runs
MATMUL_N = 2048


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return sorted(set(re.findall(r"\b(avx2|avx512f|avx512_bf16|avx512_vnni|amx_tile|amx_bf16|amx_int8)\b", text)))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def untrained(backbone: str) -> LoadedModel:
    height, width = SIZES[backbone]
    config = {"model": {"backbone": backbone, "last_stride": 1, "embedding_dim": 0, "bnneck": True,
                        "pooling": "avg"},
              "data": {"height": height, "width": width, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}
    torch.manual_seed(0)
    model = build_reid_model(num_classes=0, **config["model"]).eval()
    for module in model.modules():      # BatchNorm statistics away from the identity, as in a trained model
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return LoadedModel(model, height, width, tuple(IMAGENET_MEAN), tuple(IMAGENET_STD), config)


def real_batch(loaded: LoadedModel, paths: list[Path], size: int) -> torch.Tensor:
    transform = loaded.transform()
    crops = [transform(read_image(str(p))) for p in paths[:size]]
    return torch.stack([crops[i % len(crops)] for i in range(size)])


def matmul_run():
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    return lambda: torch.mm(a, b)


def timed_calls(run, inputs, min_seconds: float, min_calls: int, max_seconds: float) -> list[float]:
    """Per-call seconds of at least ``min_calls`` calls (unless that would take over ``max_seconds``) lasting
    at least ``min_seconds`` together."""
    times, start = [], time.perf_counter()
    while (len(times) < min_calls and time.perf_counter() - start < max_seconds) or \
            time.perf_counter() - start < min_seconds or not times:
        begin = time.perf_counter()
        run(inputs)
        times.append(time.perf_counter() - begin)
    return times


def interleaved(runs: dict, inputs, rounds: int, min_seconds: float, min_calls: int = 1,
                max_seconds: float = 10.0) -> dict[str, list[float]]:
    """Per-call seconds of each run, blocks of calls alternating over ``rounds`` rounds (after one warm-up
    call each); a short pause between blocks lets other runtimes' spinning threads go idle."""
    for run in runs.values():
        run(inputs)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(0.05)
            times[name] += timed_calls(run, inputs, min_seconds, min_calls, max_seconds)
    return times


def measure_model(backbone: str, images: list[Path], args) -> list[dict]:
    loaded = untrained(backbone)
    gflop = model_gflop(loaded)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines = build_engines(loaded, images, Path(tmp), calibration_count=100, threads=args.threads)
        reference = real_batch(loaded, images, 32)
        with torch.inference_mode():
            eager_out = loaded.model.embed(reference).numpy()
        for name, engine in engines.items():
            out = np.asarray(engine.run(reference))
            rows[name] = {"model": backbone, "input": list(SIZES[backbone]), "engine": name,
                          "gflop_per_crop": gflop, "max_abs_diff_vs_eager": float(np.abs(out - eager_out).max())}
        mm = matmul_run()
        for batch in args.batches:
            inputs = real_batch(loaded, images, batch)
            runs = {name: engine.run for name, engine in engines.items()}
            runs["matmul"] = lambda _inputs: mm()
            seconds = interleaved(runs, inputs, args.rounds, args.block_seconds,
                                  min_calls=args.latency_calls // args.rounds if batch == 1 else 1)
            matmul = 2 * MATMUL_N ** 3 / np.median(seconds.pop("matmul")) / 1e9
            eager = batch / np.median(seconds["pytorch_fp32_eager"])
            for name, calls in seconds.items():
                speed = batch / np.median(calls)
                rows[name][f"crops_per_s_b{batch}"] = speed
                rows[name][f"crops_per_s_best_b{batch}"] = batch / min(calls)
                rows[name][f"ratio_vs_eager_b{batch}"] = speed / eager
                rows[name][f"gflop_per_s_b{batch}"] = speed * gflop
                rows[name][f"matmul_gflop_per_s_b{batch}"] = matmul
                rows[name][f"fraction_of_matmul_b{batch}"] = speed * gflop / matmul
                if batch == 1:
                    rows[name]["latency_ms_p50_b1"] = 1e3 * float(np.percentile(calls, 50))
                    rows[name]["latency_ms_p99_b1"] = 1e3 * float(np.percentile(calls, 99))
                    rows[name]["latency_calls_b1"] = len(calls)
        if args.extract_images:
            usable = {name: engines[name] for name in END_TO_END if name in engines}
            for name, row in extract_speed(usable, images[:args.extract_images], args.extract_batch,
                                           args.extract_workers, Path(tmp)).items():
                rows[name].update(row)
                model_only = rows[name].get(f"crops_per_s_b{args.extract_batch}")
                if model_only:
                    rows[name]["extract_over_model_only"] = row["extract_crops_per_s"] / model_only
    load = list(os.getloadavg())
    return [{**row, "load_average": load} for row in rows.values()]


def header(args, load_before: tuple[float, float, float]) -> dict:
    config = {"quick": args.quick, "threads": args.threads, "models": args.models,
              "images": f"{args.images.parent.name}/{args.images.name}",
              "batches": list(args.batches), "rounds": args.rounds, "block_seconds": args.block_seconds}
    shared = result_header(config, load_before)
    shared.pop("load_average_after")       # written by the end line
    return {"benchmark": "infer_speed", **shared, "cpu_model": cpu_model(),
            "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "nice": os.nice(0), "versions": versions()}


def versions() -> dict:
    found = {}
    for module in ("onnxruntime", "openvino", "nncf"):
        with contextlib.suppress(ImportError):
            found[module] = __import__(module).__version__
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet50"],
                        choices=[name for name in SIZES if name in BACKBONES])
    parser.add_argument("--images", type=Path,
                        default=Path(os.environ.get("TRYTRY_REID_SHARED", "../shared"))
                        / "data/market1501-devsplit/bounding_box_test")
    parser.add_argument("--quick", action="store_true", help="a smoke run: batches 1 and 8, short blocks")
    parser.add_argument("--threads", type=int, help="threads of every engine and of the matmul (default: "
                        "each engine's own, one per core); 1 compares engines on one core, which a loaded "
                        "machine disturbs least")
    parser.add_argument("--record", action="store_true", help="append the lines to docs/results/infer_speed.jsonl")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batches = (1, 8) if args.quick else BATCHES
    args.rounds, args.block_seconds = (2, 0.2) if args.quick else (3, 1.5)
    args.latency_calls = 20 if args.quick else 300
    args.extract_batch, args.extract_workers = (8, (0,)) if args.quick else (32, (0, 1, 2))
    images = find_images(args.images)
    load_before = os.getloadavg()
    emit(args, {**header(args, load_before), "state": "start"})
    for backbone in args.models:
        args.extract_images = 64 if args.quick else (96 if backbone == "resnet50" else 1024)
        for row in measure_model(backbone, images, args):
            emit(args, row)
    emit(args, {"benchmark": "infer_speed", "state": "end", "load_average_after": list(os.getloadavg())})


def emit(args, line: dict) -> None:
    """Print one JSON line as soon as it is measured (and append it with --record): a run cut short keeps
    what it measured."""
    text = json.dumps(line)
    print(text, flush=True)
    if args.record:
        with open(REPO / "docs" / "results" / "infer_speed.jsonl", "a") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
