"""Checkpoints that survive crashes and never execute code when loaded.

Saving writes a temporary file in the destination folder, flushes and fsyncs it, renames it over the
destination with ``os.replace`` (atomic on POSIX) and fsyncs the folder, so a crash or a full disk at any
moment leaves either the previous file or the new one, never a torn one. Loading always uses
``torch.load(weights_only=True)``: a checkpoint must hold only tensors, numbers, strings, lists and dicts.
What a resume state holds, and restoring it, live in engine/state.py.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from trytry_reid.atomic import atomic_file
from trytry_reid.engine.signals import deferred_stop
from trytry_reid.errors import ReidError

_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")


class CheckpointError(ReidError, RuntimeError):
    """A checkpoint could not be written or read; the message names the file and the reason."""


def save_checkpoint(state: dict[str, Any], path: str | Path, keep: int = 3) -> None:
    """Write ``state`` to ``path`` atomically.

    When the file name ends in a number (``epoch_0003.pt``), older siblings with the same prefix and suffix
    are deleted so that only the ``keep`` highest-numbered ones remain (``keep <= 0`` keeps all). Names
    without a number (``last.pt``, ``best.pt``) are never rotated. Raises CheckpointError when the write
    fails; the previous file at ``path`` is then left untouched.
    """
    path = Path(path)
    try:
        with deferred_stop(), atomic_file(path) as handle:   # a second Ctrl-C waits for a complete file
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise CheckpointError(_write_failure(path, exc)) from exc
    _fsync_dir(path.parent)
    if keep > 0:
        rotate(path, keep)


def _write_failure(path: Path, exc: OSError) -> str:
    reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else str(exc)
    kept = "the previous checkpoint there is intact" if path.exists() else "no previous checkpoint existed"
    return f"could not write checkpoint {path}: {reason}; {kept}"


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (the directory entry) across a power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rotate(path: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` highest-numbered siblings of ``path``; return the deleted files."""
    match = _NUMBERED.match(path.stem)
    if match is None:
        return []
    prefix = match["prefix"]
    numbered = []
    for sibling in path.parent.glob(f"{glob_escape(prefix)}*{path.suffix}"):
        m = _NUMBERED.match(sibling.stem)
        if m is not None and m["prefix"] == prefix:
            numbered.append((int(m["number"]), sibling))
    numbered.sort()
    doomed = [p for _, p in numbered[:-keep]]
    for old in doomed:
        _remove_quietly(old)
    return doomed


def glob_escape(text: str) -> str:
    """Escape glob metacharacters so a prefix like ``run[1]_`` matches literally."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise CheckpointError naming the file on any problem.

    A file that needs pickled code (classes or functions other than torch's tensor types) is refused and
    never executed; a truncated or corrupt file and a missing path each get their own message.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; e.g. "
                              f"{path / 'checkpoints' / 'last.pt'} or {path / 'best.pt'}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (no such file)")
    other = _not_a_checkpoint(path)
    if other is not None:
        raise CheckpointError(f"{path} is not a torch checkpoint: it is {other}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise CheckpointError(
                f"refused to load checkpoint {path}: it carries pickled code or objects other than plain "
                f"tensors/numbers/strings/lists/dicts, which could run arbitrary code (loaded with "
                f"weights_only=True). Detail: {_first_line(exc)}"
            ) from exc
        raise CheckpointError(_corrupt(path, exc)) from exc
    except Exception as exc:  # torch raises many types for damaged archives; all mean the same here
        raise CheckpointError(_corrupt(path, exc)) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


ZIP_MAGIC = b"PK\x03\x04"      # torch.save's format since 1.6
PICKLE_PROTOCOL = 0x80          # the legacy format starts with a pickle (protocol >= 2)
FILE_KINDS = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"GIF8": "a GIF image",
              b"BM": "a BMP image", b"\x93NUMPY": "a NumPy .npy array", b"%PDF": "a PDF document"}


def _not_a_checkpoint(path: Path) -> str | None:
    """What ``path`` is when its first bytes say it cannot be a torch checkpoint, else None."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head or head.startswith(ZIP_MAGIC) or head[0] == PICKLE_PROTOCOL:
        return None     # empty or plausible: torch.load tells corrupt from valid
    for magic, kind in FILE_KINDS.items():
        if head.startswith(magic):
            return kind
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)    # a character cut at 512 bytes is fine
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        return "neither a zip archive nor a pickle (the two formats torch.save writes)"
    return "a text file (YAML, JSON or similar), not one written by torch.save"


def _corrupt(path: Path, exc: BaseException) -> str:
    return (
        f"checkpoint {path} is truncated or corrupt and cannot be read "
        f"({type(exc).__name__}: {_first_line(exc)})"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB pieces): the identity of a checkpoint's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(folder: str | Path, need_bytes: int = 0) -> Path:
    """Fail fast, before training, when checkpoints cannot be written to ``folder``.

    Creates the folder, writes, fsyncs and deletes a probe file, and checks that at least ``need_bytes``
    are free. Returns the folder.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
            _remove_quietly(Path(probe))
    except OSError as exc:
        raise CheckpointError(f"checkpoint folder {folder} is not writable: {exc}") from exc
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise CheckpointError(
            f"checkpoint folder {folder} has {free / 2**20:.1f} MiB free, "
            f"need at least {need_bytes / 2**20:.1f} MiB for checkpoints"
        )
    return folder


def estimate_checkpoint_bytes(*modules_or_states: Any) -> int:
    """Rough size of a checkpoint: bytes of every tensor in the given modules/state dicts."""
    total = 0
    for item in modules_or_states:
        state = item.state_dict() if hasattr(item, "state_dict") else item
        total += _tensor_bytes(state)
    return total


def _tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def weights_sha256(model) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and bytes, in order), on any device."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
