"""The optimizers a run can train with: ``train.optimizer`` -> a factory of parameter groups and settings."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

OptimizerFactory = Callable[..., torch.optim.Optimizer]

# name -> factory(groups, *, lr, weight_decay, momentum, betas): momentum is SGD's, betas Adam's and AdamW's
OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": lambda groups, *, lr, weight_decay, momentum, betas: torch.optim.SGD(
        groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True),
    "adam": lambda groups, *, lr, weight_decay, momentum, betas: torch.optim.Adam(
        groups, lr=lr, weight_decay=weight_decay, betas=tuple(betas)),
    "adamw": lambda groups, *, lr, weight_decay, momentum, betas: torch.optim.AdamW(
        groups, lr=lr, weight_decay=weight_decay, betas=tuple(betas)),
}


def build_optimizer(name: str, groups: Sequence[dict], *, lr: float, weight_decay: float, momentum: float,
                    betas: Sequence[float]) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``groups`` (an unknown name lists the valid ones)."""
    from trytry_reid.catalog import lookup

    return lookup(OPTIMIZERS, name, "optimizer")(groups, lr=lr, weight_decay=weight_decay, momentum=momentum,
                                                  betas=betas)
