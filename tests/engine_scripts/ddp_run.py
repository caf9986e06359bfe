"""Two training steps through ``fit``, either under DDP (one process per rank) or in one process.

The model has no BatchNorm and no dropout, so a sample's features do not depend on which other samples
share its batch. Two objectives:

* ``ce_center``: cross-entropy + center loss, both means of per-sample terms: the DDP update must equal the
  single-process update on the global batch.
* ``triplet``: cross-entropy + batch-hard triplet. Triplet mining sees only each rank's local batch, so DDP
  optimises the mean over ranks of per-rank triplet losses; the single-process reference reproduces exactly
  that with :class:`ChunkedTriplet` (the global batch cut into ``world_size`` rank-sized chunks).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from engine_scripts.tiny_run import GeneratedImages
from trytry_reid.data.sampler import PKSampler
from trytry_reid.engine import (
    EpochLoaders,
    FitOptions,
    TrainObjects,
    build_scheduler,
    distributed,
    fit,
    seed_everything,
)
from trytry_reid.jobs.builders import build_loss_optimizer
from trytry_reid.losses.center import CenterLoss
from trytry_reid.losses.criterion import Criterion, LossTerm
from trytry_reid.losses.cross_entropy import CrossEntropyLoss
from trytry_reid.losses.triplet import TripletLoss
from trytry_reid.models.reid_model import ReidModel

NUM_IDS, PER_ID, P, K = 8, 3, 4, 2
OBJECTIVES = ("ce_center", "triplet")


class ChunkedTriplet(nn.Module):
    """Mean of triplet losses over ``chunks`` equal consecutive slices of the batch (what DDP computes)."""

    def __init__(self, chunks: int) -> None:
        super().__init__()
        self.chunks, self.loss = chunks, TripletLoss("hardest", margin=0.3)

    def forward(self, features: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        parts = [self.loss(f, y)[0] for f, y in zip(features.chunk(self.chunks), labels.chunk(self.chunks))]
        return torch.stack(parts).mean(), {}


def _criterion(objective: str, chunks: int) -> Criterion:
    terms = [LossTerm("cross_entropy", CrossEntropyLoss(), 1.0, "logits")]
    if objective == "ce_center":
        terms.append(LossTerm("center", CenterLoss(NUM_IDS, 16), 5e-3, "features"))
    else:
        triplet = TripletLoss("hardest", margin=0.3) if chunks == 1 else ChunkedTriplet(chunks)
        terms.append(LossTerm("triplet", triplet, 1.0, "features"))
    return Criterion(terms)


def train(objective: str, rank: int, world_size: int, *, chunks: int = 1, ckpt_dir: Path | None = None) -> dict:
    """Two steps of one epoch; returns the final weights and the logged (rank-averaged) losses."""
    seed_everything(0)
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
    model = ReidModel(trunk, feature_dim=16, num_classes=NUM_IDS, bnneck=False)
    criterion = _criterion(objective, chunks)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    dataset = GeneratedImages(NUM_IDS, PER_ID, augment=True)
    sampler = PKSampler(dataset.labels, p=P, k=K, seed=0, num_batches=2, rank=rank, world_size=world_size)
    scheduler = build_scheduler(optimizer, warmup_steps=0, warmup_factor=1.0, schedule="multistep")
    model = distributed.wrap_model(model, distributed.current(), torch.device("cpu"))
    objects = TrainObjects(model, criterion, optimizer, scheduler, build_loss_optimizer(criterion))
    options = FitOptions(epochs=1, steps_per_epoch=2, log_every=1, progress=False, checkpoint_keep=0,
                         checkpoint_dir=ckpt_dir)
    initial = {k: v.clone() for k, v in distributed.unwrap(model).state_dict().items()}
    history = fit(objects, EpochLoaders(dataset, sampler, seed=0), options)
    return {"model": distributed.unwrap(model).state_dict(), "criterion": criterion.state_dict(),
            "loss": history["loss"]["total"], "initial": initial}


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One DDP rank (gloo on CPU); rank 0 saves both objectives' results to ``out_dir/ddp.pt``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = distributed.init_distributed("gloo")
    try:
        results = {name: train(name, info.rank, info.world_size, ckpt_dir=Path(out_dir) / f"ckpt_rank{rank}")
                   for name in OBJECTIVES}
        if info.is_main:
            torch.save(results, Path(out_dir) / "ddp.pt")
    finally:
        distributed.cleanup()
