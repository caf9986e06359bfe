"""Files written whole or not at all: a temporary file in the same folder, renamed over the target on success.

``os.replace`` is atomic on POSIX, so a reader (or a crash) sees either the previous file or the complete new
one, never half of it. Checkpoints add fsync and signal deferral on top (engine/checkpoint.py). The file gets
the mode any newly created file gets (0666 less the umask, e.g. 0644), not the 0600 of ``mkstemp``, so that
everything a run writes has one mode.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (/proc), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Yield a handle to a temporary sibling of ``path``; it replaces ``path`` when the block ends without an
    exception, and is removed otherwise (``path`` is then left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_figure(figure, path: str | Path, dpi: int) -> Path:
    """Save a matplotlib figure (format from the suffix, PNG when there is none) atomically; returns the path."""
    path = Path(path)
    with atomic_file(path) as handle:
        figure.savefig(handle, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi)
    return path
