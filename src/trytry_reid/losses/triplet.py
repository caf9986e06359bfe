"""Triplet loss over selected ``(a, p, n)`` index triplets, with the seed's valid-triplet statistics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trytry_reid.catalog import lookup
from trytry_reid.evaluation.distance import DISTANCES
from trytry_reid.losses.selectors import SELECTORS


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
        self.distance = lookup(DISTANCES, metric, "triplet metric")
        self.selector, self.margin, self.metric, self.soft = selector, float(margin), metric, soft
        self.mean_over_violating = selector == "all"

    def forward(self, features: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        if features.dim() != 2 or labels.dim() != 1 or labels.shape[0] != features.shape[0]:
            raise ValueError(
                f"TripletLoss expects features [N, D] and labels [N], got {tuple(features.shape)} and "
                f"{tuple(labels.shape)}"
            )
        dist = self.distance(features, features)  # the diagonal (~0) is never read: a != p, a != n
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
