"""What a training run is made of and where it stands, and the checkpoint dict that resumes it exactly.

``TrainObjects`` holds the built objects one step needs, ``Progress`` the position in the run;
``training_state`` turns both (and the history and every RNG) into one plain dict that loads with
``weights_only=True``, and ``restore_training_state`` puts such a dict back. Writing and reading the file is
``engine/checkpoint.py``'s job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trytry_reid.engine import distributed
from trytry_reid.engine.averaging import UniformAverage, WeightAverage
from trytry_reid.engine.rng import capture_rng_state, restore_rng_state


@dataclass(eq=False)
class TrainObjects:
    """What one step needs. ``model`` may be DDP-wrapped. ``loss_optimizer`` trains the loss parameters that
    move at their own rate (BoT's centers; ``Criterion.own_optimizer_groups``): each of its parameter groups
    may carry a ``grad_scale`` that the step multiplies their gradient by first."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_optimizer: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None  # built by fit from options.amp
    average: WeightAverage | UniformAverage | None = None  # the weights' average, when the run keeps one

    def inference_model(self) -> nn.Module:
        """What evaluation ranks with and checkpoints store as "model": the weight average when there is one."""
        return self.average.module if self.average is not None else distributed.unwrap(self.model)


@dataclass
class Progress:
    """Where a run is: ``step_in_epoch`` batches of ``epoch`` (0-based) are done, ``global_step`` in all."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_map: float = -math.inf
    skipped_in_a_row: int = 0  # consecutive fp16-skipped optimizer steps
    metrics: dict = field(default_factory=dict)  # the latest evaluation, {dataset: {metric: value}}


RESUME_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "step_in_epoch", "step")


def training_state(objects: TrainObjects, progress: Progress, history: Any, run_config: dict) -> dict[str, Any]:
    """The checkpoint dict (ARCHITECTURE.md's keys plus what resuming needs); RNG states captured now.

    "model" holds the weights evaluation ranks with (the weight average when the run keeps one); the trained
    weights are then in "trained_model" and the number of averaged steps in "average_updates"."""
    model = distributed.unwrap(objects.model)
    classifier = getattr(model, "classifier", None)
    averaged = {} if objects.average is None else \
        {"trained_model": model.state_dict(), "average_updates": objects.average.updates}
    return {
        "model": objects.inference_model().state_dict(),
        **averaged,
        "criterion": objects.criterion.state_dict(),
        "config": run_config,
        "num_classes": int(getattr(classifier, "out_features", 0) or 0),
        "epoch": progress.epoch,
        "step_in_epoch": progress.step_in_epoch,
        "step": progress.global_step,
        "best_map": progress.best_map,
        "skipped_in_a_row": progress.skipped_in_a_row,
        "metrics": progress.metrics,
        "optimizer": objects.optimizer.state_dict(),
        "loss_optimizer": None if objects.loss_optimizer is None else objects.loss_optimizer.state_dict(),
        "scheduler": objects.scheduler.state_dict(),
        "scaler": objects.scaler.state_dict() if objects.scaler is not None else {},
        "rng": capture_rng_state(),
        "history": history.state_dict(),
    }


def restore_training_state(state: dict[str, Any], objects: TrainObjects, history: Any) -> Progress:
    """Load a :func:`training_state` dict into the objects and history; the RNGs are restored last."""
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise KeyError(f"checkpoint cannot resume training: it lacks {', '.join(missing)} (a weights-only export?)")
    _restore_weights(state, objects)
    objects.criterion.load_state_dict(state.get("criterion", {}))
    objects.optimizer.load_state_dict(state["optimizer"])
    if objects.loss_optimizer is not None and state.get("loss_optimizer") is not None:
        scales = [group.get("grad_scale", 1.0) for group in objects.loss_optimizer.param_groups]
        objects.loss_optimizer.load_state_dict(state["loss_optimizer"])
        for group, scale in zip(objects.loss_optimizer.param_groups, scales):
            group["grad_scale"] = scale  # from the term weights of this config, whatever the file holds
    objects.scheduler.load_state_dict(state["scheduler"])
    if objects.scaler is not None and state.get("scaler"):
        objects.scaler.load_state_dict(state["scaler"])
    history.load_state_dict(state.get("history", {}))
    progress = Progress(state["epoch"], state["step_in_epoch"], state["step"], state.get("best_map", -math.inf),
                        state.get("skipped_in_a_row", 0), state.get("metrics", {}))
    restore_rng_state(state["rng"])
    return progress


def _restore_weights(state: dict[str, Any], objects: TrainObjects) -> None:
    """The trained weights, and the weight average with its step count when the run keeps one."""
    model = distributed.unwrap(objects.model)
    if (objects.average is None) != ("trained_model" not in state):
        kept = "keeps" if "trained_model" in state else "does not keep"
        raise KeyError(f"the checkpoint's run {kept} a weight average (train.ema_decay or train.average_epochs) "
                       f"and this one {'does not' if objects.average is None else 'does'}: resume with the "
                       f"run's ema_decay and average_epochs")
    if objects.average is None:
        model.load_state_dict(state["model"])
        return
    model.load_state_dict(state["trained_model"])
    objects.average.module.load_state_dict(state["model"])
    objects.average.updates = int(state["average_updates"])
