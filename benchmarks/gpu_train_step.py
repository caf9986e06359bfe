"""Training-step throughput of the BoT recipe (ResNet-50, last stride 1, 256x128, P=16 x K=4) on a GPU.

Times full ``engine.train_step`` calls (CE with label smoothing + batch-hard triplet + center loss with its
own optimizer, Adam, per-iteration LR schedule) with mixed precision and channels_last, the batch already on
the device, and, in the same process, the anchor: a bare float32 forward/backward/Adam step of the same model
with cross-entropy alone. Prints one JSON object with images/s of both and their ratio.

    python benchmarks/gpu_train_step.py                                   # on cuda, bf16, channels_last
    python benchmarks/gpu_train_step.py --amp fp16
    python benchmarks/gpu_train_step.py --device cpu --iters 2 --warmup 1 --height 64 --width 32 --p 4 --k 2
                                                                           # CPU smoke check only
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import torch
import torch.nn.functional as F

from trytry_reid.engine import FitOptions, TrainObjects, build_scheduler, train_step
from trytry_reid.jobs.builders import build_loss_optimizer
from trytry_reid.losses import CenterLoss, Criterion, CrossEntropyLoss, LossTerm, TripletLoss
from trytry_reid.models import ReidModel, build_backbone


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--amp", default="bf16", choices=["off", "bf16", "fp16"])
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--p", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--num-classes", type=int, default=751)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    return parser.parse_args()


def build(args: argparse.Namespace, device: torch.device, channels_last: bool) -> TrainObjects:
    trunk, dim = build_backbone(args.backbone, last_stride=1, pretrained="none")
    model = ReidModel(trunk, dim, args.num_classes, bnneck=True).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = Criterion([
        LossTerm("cross_entropy", CrossEntropyLoss(label_smoothing=0.1), 1.0, "logits"),
        LossTerm("triplet", TripletLoss("hardest", margin=0.3), 1.0, "features"),
        LossTerm("center", CenterLoss(args.num_classes, dim), 5e-4, "features"),
    ]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4)
    scheduler = build_scheduler(optimizer, warmup_steps=10, warmup_factor=0.1, schedule="multistep",
                                milestones=[40, 70], gamma=0.1)
    return TrainObjects(model, criterion, optimizer, scheduler, build_loss_optimizer(criterion))


def batch(args: argparse.Namespace, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    images = torch.randn(args.p * args.k, 3, args.height, args.width, device=device).to(memory_format=fmt)
    labels = torch.arange(args.p, device=device).repeat_interleave(args.k)
    return images, labels


def images_per_s(step: Callable[[], None], args: argparse.Namespace, device: torch.device) -> float:
    for _ in range(args.warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    return args.iters * args.p * args.k / (time.perf_counter() - start)


def full_step(args: argparse.Namespace, device: torch.device) -> float:
    objects = build(args, device, args.channels_last)
    options = FitOptions(epochs=1, steps_per_epoch=1, device=device, amp=args.amp, channels_last=args.channels_last)
    images, labels = batch(args, device, args.channels_last)
    return images_per_s(lambda: train_step(objects, images, labels, options, step=1), args, device)


def bare_step(args: argparse.Namespace, device: torch.device) -> float:
    """The anchor: float32, contiguous, CE only, no logging or stats."""
    objects = build(args, device, channels_last=False)
    model, optimizer = objects.model, objects.optimizer
    images, labels = batch(args, device, channels_last=False)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images).logits, labels).backward()
        optimizer.step()

    return images_per_s(step, args, device)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    full = full_step(args, device)
    bare = bare_step(args, device)
    print(json.dumps({
        "benchmark": "gpu_train_step", "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else "cpu", "backbone": args.backbone, "amp": args.amp, "channels_last": args.channels_last,
        "batch": args.p * args.k, "size": [args.height, args.width], "iters": args.iters,
        "full_step_images_per_s": round(full, 2), "bare_fp32_ce_images_per_s": round(bare, 2),
        "ratio_full_amp_over_bare_fp32": round(full / bare, 3),
    }))


if __name__ == "__main__":
    main()
