"""Training-step speed of the CPU recipe's model under each arithmetic, against torchreid's step, printed as JSON.

The reference is torchreid's baseline step on the same machine: MobileNetV2 with last stride 2, fp32, NCHW
(what ``studies/peer_torchreid.py`` trains). The variants are the recipe's model (last stride 1) in
channels_last under: plain fp32, bf16 autocast (``train.amp=bf16``), and fp32 tensors with oneDNN's bf16 or
tf32 math inside convolutions and matmuls (``train.fp32_precision``). Every step: forward, cross-entropy,
backward, Adam. Variants run interleaved round by round in one process, so load from other processes hits
all alike; ``ratio`` is each variant's images/s over the reference's.

    python benchmarks/precision_speed.py                  # batch 64 at 128x64, as config/mobilenet_market_cpu.yml
    python benchmarks/precision_speed.py --iters 3        # a quick run
    python benchmarks/precision_speed.py --record         # also append the JSON to docs/results/precision_speed.jsonl
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from trytry_reid.engine.precision import onednn_fp32_precision
from trytry_reid.models.backbones import build_backbone

from common import interleaved_medians, print_and_record, result_header

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "precision_speed.jsonl"
NUM_CLASSES = 501  # the devsplit's training identities
K = 4


def step_of(last_stride: int, channels_last: bool, autocast: bool, precision: str,
            args: argparse.Namespace) -> Callable[[], None]:
    """One training step of MobileNetV2 + average pooling + a linear classifier, as a closure."""
    torch.manual_seed(0)
    trunk, dim = build_backbone("mobilenet_v2", last_stride=last_stride)
    model = nn.Sequential(trunk, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, NUM_CLASSES)).train()
    images = torch.randn(args.batch, 3, args.height, args.width)
    labels = torch.arange(args.batch // K).repeat_interleave(K)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)

    def step() -> None:
        with onednn_fp32_precision(precision):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):  # forward only, as train_step
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--iters", type=int, default=12, help="timed rounds (each runs every variant once)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--record", action="store_true", help=f"append the result as one line to {RESULTS}")
    args = parser.parse_args()
    if args.batch % K or args.batch < 2 * K:
        parser.error(f"--batch must be a multiple of {K} and at least {2 * K}, got {args.batch}")
    torch.set_num_threads(args.threads)
    steps = {
        "torchreid: last stride 2, fp32, NCHW (reference)": step_of(2, False, False, "none", args),
        "recipe model: last stride 1, fp32, channels_last (shipped)": step_of(1, True, False, "none", args),
        "recipe model: bf16 autocast, channels_last": step_of(1, True, True, "none", args),
        "recipe model: fp32 + oneDNN bf16, channels_last": step_of(1, True, False, "bf16", args),
        "recipe model: fp32 + oneDNN tf32, channels_last": step_of(1, True, False, "tf32", args),
    }
    load_before = os.getloadavg()
    medians = interleaved_medians(steps, args.iters, args.warmup)
    reference = medians[next(iter(steps))][0]
    result = {**result_header(vars(args), load_before),
              "images_per_s": {name: round(args.batch / wall, 1) for name, (wall, _) in medians.items()},
              "ratio": {name: round(reference / wall, 3) for name, (wall, _) in medians.items()}}
    print_and_record(result, RESULTS, args.record)


if __name__ == "__main__":
    main()
