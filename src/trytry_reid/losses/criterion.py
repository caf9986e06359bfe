"""Named, weighted loss terms, each reading one field of the model's ReidOutput.

``LOSSES`` maps a loss name to ``(factory, default_field)``; the factory takes the loss's own keyword
arguments (e.g. ``TripletLoss(selector=..., margin=...)``). ``Criterion`` returns every weighted term by name
so the training loop sums them and logs each one, plus every term's stats as ``"name/key"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor, nn

from trytry_reid.catalog import lookup
from trytry_reid.losses.center import CenterLoss
from trytry_reid.losses.cross_entropy import CrossEntropyLoss
from trytry_reid.losses.triplet import TripletLoss
from trytry_reid.models.reid_model import ReidOutput

LOSSES: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "cross_entropy": (CrossEntropyLoss, "logits"),
    "triplet": (TripletLoss, "features"),
    "center": (CenterLoss, "features"),
}


@dataclass(eq=False)
class LossTerm:
    """One term of the objective: ``weight * module(getattr(output, field), labels)[0]``."""

    name: str
    module: nn.Module
    weight: float
    field: str

    def __post_init__(self) -> None:
        if self.field not in ReidOutput._fields:
            raise ValueError(
                f"loss term '{self.name}': field '{self.field}' is not a ReidOutput field "
                f"({', '.join(ReidOutput._fields)})"
            )


def build_term(loss: str, weight: float = 1.0, field: str | None = None, name: str | None = None,
               **params: Any) -> LossTerm:
    """Build a LossTerm from ``LOSSES[loss]``; ``field`` defaults to the loss's own, ``name`` to ``loss``."""
    factory, default_field = lookup(LOSSES, loss, "loss")
    return LossTerm(name or loss, factory(**params), float(weight), field or default_field)


class Criterion(nn.Module):
    """``forward(output, labels) -> ({name: weight * loss}, {"name/key": stat})``.

    The term modules are registered (``nn.ModuleDict``), so parameters such as CenterLoss's centres appear
    in ``criterion.parameters()`` and its state dict.
    """

    def __init__(self, terms: list[LossTerm]) -> None:
        super().__init__()
        names = [term.name for term in terms]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"loss term names must be unique; repeated: {', '.join(duplicates)}")
        if not terms:
            raise ValueError("Criterion needs at least one loss term")
        self.terms = list(terms)
        self.modules_by_name = nn.ModuleDict({term.name: term.module for term in terms})

    def forward(self, output: ReidOutput, labels: Tensor) -> tuple[dict[str, Tensor], dict[str, float]]:
        losses: dict[str, Tensor] = {}
        stats: dict[str, float] = {}
        for term in self.terms:
            value = getattr(output, term.field)
            if value is None:
                raise ValueError(
                    f"loss term '{term.name}' reads the model output field '{term.field}', which is None "
                    "(logits are None when the model is built with num_classes == 0)"
                )
            loss, term_stats = term.module(value, labels)
            losses[term.name] = term.weight * loss
            stats.update({f"{term.name}/{key}": val for key, val in term_stats.items()})
        return losses, stats
