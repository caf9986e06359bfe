"""A tiny, fully seeded training run on generated images, importable by tests and runnable as a script.

Real pieces: ReidModel (with BNNeck and a dropout in the trunk, so the global torch RNG matters), Criterion
with cross-entropy + triplet (``random_negative``: random selection) + center loss (own SGD), PKSampler,
EpochLoaders (per-sample seeded augmentation), evaluate_rank. Images are 3x12x12 class prototypes plus noise;
augmentation adds random noise and random flips.

As a forked child process (:func:`run_child`, used by the kill/resume and signal tests) or a script::

    python tiny_run.py CKPT_DIR [--resume PATH] [--kill-at-step N] [--sleep S] [--every N] [--epochs E]

prints ``fetched <batch>`` lines (flushed) as batches are taken, so a test knows where the run is.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from trytry_reid.data.sampler import PKSampler
from trytry_reid.engine import EpochLoaders, FitOptions, TrainObjects, build_scheduler, fit, seed_everything
from trytry_reid.evaluation.rank import evaluate_rank
from trytry_reid.jobs.builders import build_loss_optimizer
from trytry_reid.losses.center import CenterLoss
from trytry_reid.losses.criterion import Criterion, LossTerm
from trytry_reid.losses.cross_entropy import CrossEntropyLoss
from trytry_reid.losses.triplet import TripletLoss
from trytry_reid.models.reid_model import ReidModel

NUM_IDS, PER_ID, SIZE = 6, 4, 12


def prototypes(num_ids: int = NUM_IDS) -> torch.Tensor:
    return torch.rand(num_ids, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1234))


class GeneratedImages(torch.utils.data.Dataset):
    """(image [3,12,12], label, camid, index); ``augment`` adds torch-random noise and flips."""

    def __init__(self, num_ids: int, per_id: int, *, augment: bool, offset: int = 0) -> None:
        self.labels = [i // per_id for i in range(num_ids * per_id)]
        noise = torch.randn(num_ids * per_id, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(99 + offset))
        self.images = prototypes(num_ids)[self.labels] + 0.3 * noise
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, int]:
        image = self.images[i]
        if self.augment:
            image = image + 0.1 * torch.randn_like(image)
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
        return image, self.labels[i], i % 2, i


def tiny_model(num_classes: int, dropout: float = 0.1) -> ReidModel:
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(dropout),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
    return ReidModel(trunk, feature_dim=16, num_classes=num_classes, embedding_dim=0, bnneck=True)


def tiny_criterion(num_classes: int, feat_dim: int = 16) -> Criterion:
    return Criterion([
        LossTerm("cross_entropy", CrossEntropyLoss(label_smoothing=0.1), 1.0, "logits"),
        LossTerm("triplet", TripletLoss(selector="random_negative", margin=0.3), 1.0, "features"),
        LossTerm("center", CenterLoss(num_classes, feat_dim), 5e-4, "features"),
    ])


def build(seed: int = 0, *, epochs: int = 2, ckpt_dir: Path | None = None, every: int = 0, amp: str = "off",
          workers: int = 0, lr: float = 0.01, dropout: float = 0.1) -> tuple[TrainObjects, EpochLoaders, FitOptions]:
    """Objects, loaders and options of the tiny run (3 ids x 4 images per batch, 2 batches per epoch)."""
    seed_everything(seed)
    model, criterion = tiny_model(NUM_IDS, dropout), tiny_criterion(NUM_IDS)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    dataset = GeneratedImages(NUM_IDS, PER_ID, augment=True)
    sampler = PKSampler(dataset.labels, p=3, k=4, seed=seed)
    loaders = EpochLoaders(dataset, sampler, seed=seed, workers=workers)
    steps = len(loaders)
    scheduler = build_scheduler(optimizer, warmup_steps=steps, warmup_factor=0.1, schedule="multistep",
                                milestones=[2 * steps], gamma=0.1)
    objects = TrainObjects(model, criterion, optimizer, scheduler, build_loss_optimizer(criterion))
    options = FitOptions(epochs=epochs, steps_per_epoch=steps, checkpoint_dir=ckpt_dir, checkpoint_every_steps=every,
                         amp=amp, log_every=1, progress=False, checkpoint_keep=2,
                         run_config={"model": {"backbone": "tiny"}, "seed": seed})
    return objects, loaders, options


def make_evaluate(model: ReidModel) -> Callable[[int], dict[str, dict[str, float]]]:
    """Query = the first image of each id in a held-out generated set, gallery = the rest."""
    test = GeneratedImages(NUM_IDS, PER_ID, augment=False, offset=1)
    images = torch.stack([test[i][0] for i in range(len(test))])
    pids, camids = np.array(test.labels), np.arange(len(test)) % 2
    query = np.arange(len(test)) % PER_ID == 0

    def evaluate(epoch: int) -> dict[str, dict[str, float]]:
        with torch.inference_mode():
            feats = model.embed(images)
        dist = torch.cdist(feats[query], feats[~query]).numpy()
        result = evaluate_rank(dist, pids[query], pids[~query], camids[query], camids[~query] + 2, max_rank=5)
        return {"generated": {"rank1": float(result["cmc"][0]), "mAP": result["mAP"], "mINP": result["mINP"]}}

    return evaluate


def run_with_average(ckpt_dir: Path, epochs: int, make_average: Callable[[nn.Module], Any],
                     crash_at: int | None = None, resume: Path | None = None) -> tuple[TrainObjects, dict]:
    """The tiny run with checkpoints every step and ``make_average(model)`` as its weight average, evaluated
    every epoch; ``crash_at`` raises RuntimeError("simulated crash") before that (1-based) global step."""
    objects, loaders, options = build(epochs=epochs, ckpt_dir=ckpt_dir, every=1)
    objects.average = make_average(objects.model)

    def crashing(epoch: int, start: int) -> Iterator[Any]:
        for b, batch in enumerate(loaders(epoch, start), start=start):
            if epoch * options.steps_per_epoch + b + 1 == crash_at:
                raise RuntimeError("simulated crash")
            yield batch

    history = fit(objects, crashing, options, evaluate=make_evaluate(objects.inference_model()),
                  resume_from=resume)
    return objects, history


def watched(loaders: EpochLoaders, kill_at: int | None, sleep: float) -> Callable[[int, int], Iterator[Any]]:
    """Loaders that print each batch fetched (global step about to run) and may SIGKILL the process."""

    def make(epoch: int, start: int) -> Iterator[Any]:
        for b, batch in enumerate(loaders(epoch, start), start=start):
            step = epoch * len(loaders) + b + 1
            if kill_at is not None and step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            print(f"fetched {step}", flush=True)
            time.sleep(sleep)
            yield batch

    return make


def run_child(ckpt_dir: Path, log_path: Path, *, every: int = 0, kill_at: int | None = None,
              sleep: float = 0.0, epochs: int = 2) -> None:
    """Body of a forked child process: stdout and stderr go to ``log_path``; trains like :func:`main`."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    torch.set_num_threads(1)  # OpenMP thread pools do not survive fork(); one thread never enters one
    objects, loaders, options = build(epochs=epochs, ckpt_dir=ckpt_dir, every=every)
    fit(objects, watched(loaders, kill_at, sleep), options, evaluate=make_evaluate(objects.model))
    print("finished", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt_dir", type=Path)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--every", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))  # as tests/conftest.py: same float sums
    objects, loaders, options = build(epochs=args.epochs, ckpt_dir=args.ckpt_dir, every=args.every)
    fit(objects, watched(loaders, args.kill_at_step, args.sleep), options,
        evaluate=make_evaluate(objects.model), resume_from=args.resume)
    print("finished", flush=True)


if __name__ == "__main__":
    sys.exit(main())
