"""Training-step overhead of the full ReID objective against a bare cross-entropy step, printed as JSON.

For each backbone: images/s of a bare step (forward, CE on the logits, backward, Adam step) and of a full
step (CE with label smoothing + triplet loss with one selector + center loss, backward, Adam step for the
model and the center loss's own SGD with its gradient rescaled by 1/weight), for every selector. The bare
step is the reference, measured in the same process and interleaved with the full steps round by round, so
load from other processes hits both alike. The objective's own cost (the losses' forward/backward on a
model-sized output plus the center step) is also timed alone, a low-noise estimate of the overhead.
Targets: full/bare throughput >= 0.90; selection + triplet loss (forward and backward) on a batch x 2048
feature matrix < 2% of a resnet50 step.

    python benchmarks/train_step.py                      # batch 64 at 256x128, mobilenet_v2 and resnet50
    python benchmarks/train_step.py --batch 16 --iters 2 # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Callable

import torch
import torch.nn.functional as F

from trytry_reid.losses.criterion import Criterion, LossTerm, build_term
from trytry_reid.losses.selectors import SELECTORS
from trytry_reid.losses.triplet import TripletLoss
from trytry_reid.models.backbones import build_backbone
from trytry_reid.models.reid_model import ReidModel, ReidOutput

from common import interleaved_medians

CENTER_WEIGHT = 5e-4
NUM_CLASSES = 751  # Market-1501's training identities: the classifier's real size
K = 4  # images per identity in a P x K batch


def pk_labels(batch: int) -> torch.Tensor:
    return torch.arange(batch // K).repeat_interleave(K)


def bare_step(model: ReidModel, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3.5e-4)

    def step() -> None:
        loss = F.cross_entropy(model(images).logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def full_criterion(selector: str, feat_dim: int) -> tuple[Criterion, LossTerm]:
    """CE (smoothing 0.1) + triplet (margin 0.3) + center (5e-4), as BoT; returns the center term too."""
    center = build_term("center", CENTER_WEIGHT, num_classes=NUM_CLASSES, feature_dim=feat_dim)
    criterion = Criterion([build_term("cross_entropy", 1.0, label_smoothing=0.1),
                           build_term("triplet", 1.0, selector=selector, margin=0.3), center])
    return criterion, center


def objective_step(batch: int, feat_dim: int, selector: str) -> Callable[[], None]:
    """The full step's extra work alone: the objective's forward/backward on a model-sized output and the
    center optimizer's step. Low-noise, unlike the difference of two whole-step timings on a busy machine."""
    criterion, center = full_criterion(selector, feat_dim)
    center_optimizer = torch.optim.SGD(center.module.parameters(), lr=0.5)
    features = torch.randn(batch, feat_dim, requires_grad=True)
    logits = torch.randn(batch, NUM_CLASSES, requires_grad=True)
    labels = pk_labels(batch)

    def step() -> None:
        losses, _ = criterion(ReidOutput(features, features, logits), labels)
        center_optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        for p in center.module.parameters():
            p.grad.mul_(1.0 / CENTER_WEIGHT)
        center_optimizer.step()

    return step


def full_step(model: ReidModel, images: torch.Tensor, labels: torch.Tensor, selector: str) -> Callable[[], None]:
    criterion, center = full_criterion(selector, model.output_dim)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3.5e-4)
    center_optimizer = torch.optim.SGD(center.module.parameters(), lr=0.5)

    def step() -> None:
        losses, _ = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        center_optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        for p in center.module.parameters():
            p.grad.mul_(1.0 / CENTER_WEIGHT)
        center_optimizer.step()

    return step


def bench_backbone(name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    trunk, dim = build_backbone(name, last_stride=args.last_stride)
    model = ReidModel(trunk, dim, NUM_CLASSES).train()
    images = torch.randn(args.batch, 3, args.height, args.width)
    labels = pk_labels(args.batch)
    steps = {"bare_ce": bare_step(model, images, labels)}
    for selector in SELECTORS:
        steps[f"full_{selector}"] = full_step(model, images, labels, selector)
    measured = interleaved_medians(steps, args.iters, args.warmup)
    wall = {key: value[0] for key, value in measured.items()}
    cpu = {key: value[1] for key, value in measured.items()}
    objective = interleaved_medians({s: objective_step(args.batch, model.output_dim, s) for s in SELECTORS},
                                    args.triplet_reps, warmup=2)
    return {
        "objective_only_seconds": {key: value[0] for key, value in objective.items()},
        "objective_only_fraction_of_bare_step": {key: value[0] / wall["bare_ce"] for key, value in objective.items()},
        "step_seconds": wall,
        "step_cpu_seconds": cpu,
        "images_per_s": {key: args.batch / value for key, value in wall.items()},
        "full_over_bare_throughput": {key: wall["bare_ce"] / value for key, value in wall.items()
                                      if key != "bare_ce"},
        "full_over_bare_throughput_cpu_time": {key: cpu["bare_ce"] / value for key, value in cpu.items()
                                               if key != "bare_ce"},
    }


def bench_triplet(batch: int, reps: int) -> dict[str, float]:
    """Median seconds of selection + triplet loss forward and backward on a [batch, 2048] feature matrix."""
    features = torch.randn(batch, 2048, requires_grad=True)
    labels = pk_labels(batch)
    out = {}
    for selector in SELECTORS:
        loss_fn = TripletLoss(selector, margin=0.3)

        def step() -> None:
            loss, _ = loss_fn(features, labels)
            loss.backward()

        out[selector] = interleaved_medians({selector: step}, reps, warmup=2)[selector][0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--batch", type=int, default=64, help="a multiple of 4 (P x K with K=4)")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--iters", type=int, default=5, help="timed rounds (each runs every variant once)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--last-stride", type=int, default=1)
    parser.add_argument("--triplet-batch", type=int, default=64, help="rows of the [N, 2048] triplet benchmark")
    parser.add_argument("--triplet-reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads; on a machine shared with other jobs use 1: OpenMP threads spin-wait "
                             "on oversubscribed cores and a step can run several times slower")
    args = parser.parse_args()
    for flag, value in (("--batch", args.batch), ("--triplet-batch", args.triplet_batch)):
        if value % K or value < 2 * K:
            parser.error(f"{flag} must be a multiple of {K} and at least {2 * K}, got {value}")
    torch.set_num_threads(args.threads)
    result: dict = {"config": vars(args), "load_average_before": os.getloadavg(), "backbones": {}}
    for name in args.backbones:
        result["backbones"][name] = bench_backbone(name, args)
    triplet = bench_triplet(args.triplet_batch, args.triplet_reps)
    result["triplet_seconds"] = triplet
    if "resnet50" in result["backbones"]:
        # the resnet50 step is scaled linearly to the triplet batch when --batch differs from it
        r50 = result["backbones"]["resnet50"]["step_seconds"]["bare_ce"] * args.triplet_batch / args.batch
        result["resnet50_step_seconds_at_triplet_batch"] = r50
        result["triplet_fraction_of_resnet50_step"] = {key: value / r50 for key, value in triplet.items()}
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
