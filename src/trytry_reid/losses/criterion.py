"""Named, weighted loss terms, each reading one field of the model's ReidOutput; the LOSSES catalog.

``LOSSES`` maps a loss name to a :class:`LossEntry`: how to build the module from its own keyword arguments
(the loss's config section without ``weight``) and the model's sizes, and which ``ReidOutput`` field it
reads. Adding a loss is its module, one entry here and its config section (``config.LossConfig``); the
builders, the config checks and the training loop follow the catalog.

Learnable loss parameters are trained one of two ways, chosen by the module: a module with an
``own_optimizer_lr`` attribute (BoT's centers) gets a separate SGD at that rate, its gradient divided by the
term's weight (:meth:`Criterion.own_optimizer_groups`); any other learnable loss parameter (proxies, a
classifier kept in the loss) is trained with the model's optimizer (:meth:`Criterion.shared_parameters`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor, nn

from trytry_reid.catalog import lookup
from trytry_reid.losses.center import CenterLoss
from trytry_reid.losses.cosface import CosFaceLoss
from trytry_reid.losses.cross_entropy import CrossEntropyLoss
from trytry_reid.losses.triplet import TripletLoss
from trytry_reid.models.reid_model import ReidOutput


@dataclass(frozen=True)
class LossEntry:
    """``build(num_classes=, feature_dim=, **params) -> module``; ``field``: the ReidOutput field it reads;
    ``standalone``: whether it can train a model without another term (center loss cannot)."""

    build: Callable[..., nn.Module]
    field: str
    standalone: bool = True


LOSSES: dict[str, LossEntry] = {
    "cross_entropy": LossEntry(lambda num_classes, feature_dim, **params: CrossEntropyLoss(**params), "logits"),
    "triplet": LossEntry(lambda num_classes, feature_dim, **params: TripletLoss(**params), "features"),
    "center": LossEntry(lambda num_classes, feature_dim, **params: CenterLoss(num_classes, feature_dim, **params),
                        "features", standalone=False),
    "cosface": LossEntry(lambda num_classes, feature_dim, **params: CosFaceLoss(num_classes, feature_dim, **params),
                         "bn_features"),
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


def build_term(loss: str, weight: float = 1.0, *, num_classes: int = 0, feature_dim: int = 0,
               field: str | None = None, name: str | None = None, **params: Any) -> LossTerm:
    """A LossTerm from ``LOSSES[loss]``; ``field`` defaults to the loss's own, ``name`` to ``loss``."""
    entry = lookup(LOSSES, loss, "loss")
    module = entry.build(num_classes=num_classes, feature_dim=feature_dim, **params)
    return LossTerm(name or loss, module, float(weight), field or entry.field)


def build_criterion(sections: dict[str, dict[str, Any]], num_classes: int, feature_dim: int) -> "Criterion":
    """The terms of ``{loss name: {"weight": w, **params}}`` whose weight is > 0, in LOSSES order."""
    unknown = sorted(set(sections) - set(LOSSES))
    if unknown:
        raise ValueError(f"no loss named {', '.join(unknown)} in LOSSES ({', '.join(LOSSES)})")
    terms = []
    for name in LOSSES:
        params = dict(sections.get(name, {}))
        weight = float(params.pop("weight", 0.0))
        if weight > 0:
            terms.append(build_term(name, weight, num_classes=num_classes, feature_dim=feature_dim, **params))
    return Criterion(terms)


class Criterion(nn.Module):
    """``forward(output, labels) -> ({name: weight * loss}, {"name/key": stat})``.

    The term modules are registered (``nn.ModuleDict``), so parameters such as CenterLoss's centers appear
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

    def own_optimizer_groups(self) -> list[dict[str, Any]]:
        """SGD parameter groups of the terms that train at their own rate: ``{"params", "lr", "grad_scale"}``,
        ``grad_scale`` = 1 / the term's weight (the engine multiplies their gradient by it)."""
        return [{"params": list(term.module.parameters()), "lr": term.module.own_optimizer_lr,
                 "grad_scale": 1.0 / term.weight}
                for term in self.terms
                if getattr(term.module, "own_optimizer_lr", None) and any(True for _ in term.module.parameters())]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Learnable loss parameters trained with the model's optimizer (those of terms without their own)."""
        return [p for term in self.terms if not getattr(term.module, "own_optimizer_lr", None)
                for p in term.module.parameters() if p.requires_grad]

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
