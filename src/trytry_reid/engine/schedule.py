"""Learning-rate schedule: a pure function of the iteration, wrapped in ``LambdaLR``.

Steps are optimizer iterations (the scheduler is stepped once per iteration). A per-epoch recipe such as
BoT's "warmup 10 epochs, decay at epochs 40 and 70" is expressed by the caller multiplying epochs by the
number of iterations per epoch.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("multistep", "cosine")


def lr_factor(
    step: int,
    *,
    warmup_steps: int,
    warmup_factor: float,
    schedule: str,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    total_steps: int = 0,
) -> float:
    """Multiplier of the base learning rate at iteration ``step`` (0-based).

    During ``warmup_steps`` the factor rises linearly from ``warmup_factor`` (at step 0) to 1 (at
    ``warmup_steps``). Then ``multistep`` multiplies by ``gamma`` once per milestone already reached
    (``step >= milestone``); ``cosine`` decays from 1 at the end of warmup to 0 at ``total_steps``.
    """
    _check_arguments(step, warmup_steps, warmup_factor, schedule, milestones, total_steps)
    warm = 1.0
    if step < warmup_steps:
        warm = warmup_factor + (1.0 - warmup_factor) * step / warmup_steps
    if schedule == "multistep":
        return warm * gamma ** bisect.bisect_right(sorted(milestones), step)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_arguments(
    step: int,
    warmup_steps: int,
    warmup_factor: float,
    schedule: str,
    milestones: Sequence[int],
    total_steps: int,
) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule '{schedule}'; expected one of {', '.join(SCHEDULES)}")
    if step < 0:
        raise ValueError(f"lr schedule step must be >= 0, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if not 0.0 <= warmup_factor <= 1.0:
        raise ValueError(f"warmup_factor must be in [0, 1], got {warmup_factor}")
    if schedule == "cosine" and total_steps <= warmup_steps:
        raise ValueError(
            f"cosine schedule needs total_steps > warmup_steps, got total_steps={total_steps}, "
            f"warmup_steps={warmup_steps}"
        )
    if any(m < 0 for m in milestones):
        raise ValueError(f"lr milestones must be >= 0 steps, got {list(milestones)}")


def build_scheduler(optimizer: torch.optim.Optimizer, **schedule) -> LambdaLR:
    """A ``LambdaLR`` over :func:`lr_factor` with the keyword arguments ``schedule`` (``warmup_steps``,
    ``warmup_factor``, ``schedule``, ``milestones``, ``gamma``, ``total_steps``); call ``scheduler.step()``
    once per iteration. The arguments are validated here, before training, rather than at the first step."""
    if "milestones" in schedule:
        schedule["milestones"] = tuple(int(m) for m in schedule["milestones"])
    lr_factor(0, **schedule)
    return LambdaLR(optimizer, lambda step: lr_factor(step, **schedule))
