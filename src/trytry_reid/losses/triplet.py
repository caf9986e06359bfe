"""Triplet loss over selected ``(a, p, n)`` index triplets, with the seed's valid-triplet statistics."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trytry_reid.catalog import lookup
from trytry_reid.losses.selectors import SELECTORS

# Squared distances are clamped to at least this before the sqrt: sqrt has an infinite slope at 0, and the
# clamp's zero gradient keeps identical rows from producing inf/NaN gradients.
_MIN_SQUARED_DISTANCE = 1e-12


def euclidean_distances(x: Tensor) -> Tensor:
    """``[N, D] -> [N, N]`` Euclidean distances via ``|a|^2 + |b|^2 - 2 a.b`` (one matmul).

    The expansion cancels in float32: two identical rows of norm ~10 can come out ~1e-3 apart. The diagonal
    is set to exactly 0 (with no gradient); the selectors never read it.
    """
    squared_norms = x.pow(2).sum(dim=1)
    squared = squared_norms[:, None] + squared_norms[None, :] - 2.0 * (x @ x.t())
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    return squared.clamp(min=_MIN_SQUARED_DISTANCE).sqrt().masked_fill(eye, 0.0)


def cosine_distances(x: Tensor) -> Tensor:
    """``[N, D] -> [N, N]`` cosine distances ``1 - cos(a, b)`` (in [0, 2])."""
    unit = F.normalize(x, dim=1)
    return 1.0 - unit @ unit.t()


METRICS: dict[str, Callable[[Tensor], Tensor]] = {
    "euclidean": euclidean_distances,
    "cosine": cosine_distances,
}


class TripletLoss(nn.Module):
    """Mean over selected triplets of ``relu(d_ap - d_an + margin)``, or ``softplus(d_ap - d_an)`` if ``soft``.

    - ``selector``: a name in ``SELECTORS``; the selectors "semihard" and "random_negative" use ``margin``
      to choose negatives even when ``soft`` is set.
    - With the selector "all" the mean is over the triplets with a positive loss only (batch-all+, Hermans et
      al. 2017): averaging over all of them would drown the few informative ones in zeros.
    - No selected triplet gives a zero loss that is still connected to ``features`` (``backward`` works).

    Stats (floats): ``triplets`` selected, ``valid_triplets`` violating the margin (``d_ap - d_an + margin >
    0``, i.e. a positive hinge loss), ``valid_fraction``, and ``mean_pos_dist`` / ``mean_neg_dist`` over
    the selected triplets (NaN when none was selected, so an empty batch never looks like a collapse).
    """

    def __init__(self, selector: str = "hardest", margin: float = 0.3, metric: str = "euclidean",
                 soft: bool = False) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"triplet margin must be >= 0, got {margin}")
        self.select = lookup(SELECTORS, selector, "triplet selector")
        self.distances = lookup(METRICS, metric, "triplet metric")
        self.selector, self.margin, self.metric, self.soft = selector, float(margin), metric, soft
        self.mean_over_violating = selector == "all"

    def forward(self, features: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        if features.dim() != 2 or labels.dim() != 1 or labels.shape[0] != features.shape[0]:
            raise ValueError(
                f"TripletLoss expects features [N, D] and labels [N], got {tuple(features.shape)} and "
                f"{tuple(labels.shape)}"
            )
        dist = self.distances(features)
        a, p, n = self.select(dist.detach(), labels, self.margin)
        d_ap, d_an = dist[a, p], dist[a, n]
        violating = (d_ap - d_an + self.margin > 0).detach()
        if self.soft:
            losses = F.softplus(d_ap - d_an)
        else:
            losses = F.relu(d_ap - d_an + self.margin)
        if self.mean_over_violating and not self.soft:
            loss = losses.sum() / violating.sum().clamp(min=1)
        else:
            loss = losses.sum() / max(len(losses), 1)
        return loss, _stats(d_ap.detach(), d_an.detach(), violating)


def _stats(d_ap: Tensor, d_an: Tensor, violating: Tensor) -> dict[str, float]:
    """The triplet statistics, read from the device in one transfer."""
    triplets = len(d_ap)
    if triplets == 0:
        nan = float("nan")
        return {"triplets": 0.0, "valid_triplets": 0.0, "valid_fraction": 0.0, "mean_pos_dist": nan,
                "mean_neg_dist": nan}
    valid, mean_pos, mean_neg = torch.stack([violating.sum().to(d_ap.dtype), d_ap.mean(), d_an.mean()]).tolist()
    return {
        "triplets": float(triplets),
        "valid_triplets": valid,
        "valid_fraction": valid / triplets,
        "mean_pos_dist": mean_pos,
        "mean_neg_dist": mean_neg,
    }
