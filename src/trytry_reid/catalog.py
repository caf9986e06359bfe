"""One lookup mechanism for every extension point: a plain dict of name -> factory."""

from __future__ import annotations

import difflib
from typing import Mapping, TypeVar

from .errors import ReidError

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
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UnknownNameError(f"unknown {what} '{name}'.{hint} Valid names: {', '.join(valid)}")
