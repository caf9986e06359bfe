"""Run one CLI command in this process and send this process (or its process group) a signal at a chosen
moment, so tests can check what every command does when stopped: exit status, one line, files left.

    python signal_cli.py WHEN SIGNAL -- COMMAND ARGS...

WHEN: ``checkpoint-write``: after the first kilobytes torch.save writes of a checkpoint (mid-write);
``first-image``: when the first image is read (before anything is written); ``slow-images``: read each
image slowly, printing ``reading`` (flushed) on stdout, so a test can send the signal itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torch

import trytry_reid.data.images as images
import trytry_reid.engine.checkpoint as checkpoint
from trytry_reid.jobs.cli import main


def at_checkpoint_write(signum: int) -> None:
    real_save = torch.save

    class Tripwire:
        """Passes torch.save's writes on to the real file and sends the signal after the first 4 KiB."""

        def __init__(self, handle) -> None:
            self.handle, self.written, self.fired = handle, 0, False

        def write(self, data) -> int:
            written = self.handle.write(data)
            self.written += len(data)
            if self.written > 4096 and not self.fired:
                self.fired = True
                os.kill(os.getpid(), signum)
            return written

        def flush(self) -> None:
            self.handle.flush()

    checkpoint.torch.save = lambda state, handle, *a, **k: real_save(state, Tripwire(handle), *a, **k)


def at_image_read(signum: int | None, delay: float = 0.0) -> None:
    real_read = images.read_image

    def read(path: str):
        if signum is not None:
            os.kill(os.getpid(), signum)
        if delay:
            print("reading", flush=True)
            time.sleep(delay)
        return real_read(path)

    images.read_image = read


if __name__ == "__main__":
    when, name, separator, *argv = sys.argv[1:]
    assert separator == "--", "usage: signal_cli.py WHEN SIGNAL -- COMMAND ARGS..."
    signum = getattr(signal, name)
    if when == "checkpoint-write":
        at_checkpoint_write(signum)
    elif when == "first-image":
        at_image_read(signum)
    elif when == "slow-images":
        at_image_read(None, delay=0.3)
    else:
        raise SystemExit(f"unknown moment {when!r}")
    sys.exit(main(argv))
