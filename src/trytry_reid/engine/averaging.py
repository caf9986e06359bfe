"""Weight averages kept beside the trained model: an exponential moving average (EMA, ``train.ema_decay``)
updated at every step, or the uniform average of the weights at the last epochs' ends (``train.average_epochs``,
stochastic weight averaging: UniformAverage). Either is what a run evaluates, selects best.pt by, and stores as
the checkpoint's ``"model"`` (so evaluation, export and serving use it); the trained weights travel beside it
for resuming (engine/state.py).

The EMA: after every optimisation step ``t`` (1-based) each floating-point parameter and buffer (BatchNorm's
running statistics included) moves towards the trained model's::

    average = decay_t * average + (1 - decay_t) * weights,   decay_t = min(decay, (1 + t) / (10 + t))

The ramp ``(1 + t) / (10 + t)`` keeps the first steps from tying the average to the initial weights for
``1 / (1 - decay)`` steps; it reaches ``decay`` only at step ``(10 decay - 1) / (1 - decay)`` (4,490 for 0.998),
so a shorter run averages with the ramp throughout, whatever the decay, and its log says so. Integer buffers
(BatchNorm's ``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
import itertools
import math

import torch
from torch import nn


def check_decay(decay: float) -> None:
    """0 turns the average off; anything else must lie in (0, 1)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"the weight average's decay must be 0 (off) or in (0, 1), like 0.998; got {decay}")


def ramp(step: int) -> float:
    """The ramp's ceiling on the decay at step ``step`` (1-based): ``(1 + t) / (10 + t)``."""
    return (1 + step) / (10 + step)


def ramp_steps(decay: float) -> int:
    """The first step at which the ramp reaches ``decay``; before it the ramp rules."""
    step = max(1, math.ceil((10 * decay - 1) / (1 - decay)))
    # The closed form can be a step off in floating point; settle it with the ramp itself.
    while step > 1 and ramp(step - 1) >= decay:
        step -= 1
    while ramp(step) < decay:
        step += 1
    return step


def short_run_warning(decay: float, total_steps: int) -> str | None:
    """A sentence for the log when a run ends before its decay is reached (then the decay asked for is inert:
    the average gives step t a weight growing as t**8, whatever the decay above the ramp's last value)."""
    reached = ramp_steps(decay)
    if reached <= total_steps:
        return None
    last = ramp(total_steps)
    return (f"train.ema_decay {decay} is reached only after {reached} steps and this run has {total_steps}: "
            f"the ramp (1 + t) / (10 + t) sets the decay throughout (at most {last:.4f} at the last step), so "
            f"the average covers about the last {max(1, round(total_steps / 10))} steps whatever the decay")


class WeightAverage:
    """The EMA copy (``module``, in eval mode, no gradients) of a model; ``updates`` counts the steps averaged."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        check_decay(decay)
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update uses (the ramp of the module docstring)."""
        return min(self.decay, ramp(self.updates + 1))

    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s weights (same architecture as ``module``)."""
        move_towards(self.module, model, 1.0 - self.current_decay())
        self.updates += 1

    def after_step(self, model: nn.Module) -> None:
        self.update(model)

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        """Nothing: the exponential average moves at every step."""


class UniformAverage:
    """The equal-weight average (``module``) of the weights at the ends of the last ``last_epochs`` of
    ``epochs`` epochs: stochastic weight averaging (Izmailov et al. 2018) over epoch-end snapshots.

    Before its window the average is a copy of the weights at the last epoch end (so an evaluation then ranks
    the trained weights); at the end of the window's n-th epoch it moves 1/n of the way to the weights, which
    keeps it the exact mean of the n snapshots. BatchNorm statistics are averaged like the weights; ``updates``
    counts the snapshots averaged."""

    def __init__(self, model: nn.Module, last_epochs: int, epochs: int) -> None:
        if not 0 < last_epochs <= epochs:
            raise ValueError(f"the uniform weight average spans 1 to {epochs} (all) epochs; got {last_epochs}")
        self.first_epoch = epochs - last_epochs + 1  # 1-based, the first snapshot averaged
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    def after_step(self, model: nn.Module) -> None:
        """Nothing: the uniform average takes a snapshot per epoch."""

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        """Take the snapshot of ``model`` at the end of epoch ``epoch`` (1-based)."""
        if epoch < self.first_epoch:
            move_towards(self.module, model, 1.0)
            return
        self.updates += 1
        move_towards(self.module, model, 1.0 / self.updates)


@torch.no_grad()
def move_towards(average: nn.Module, model: nn.Module, weight: float) -> None:
    """``average += weight * (model - average)`` for floating-point parameters and buffers; integer buffers
    (BatchNorm's ``num_batches_tracked``) are copied. ``weight`` 1 makes ``average`` a copy of ``model``."""
    averages, currents = [], []
    for mean, current in zip(_tensors(average), _tensors(model), strict=True):
        if mean.is_floating_point():
            averages.append(mean)
            currents.append(current.detach().to(mean.dtype))
        else:
            mean.copy_(current)
    if averages:
        torch._foreach_lerp_(averages, currents, weight)


def _tensors(model: nn.Module):
    return itertools.chain(model.parameters(), model.buffers())
