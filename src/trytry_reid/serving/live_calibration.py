"""The operating point a running server decides with: its model file's current one.

`calibrate` rewrites a checkpoint's threshold in place while `serve` may be running. Before each decision the
server compares the model file's identity, size and times with those it last read; when they changed it
opens the file again and takes its operating point, provided the file still holds the model it embeds with
(the same weights; for an INT8 file, the same file). A file that now holds another model, or that cannot be
read, stops the answers that need it (HTTP 409 / 503) instead of deciding with a threshold of another model or
a stale one; ranking alone (threshold 'none') goes on. OpenVINO's operating point lives in the .xml file that
is watched.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class ModelFileChanged(Exception):
    """The served model's file changed so that its operating point cannot be used; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def model_fingerprint(model) -> tuple:
    """What makes two opened files the same served model: fp32 weights by their hash (a recalibrated file keeps
    them; a checkpoint's are hashed in memory), an INT8 model by its files' hash (its quantization is its own)."""
    from trytry_reid.engine.checkpoint import weights_sha256
    from trytry_reid.serving.runtimes import files_sha256, model_files

    precision = model.contract.precision
    if precision == "fp32" and model.contract.weights_sha256:
        return precision, model.contract.weights_sha256
    if precision == "fp32" and model.loaded is not None:
        return precision, weights_sha256(model.loaded.model)
    return precision, files_sha256(model_files(Path(model.path)))


def file_signature(path: Path) -> tuple[int, ...]:
    """Changes when the file is replaced (a new inode: `calibrate` writes a new file and renames it) or
    rewritten in place (size, modification or change time)."""
    status = os.stat(path)
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


class LiveCalibration:
    """``current()``: the operating point of ``model``'s file as it is now (``model.contract.calibration`` for
    a model without a file). ``opener(engine, path)`` opens the file again (runtimes.open_model)."""

    def __init__(self, model, opener: Callable | None = None) -> None:
        from trytry_reid.serving.runtimes import open_model

        self.path: Path | None = None if model.path is None else Path(model.path)
        self.engine = model.engine
        self.calibration = model.contract.calibration
        self.opener = opener or open_model
        self.lock = threading.Lock()
        # None: the first answer reads the file again, so a `calibrate` that finished while the server was
        # starting (after the model was opened) is not missed
        self.signature: tuple[int, ...] | None = None
        self.refusal: tuple[tuple[int, ...], ModelFileChanged] | None = None   # kept until the file changes
        if self.path is not None:
            self.fingerprint = model_fingerprint(model)

    def current(self) -> dict | None:
        if self.path is None:
            return self.calibration
        with self.lock:
            try:
                signature = file_signature(self.path)
            except OSError as error:
                raise ModelFileChanged(503, f"model file {self.path} cannot be read ({error}); no decision is "
                                            "made until it can") from error
            if signature != self.signature:
                if self.refusal is not None and self.refusal[0] == signature:
                    raise self.refusal[1]       # the same unusable file: not read and hashed again
                try:
                    self._read_again(signature)
                except ModelFileChanged as refusal:
                    self.refusal = signature, refusal
                    raise
            return self.calibration

    def _read_again(self, signature: tuple[int, ...]) -> None:
        try:
            fresh = self.opener(self.engine, self.path)
        except Exception as error:   # a half-written or damaged file: refuse now, try again next request
            raise ModelFileChanged(503, f"model file {self.path} changed and cannot be read ({error}); no "
                                        "decision is made until it can") from error
        if model_fingerprint(fresh) != self.fingerprint:
            raise ModelFileChanged(409, f"model file {self.path} now holds another model than the one this "
                                        "server embeds with; restart `trytry-reid serve` (and rebuild the index "
                                        "if the weights changed)")
        before, self.calibration, self.signature = self.calibration, fresh.contract.calibration, signature
        self.refusal = None
        if before != self.calibration:
            log.info("operating point read again from %s: %s -> %s", self.path, describe(before),
                     describe(self.calibration))


def describe(calibration: dict | None) -> str:
    return "none" if calibration is None else f"threshold {calibration['threshold']:.4f}"
