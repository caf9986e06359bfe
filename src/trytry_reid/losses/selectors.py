"""Triplet selectors: pure functions ``(dist [N, N], labels [N], margin) -> (a, p, n)`` index tensors.

Selection is separate from the loss (as in pytorch-metric-learning): a selector looks at a detached distance
matrix under ``no_grad`` and returns three LongTensors of equal length; the loss then gathers the distances
it needs with gradients.

Shared definitions, for every selector:
- a positive pair is an ordered pair ``(a, p)`` with ``a != p`` and ``labels[a] == labels[p]`` (so both
  ``(a, p)`` and ``(p, a)`` appear);
- a negative of anchor ``a`` is any ``n`` with ``labels[n] != labels[a]``;
- an anchor with no positive (its identity has one image in the batch) or no negative yields no triplet;
- ties between equal distances go to the lowest index (``argmax``/``argmin`` return the first extreme);
- the output is ordered by anchor, then positive, then negative.

Everything is vectorised over the ``N x N`` matrix (``all`` builds an ``N x N x N`` mask, 16 MB at N=256).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Triplets = tuple[Tensor, Tensor, Tensor]


def _masks(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(positive [N, N], negative [N, N])`` boolean masks; validates the shapes."""
    if dist.dim() != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"triplet selector: dist must be a square [N, N] matrix, got shape {tuple(dist.shape)}")
    if labels.dim() != 1 or labels.shape[0] != dist.shape[0]:
        raise ValueError(
            f"triplet selector: labels must have shape [{dist.shape[0]}] to match dist, got {tuple(labels.shape)}"
        )
    labels = labels.to(dist.device)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=dist.device)
    return same & ~eye, ~same


@torch.no_grad()
def hardest(dist: Tensor, labels: Tensor, margin: float = 0.0) -> Triplets:
    """Batch hard (Hermans et al. 2017): per anchor, the farthest positive and the closest negative.

    ``margin`` is unused (accepted so every selector has one signature).
    """
    dist = dist.detach()
    pos, neg = _masks(dist, labels)
    anchors = torch.nonzero(pos.any(dim=1) & neg.any(dim=1)).squeeze(1)
    hardest_pos = dist.masked_fill(~pos, float("-inf")).argmax(dim=1)
    hardest_neg = dist.masked_fill(~neg, float("inf")).argmin(dim=1)
    return anchors, hardest_pos[anchors], hardest_neg[anchors]


def _positive_pairs(pos: Tensor) -> tuple[Tensor, Tensor]:
    pairs = torch.nonzero(pos)
    return pairs[:, 0], pairs[:, 1]


@torch.no_grad()
def semihard(dist: Tensor, labels: Tensor, margin: float) -> Triplets:
    """Semi-hard (Schroff et al. 2015): per positive pair, the closest negative with
    ``d_ap < d_an < d_ap + margin`` (strict on both sides). Pairs without such a negative are dropped.
    """
    dist = dist.detach()
    pos, neg = _masks(dist, labels)
    a, p = _positive_pairs(pos)
    d_ap = dist[a, p][:, None]  # [P, 1]
    d_an = dist[a]  # [P, N]
    candidates = neg[a] & (d_an > d_ap) & (d_an < d_ap + margin)
    closest = d_an.masked_fill(~candidates, float("inf")).argmin(dim=1)
    keep = candidates.any(dim=1)
    return a[keep], p[keep], closest[keep]


@torch.no_grad()
def random_negative(dist: Tensor, labels: Tensor, margin: float) -> Triplets:
    """Random negative: per positive pair, one negative drawn uniformly among those
    with a positive hinge loss, ``d_an < d_ap + margin``. Pairs without such a negative are dropped.

    Uses torch's global RNG (``torch.manual_seed`` makes it repeat): the argmax of i.i.d. uniform scores over
    the candidates is a uniform draw among them, one vectorised op for all pairs.
    """
    dist = dist.detach()
    pos, neg = _masks(dist, labels)
    a, p = _positive_pairs(pos)
    candidates = neg[a] & (dist[a] < dist[a, p][:, None] + margin)
    scores = torch.rand(candidates.shape, device=dist.device).masked_fill_(~candidates, -1.0)
    drawn = scores.argmax(dim=1)
    keep = candidates.any(dim=1)
    return a[keep], p[keep], drawn[keep]


@torch.no_grad()
def all_triplets(dist: Tensor, labels: Tensor, margin: float = 0.0) -> Triplets:
    """Batch all: every ``(a, p, n)`` with ``(a, p)`` a positive pair and ``n`` a negative of ``a``.

    ``margin`` is unused here; TripletLoss averages this selector's loss over the triplets with a positive
    loss (batch-all+).
    """
    pos, neg = _masks(dist.detach(), labels)
    triplets = torch.nonzero(pos[:, :, None] & neg[:, None, :])
    return triplets[:, 0], triplets[:, 1], triplets[:, 2]


SELECTORS: dict[str, Callable[[Tensor, Tensor, float], Triplets]] = {
    "hardest": hardest,
    "semihard": semihard,
    "random_negative": random_negative,
    "all": all_triplets,
}
