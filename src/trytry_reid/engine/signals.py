"""SIGINT/SIGTERM during training: finish the step, checkpoint, stop; a second signal stops at once. Other
commands stop at the first signal, but never in the middle of a file being written.

Pre-empted GPU jobs get SIGTERM and a short grace period. :class:`StopRequest` turns the first signal into a
flag the training loop checks after each step; the loop then writes a resumable checkpoint and raises
:class:`TrainingInterrupted`. A second signal means "now": the handlers are uninstalled and
:class:`ImmediateStop` (a ``SystemExit``) is raised wherever the program is, except inside
:func:`deferred_stop` (a checkpoint being written): there it waits for the block to finish, so the file is
complete, and is raised then. Processes forked from the training process (DataLoader workers, which also
get the terminal's Ctrl-C) ignore the signals and leave the stopping to it.

``StopRequest(graceful=False)`` (what the command line installs around every command) treats the first
signal like a second one: :class:`ImmediateStop` at once, or at the end of the :func:`deferred_stop` block
being run (a checkpoint, or a command's commit of several files), so temporary files are removed by the
exception's unwinding and no file is left half-written. Training's own ``StopRequest`` nests inside it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Callable

HANDLED = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(SystemExit):
    """Training stopped on a signal after writing a checkpoint.

    A ``SystemExit`` so that an uncaught one ends the process quietly with exit status ``128 + signum``
    (the shell convention: 130 for SIGINT, 143 for SIGTERM); ``message`` says how to resume.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(128 + signum)
        self.message = message
        self.signum = signum

    def __str__(self) -> str:
        return self.message


class ImmediateStop(SystemExit):
    """A second signal: leave at once (exit status ``128 + signum``), no checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class StopRequest:
    """Context manager installing the handlers; ``requested`` becomes the signal number on the first one;
    the second raises :class:`ImmediateStop`.

    Outside the main thread (where Python cannot install signal handlers) it installs nothing and
    ``requested`` stays ``None``. ``graceful=False``: the first signal already stops (see the module docstring).
    """

    def __init__(self, graceful: bool = True) -> None:
        self.graceful = graceful
        self.requested: int | None = None
        self._previous: dict[int, Callable | int | None] = {}
        self._pid = os.getpid()
        self._deferring = 0              # depth of deferred_stop blocks running
        self._pending: int | None = None  # a second signal that arrived inside one
        self._outer: StopRequest | None = None

    def __enter__(self) -> "StopRequest":
        global _ACTIVE
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
            self._outer, _ACTIVE = _ACTIVE, self
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _ACTIVE
        if _ACTIVE is self:
            _ACTIVE = self._outer
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            return  # a forked child (a DataLoader worker): the training process stops it
        name = signal.Signals(signum).name
        first = self.requested is None
        if first and not self.graceful:
            self.requested = signum
            self._stop(signum, f"\n{name} received: stopping as soon as the file being written is complete")
            return
        if first:
            self.requested = signum
            print(
                f"\n{name} received: finishing the current step and writing a checkpoint "
                f"(send it again to stop at once, without a checkpoint)",
                file=sys.stderr,
                flush=True,
            )
            return
        self._stop(signum, f"\nsecond {name}: stopping as soon as the checkpoint being written is complete",
                   f"\nsecond {name}: stopping now, without a checkpoint")

    def _stop(self, signum: int, deferred_note: str, now_note: str | None = None) -> None:
        """Raise ImmediateStop now, or once the deferred_stop block running ends (saying so)."""
        if self._deferring:
            self._pending = signum
            print(deferred_note, file=sys.stderr, flush=True)
            return
        self._restore()
        if now_note is not None:
            print(now_note, file=sys.stderr, flush=True)
        raise ImmediateStop(signum)


_ACTIVE: StopRequest | None = None  # the StopRequest whose handlers are installed


@contextmanager
def deferred_stop() -> Iterator[None]:
    """A block a stop signal must not cut short (writing a checkpoint, or files that must change together):
    the stop waits for its end. Raising inside torch.save would leave its zip writer half-way (it then
    reports 'unexpected pos')."""
    request = _ACTIVE
    if request is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    request._deferring += 1
    try:
        yield
    finally:
        request._deferring -= 1
        if request._deferring == 0 and request._pending is not None:
            signum, request._pending = request._pending, None
            request._restore()
            raise ImmediateStop(signum)


def interrupted_message(command: str, signum: int) -> str:
    """The one line a command stopped by a signal prints (exit status ``128 + signum``)."""
    return (f"trytry-reid {command}: stopped by {signal.Signals(signum).name}; files are written whole or not "
            f"at all, so none was left half-written")


def resume_message(signum: int, checkpoint: str | None) -> str:
    """The text shown when training stops on a signal."""
    name = signal.Signals(signum).name
    if checkpoint is None:
        return f"training stopped by {name}; no checkpoint folder was given, so it cannot be resumed"
    return (
        f"training stopped by {name}; a resumable checkpoint was written to {checkpoint}. "
        f"Resume with the same command plus: --resume {checkpoint}"
    )
