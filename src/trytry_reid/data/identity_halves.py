"""A fixed split of a test-only dataset's identities into a validation half and a test half.

Choosing a recipe on a cross-domain set and then reporting that same set measures the choice, not the
recipe. So a cross-domain dataset is cut once, by identity: levers are compared on the validation half, and
only the chosen recipe is scored on the test half. The cut is by position in the sorted list of identities
(the first, third, fifth, ... identity -> validation; the second, fourth, ... -> test): no random draw, so it
depends on the dataset's identity numbers only and anyone can rebuild it from the file names. For VIPeR
(632 identities numbered 000-631 in the file names) that is the even numbers (000, 002, ..., 630) for
validation and the odd ones (001, ..., 631) for test, 316 identities each.
"""

from __future__ import annotations

from typing import Protocol, Sequence, TypeVar

HALVES = ("val", "test")


class HasPid(Protocol):
    @property
    def pid(self) -> int: ...


R = TypeVar("R", bound=HasPid)


def half_identities(pids: Sequence[int], half: str) -> set[int]:
    """The identities of ``half`` ("val": sorted positions 0, 2, 4, ...; "test": 1, 3, 5, ...)."""
    if half not in HALVES:
        raise ValueError(f"identity half {half!r}: expected one of {', '.join(HALVES)}")
    start = HALVES.index(half)
    return set(sorted(set(pids))[start::2])


def keep_half(query: list[R], gallery: list[R], half: str) -> tuple[list[R], list[R]]:
    """The query and gallery records (anything with a ``pid``) of the identities in ``half``, the halves
    taken over the identities of query and gallery together; distractors (pid 0) stay in both halves'
    galleries, as they match no query."""
    chosen = half_identities([r.pid for r in [*query, *gallery] if r.pid > 0], half)
    return [r for r in query if r.pid in chosen], [r for r in gallery if r.pid in chosen or r.pid == 0]
