"""Each triplet selector against a brute-force loop over all (a, p, n) written from its definition.

Distances are small integers, so ties are everywhere, and the labels include identities of one image.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from trytry_reid.catalog import UnknownNameError, lookup
from trytry_reid.losses.selectors import SELECTORS

SEEDS = range(12)
MARGIN = 2.0


def random_case(seed: int, n: int = 14) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric integer distance matrix (zero diagonal) and labels with singletons among them."""
    g = torch.Generator().manual_seed(seed)
    upper = torch.randint(0, 6, (n, n), generator=g).float().triu(diagonal=1)
    dist = upper + upper.t()
    labels = torch.randint(0, 6, (n,), generator=g)
    labels[-2:] = torch.tensor([100, 101])  # two identities with a single image each
    return dist, labels


def positives(labels, a):
    return [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]


def negatives(labels, a):
    return [n for n in range(len(labels)) if labels[n] != labels[a]]


def brute_hardest(dist, labels):
    out = []
    for a in range(len(labels)):
        pos, neg = positives(labels, a), negatives(labels, a)
        if pos and neg:
            p = min(pos, key=lambda i: (-dist[a, i], i))  # farthest, lowest index on ties
            n = min(neg, key=lambda i: (dist[a, i], i))  # closest, lowest index on ties
            out.append((a, p, n))
    return out


def brute_semihard(dist, labels, margin):
    out = []
    for a in range(len(labels)):
        for p in positives(labels, a):
            cands = [n for n in negatives(labels, a) if dist[a, p] < dist[a, n] < dist[a, p] + margin]
            if cands:
                out.append((a, p, min(cands, key=lambda i: (dist[a, i], i))))
    return out


def brute_violating(dist, labels, margin):
    """{(a, p): negatives with d_an < d_ap + margin} for every positive pair that has at least one."""
    out = {}
    for a in range(len(labels)):
        for p in positives(labels, a):
            cands = [n for n in negatives(labels, a) if dist[a, n] < dist[a, p] + margin]
            if cands:
                out[(a, p)] = cands
    return out


def brute_all(dist, labels):
    return [(a, p, n) for a in range(len(labels)) for p in positives(labels, a) for n in negatives(labels, a)]


def as_list(triplets):
    a, p, n = triplets
    assert a.dtype == p.dtype == n.dtype == torch.int64
    assert len(a) == len(p) == len(n)
    return list(zip(a.tolist(), p.tolist(), n.tolist()))


@pytest.mark.parametrize("seed", SEEDS)
def test_hardest_matches_brute_force(seed):
    dist, labels = random_case(seed)
    assert as_list(SELECTORS["hardest"](dist, labels, MARGIN)) == brute_hardest(dist, labels.tolist())


@pytest.mark.parametrize("seed", SEEDS)
def test_semihard_matches_brute_force(seed):
    dist, labels = random_case(seed)
    got = as_list(SELECTORS["semihard"](dist, labels, MARGIN))
    expected = brute_semihard(dist, labels.tolist(), MARGIN)
    assert got == expected
    assert len(expected) > 0  # the case exercises the selection, not only the empty path


@pytest.mark.parametrize("seed", SEEDS)
def test_all_matches_brute_force(seed):
    dist, labels = random_case(seed)
    assert as_list(SELECTORS["all"](dist, labels, MARGIN)) == brute_all(dist, labels.tolist())


@pytest.mark.parametrize("seed", SEEDS)
def test_random_negative_picks_one_violating_negative_per_eligible_pair(seed):
    dist, labels = random_case(seed)
    expected = brute_violating(dist, labels.tolist(), MARGIN)
    got = as_list(SELECTORS["random_negative"](dist, labels, MARGIN))
    assert [(a, p) for a, p, _ in got] == sorted(expected)  # each eligible pair exactly once, no other
    for a, p, n in got:
        assert n in expected[(a, p)]


def test_random_negative_is_uniform_over_candidates_and_repeats_with_the_seed():
    # anchor 0, positive 1 at distance 2; negatives 2, 3, 4 violate (d < 2 + 1), negative 5 does not.
    dist = torch.tensor([0.0, 2.0, 1.0, 2.5, 0.5, 3.0])
    dist = torch.stack([dist] + [torch.full((6,), 9.0)] * 5)
    dist = torch.minimum(dist, dist.t()).fill_diagonal_(0.0)
    labels = torch.tensor([0, 0, 1, 2, 3, 4])
    torch.manual_seed(0)
    counts = Counter()
    for _ in range(3000):
        a, p, n = SELECTORS["random_negative"](dist, labels, 1.0)
        chosen = {(ai, pi): ni for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist())}
        counts[chosen[(0, 1)]] += 1
    assert set(counts) == {2, 3, 4}
    assert all(0.28 < counts[k] / 3000 < 0.39 for k in (2, 3, 4))
    torch.manual_seed(7)
    first = SELECTORS["random_negative"](*random_case(3), MARGIN)
    torch.manual_seed(7)
    second = SELECTORS["random_negative"](*random_case(3), MARGIN)
    assert all(torch.equal(x, y) for x, y in zip(first, second))


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_no_triplet_without_positives_or_negatives(name):
    dist = torch.rand(5, 5)
    for labels in (torch.arange(5), torch.zeros(5, dtype=torch.long)):
        a, p, n = SELECTORS[name](dist, labels, 0.3)
        assert len(a) == len(p) == len(n) == 0 and a.dtype == torch.int64


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_selectors_ignore_gradients_and_validate_shapes(name):
    x = torch.randn(6, 3, requires_grad=True)
    dist = torch.cdist(x, x)
    a, p, n = SELECTORS[name](dist, torch.tensor([0, 0, 1, 1, 2, 2]), 5.0)
    assert not a.requires_grad and len(a) > 0
    with pytest.raises(ValueError, match="square"):
        SELECTORS[name](torch.rand(4, 5), torch.arange(4), 0.3)
    with pytest.raises(ValueError, match="labels"):
        SELECTORS[name](torch.rand(4, 4), torch.arange(3), 0.3)


def test_unknown_selector_lists_valid_names():
    with pytest.raises(UnknownNameError, match="hardest"):
        lookup(SELECTORS, "hardes", "triplet selector")
