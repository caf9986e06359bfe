"""LR schedule values at chosen steps, checked against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from trytry_reid.engine.schedule import build_scheduler, lr_factor

ITERS = 100  # iterations per epoch in the BoT example below
BOT = dict(
    warmup_steps=10 * ITERS,
    warmup_factor=0.1,
    schedule="multistep",
    milestones=[40 * ITERS, 70 * ITERS],
    gamma=0.1,
    total_steps=120 * ITERS,
)


@pytest.mark.parametrize(
    "epoch, expected",
    [
        (0, 0.1),  # warmup starts at 0.1x
        (5, 0.55),  # halfway: 0.1 + 0.9 * 0.5
        (10, 1.0),  # warmup done
        (39, 1.0),
        (40, 0.1),  # first milestone
        (69, 0.1),
        (70, 0.01),  # second milestone
        (119, 0.01),
    ],
)
def test_bot_recipe_values(epoch: int, expected: float) -> None:
    assert lr_factor(epoch * ITERS, **BOT) == pytest.approx(expected, rel=1e-12)


def test_warmup_is_linear_per_iteration() -> None:
    values = [lr_factor(s, **BOT) for s in range(0, 1001, 100)]
    diffs = [b - a for a, b in zip(values, values[1:])]
    assert diffs == pytest.approx([0.09] * 10)


def test_cosine_reaches_zero_at_total_steps() -> None:
    kw = dict(warmup_steps=10, warmup_factor=0.0, schedule="cosine", total_steps=110)
    assert lr_factor(0, **kw) == 0.0
    assert lr_factor(5, **kw) == pytest.approx(0.5)
    assert lr_factor(10, **kw) == pytest.approx(1.0)
    assert lr_factor(60, **kw) == pytest.approx(0.5)  # half way through the cosine
    assert lr_factor(35, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lr_factor(110, **kw) == pytest.approx(0.0, abs=1e-15)
    assert lr_factor(500, **kw) == pytest.approx(0.0, abs=1e-15)


def test_no_warmup_and_unsorted_milestones() -> None:
    kw = dict(warmup_steps=0, warmup_factor=1.0, schedule="multistep", milestones=[30, 10], gamma=0.5)
    assert [lr_factor(s, **kw) for s in (0, 9, 10, 29, 30)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_build_scheduler_drives_optimizer_lr() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = build_scheduler(opt, **BOT)
    seen = []
    for _ in range(41 * ITERS):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(0.2)
    assert seen[5 * ITERS] == pytest.approx(1.1)
    assert seen[40 * ITERS] == pytest.approx(0.2)
    assert seen[40 * ITERS - 1] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (dict(schedule="linear"), "unknown lr schedule 'linear'"),
        (dict(warmup_factor=1.5), "warmup_factor"),
        (dict(schedule="cosine", total_steps=5), "total_steps"),
        (dict(milestones=[-1]), "milestones"),
    ],
)
def test_bad_arguments_are_named(change: dict, fragment: str) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match=fragment):
        build_scheduler(torch.optim.SGD([param], lr=1.0), **{**BOT, **change})
