"""One lookup mechanism for every extension point: a plain dict of name -> factory."""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping, TypeVar

from trytry_reid.errors import ReidError

T = TypeVar("T")


class UnknownNameError(ReidError, KeyError):
    """A name that is not in a catalog; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def lookup(catalog: Mapping[str, T], name: str, what: str) -> T:
    """Return ``catalog[name]`` or raise UnknownNameError naming ``what`` and the valid names."""
    if name in catalog:
        return catalog[name]
    valid = sorted(catalog)
    raise UnknownNameError(f"unknown {what} '{name}'.{did_you_mean(name, valid)} Valid names: {', '.join(valid)}")


def did_you_mean(name: object, valid: Iterable[str], cutoff: float = 0.6) -> str:
    """" Did you mean 'x'?" for the valid name closest to ``name``, or "" when none is close."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=cutoff)
    return f" Did you mean '{close[0]}'?" if close else ""
