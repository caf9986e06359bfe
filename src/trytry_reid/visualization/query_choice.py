"""Which queries to draw in a ranking grid: the first N, a seeded random N, the worst N by AP, or named files.

Strategies live in ``QUERY_STRATEGIES`` (name -> function) and are found with ``catalog.lookup``; each takes
``(n, num_queries, seed, all_ap, query_paths, names)`` and returns query indices.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from trytry_reid.catalog import lookup
from trytry_reid.errors import UsageError


def _first(n: int, num_queries: int, **_) -> list[int]:
    return list(range(min(n, num_queries)))


def _random(n: int, num_queries: int, seed: int = 0, **_) -> list[int]:
    """A seeded sample without replacement, returned in increasing index order."""
    picked = np.random.default_rng(seed).choice(num_queries, size=min(n, num_queries), replace=False)
    return sorted(int(i) for i in picked)


def _worst(n: int, num_queries: int, all_ap: np.ndarray | None = None, **_) -> list[int]:
    """The ``n`` lowest-AP queries, worst first (ties by index); NaN (skipped queries) is never chosen."""
    if all_ap is None:
        raise ValueError("query strategy 'worst' needs all_ap (per-query AP from evaluate_rank)")
    ap = np.asarray(all_ap, dtype=np.float64)
    if ap.shape != (num_queries,):
        raise ValueError(f"all_ap must have shape ({num_queries},) (one AP per query), got {ap.shape}")
    valid = np.flatnonzero(~np.isnan(ap))
    order = valid[np.argsort(ap[valid], kind="stable")]
    return [int(i) for i in order[:n]]


def _named(
    n: int, num_queries: int, query_paths: Sequence[str] | None = None,
    names: Sequence[str] | None = None, **_
) -> list[int]:
    """Queries whose full path or basename equals one of ``names``, in the order of ``names``.

    ``n`` does not cap the list: every named file is returned.
    """
    if not names:
        raise UsageError("query strategy 'names' needs the file names of the queries to draw (rank: --names FILE ...)")
    if query_paths is None:
        raise ValueError("query strategy 'names' needs query_paths")
    if len(query_paths) != num_queries:
        raise ValueError(f"query_paths has {len(query_paths)} entries but num_queries is {num_queries}")
    index: dict[str, int] = {}
    for i, path in enumerate(query_paths):
        index.setdefault(os.path.basename(str(path)), i)
        index.setdefault(str(path), i)
    missing = [name for name in names if str(name) not in index]
    if missing:
        examples = ", ".join(os.path.basename(str(p)) for p in list(query_paths)[:5])
        raise UsageError(f"query names not found among the {num_queries} queries: {missing[:5]}; "
                         f"valid names look like: {examples}")
    return [index[str(name)] for name in names]


QUERY_STRATEGIES: dict[str, Callable[..., list[int]]] = {
    "first": _first,
    "random": _random,
    "worst": _worst,
    "names": _named,
}


def choose_queries(
    strategy: str,
    n: int,
    *,
    num_queries: int,
    seed: int = 0,
    all_ap: np.ndarray | None = None,
    query_paths: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> list[int]:
    """Indices of the queries to draw, chosen by ``strategy`` ("first" | "random" | "worst" | "names")."""
    choose = lookup(QUERY_STRATEGIES, strategy, "query strategy")
    if n < 1:
        raise ValueError(f"number of queries to choose must be >= 1, got {n}")
    if num_queries < 1:
        raise ValueError(f"num_queries must be >= 1, got {num_queries}")
    return choose(n, num_queries, seed=seed, all_ap=all_ap, query_paths=query_paths, names=names)
