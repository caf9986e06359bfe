"""Size and CPU speed of every importable model-zoo architecture (docs/MODEL_ZOO.md), beside this project's CPU
recipe model, measured in the same run.

    python benchmarks/zoo_speed.py [--only osnet_x0_25 ...] [--batch 32] [--rounds 3] [--threads N] [--record]

Per architecture, as ``trytry-reid import`` builds it (trunk, pooling, embedding / BNNeck, no classifier) at
its peer's input size: parameters; multiply-accumulates of one crop (torch.utils.flop_counter counts 2 FLOPs
per multiply-accumulate of convolutions and matrix products; torchreid's model zoo calls the MACs "GFLOPs");
crops/s of the PyTorch fp32 eval forward and of onnxruntime (CPU) on the exported model, batch 32, forward
only (no decoding or resizing). The reference (the recipe's MobileNetV2 at 128x64) runs interleaved with every
architecture, round by round, so ``*_vs_reference`` ratios compare the two under the same machine load.
One JSON line per architecture goes to docs/results/zoo_speed.jsonl with ``--record``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from trytry_reid.models.reid_model import build_reid_model  # noqa: E402
from trytry_reid.serving.export import INPUT_NAME, OUTPUT_NAME, export_onnx  # noqa: E402
from trytry_reid.serving.inference import LoadedModel  # noqa: E402

from common import print_and_record, result_header  # noqa: E402

RESULTS = ROOT / "docs" / "results" / "zoo_speed.jsonl"
TORCHREID_FC = {"last_stride": 2, "embedding_dim": 512, "embedding_bn_relu": True, "bnneck": False, "pooling": "avg"}
BOT = {"last_stride": 1, "bnneck": True, "pooling": "avg"}
GEM = {"last_stride": 1, "bnneck": True, "pooling": "gem"}
# name -> (model section as `trytry-reid import` writes it, input height, width)
ZOO = {
    "osnet_x1_0": ({"backbone": "osnet_x1_0", **TORCHREID_FC}, 256, 128),
    "osnet_x0_75": ({"backbone": "osnet_x0_75", **TORCHREID_FC}, 256, 128),
    "osnet_x0_5": ({"backbone": "osnet_x0_5", **TORCHREID_FC}, 256, 128),
    "osnet_x0_25": ({"backbone": "osnet_x0_25", **TORCHREID_FC}, 256, 128),
    "osnet_ibn_x1_0": ({"backbone": "osnet_ibn_x1_0", **TORCHREID_FC}, 256, 128),
    "osnet_ain_x1_0": ({"backbone": "osnet_ain_x1_0", **TORCHREID_FC}, 256, 128),
    "resnet50_ibn_a (torchreid)": ({"backbone": "resnet50_ibn_a", "last_stride": 2, "bnneck": False}, 256, 128),
    "BoT R50 (fast-reid)": ({"backbone": "fastreid_r50", **BOT}, 256, 128),
    "BoT R50-ibn (fast-reid)": ({"backbone": "fastreid_r50_ibn", **BOT}, 256, 128),
    "BoT R101-ibn (fast-reid)": ({"backbone": "fastreid_r101_ibn", **BOT}, 256, 128),
    "AGW R50 (fast-reid)": ({"backbone": "fastreid_r50_nl", **GEM}, 256, 128),
    "SBS R50 (fast-reid)": ({"backbone": "fastreid_r50_nl", **GEM}, 384, 128),
    "SBS R50-ibn (fast-reid)": ({"backbone": "fastreid_r50_ibn_nl", **GEM}, 384, 128),
    "SBS R101-ibn (fast-reid)": ({"backbone": "fastreid_r101_ibn_nl", **GEM}, 384, 128),
}
REFERENCE = ("CPU recipe MobileNetV2 (this project)",
             ({"backbone": "mobilenet_v2", "last_stride": 1, "bnneck": False, "pooling": "avg"}, 128, 64))


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return [flag for flag in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f" {flag}" in text]


def loaded_model(section: dict, height: int, width: int) -> LoadedModel:
    model = build_reid_model(num_classes=0, **section).eval()
    config = {"model": section, "data": {"height": height, "width": width}}
    return LoadedModel(model, height, width, tuple(IMAGENET_MEAN), tuple(IMAGENET_STD), config)


def size_of(loaded: LoadedModel) -> dict:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        loaded.model.embed(torch.zeros(1, 3, loaded.height, loaded.width))
    return {"params_millions": sum(p.numel() for p in loaded.model.parameters()) / 1e6,
            "gmacs": counter.get_total_flops() / 2e9, "gflops": counter.get_total_flops() / 1e9}


def runners(loaded: LoadedModel, batch: np.ndarray, folder: Path) -> dict:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # onnxruntime's idle threads spin after each run; interleaved with PyTorch they would steal its cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(export_onnx(loaded, folder / "m.onnx")), options,
                                           providers=["CPUExecutionProvider"])
    tensor = torch.from_numpy(batch)

    def torch_run() -> None:
        with torch.inference_mode():
            loaded.model.embed(tensor)

    return {"torch": torch_run, "onnx": lambda: session.run([OUTPUT_NAME], {INPUT_NAME: batch})}


def interleaved(steps: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each step; one warm-up call each, then ``rounds`` rounds of one call each."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(name: str, entry: tuple, reference: tuple, batch_size: int, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    (section, height, width), (ref_section, ref_height, ref_width) = entry, reference
    loaded, ref = loaded_model(section, height, width), loaded_model(ref_section, ref_height, ref_width)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ref").mkdir()
        steps = {f"{key}": run for key, run in runners(
            loaded, rng.standard_normal((batch_size, 3, height, width), dtype=np.float32), Path(tmp)).items()}
        steps |= {f"reference_{key}": run for key, run in runners(
            ref, rng.standard_normal((batch_size, 3, ref_height, ref_width), dtype=np.float32),
            Path(tmp) / "ref").items()}
        seconds = interleaved(steps, rounds)
    speed = {key: batch_size / value for key, value in seconds.items()}
    return {"architecture": name, "model": section, "input": [height, width], **size_of(loaded),
            "torch_crops_per_s": speed["torch"], "onnx_crops_per_s": speed["onnx"],
            "reference": REFERENCE[0], "reference_torch_crops_per_s": speed["reference_torch"],
            "reference_onnx_crops_per_s": speed["reference_onnx"],
            "torch_vs_reference": speed["torch"] / speed["reference_torch"],
            "onnx_vs_reference": speed["onnx"] / speed["reference_onnx"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="architecture names (default: all, and the reference alone)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch and onnxruntime threads (default: torch's); on a "
                        "machine whose cores are busy, 1 avoids stalls at every parallel region's barrier")
    parser.add_argument("--record", action="store_true", help=f"append the JSON lines to {RESULTS}")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {"batch": args.batch, "rounds": args.rounds, "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(), "cpu_flags": cpu_flags(), "dtype": "float32"}
    names = args.only or list(ZOO)
    entries = {name: ZOO[name] for name in names}
    if not args.only:
        entries[REFERENCE[0]] = REFERENCE[1]
    for name, entry in entries.items():
        before = os.getloadavg()
        result = measure(name, entry, REFERENCE[1], args.batch, args.rounds)
        print_and_record({**result_header(settings, before), **result}, RESULTS, args.record)


if __name__ == "__main__":
    main()
