"""Files written whole or not at all: a temporary file in the same folder, renamed over the target on success.

``os.replace`` is atomic on POSIX, so a reader (or a crash) sees either the previous file or the complete new
one, never half of it. Checkpoints add fsync and signal deferral on top (engine/checkpoint.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Yield a handle to a temporary sibling of ``path``; it replaces ``path`` when the block ends without an
    exception, and is removed otherwise (``path`` is then left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
