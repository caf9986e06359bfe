"""Export formats (a catalog: name -> how to write a model, how to open it) and the staged, checked export.

An export is written into a hidden staging folder next to ``--out`` and, when asked, opened with its own engine
and checked; only then are its files moved to ``--out`` (an OpenVINO IR's .bin before its .xml, a stop signal
waiting for both). A failed check or a signal leaves nothing half-made at ``--out``, and an earlier file there
is kept.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from trytry_reid.catalog import lookup
from trytry_reid.serving.runtimes import InferenceModel, model_files, open_onnx, open_openvino


def write_onnx(loaded_model, out_path: Path, inputs: list[np.ndarray] | None = None) -> Path:
    """fp32 ONNX; with calibration ``inputs``, the INT8 (QDQ) model quantized from it."""
    from trytry_reid.serving.export import export_onnx

    if inputs is None:
        return export_onnx(loaded_model, out_path)
    from trytry_reid.serving.quantize import quantize_onnx

    with tempfile.TemporaryDirectory() as tmp:
        return quantize_onnx(export_onnx(loaded_model, Path(tmp) / "fp32.onnx"), out_path, inputs)


def write_openvino(loaded_model, out_path: Path, inputs: list[np.ndarray] | None = None) -> Path:
    from trytry_reid.serving.export_openvino import export_openvino

    return export_openvino(loaded_model, out_path, inputs)


class ExportFormat(NamedTuple):
    write: Callable[..., Path]                 # (loaded_model, out_path, calibration inputs or None) -> path
    open: Callable[[Path], InferenceModel]     # the engine that runs the written file
    suffix: str


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(write_onnx, open_onnx, ".onnx"),
    "openvino": ExportFormat(write_openvino, open_openvino, ".xml"),
}


def export_model(loaded_model, out_path: str | Path, fmt: str, *, inputs: list[np.ndarray] | None = None,
                 check: Callable[[InferenceModel], dict] | None = None) -> tuple[Path, dict | None]:
    """Write ``loaded_model`` as ``fmt`` to ``out_path`` (INT8 when calibration ``inputs`` are given); with
    ``check`` (InferenceModel -> report, raising when it fails) the file reaches ``out_path`` only after
    ``check`` passed. Returns (path, report or None)."""
    from trytry_reid.engine.signals import deferred_stop

    entry = lookup(EXPORT_FORMATS, fmt, "export format")
    out_path = Path(out_path)
    if fmt == "openvino" and out_path.suffix != entry.suffix:
        from trytry_reid.serving.export_openvino import check_ir_path

        check_ir_path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".unchecked", dir=out_path.parent))
    try:
        written = entry.write(loaded_model, staging / out_path.name, inputs)
        report = None if check is None else check(entry.open(written))
        with deferred_stop():
            for source in reversed(model_files(written)):       # the .xml, which names a complete model, last
                source.replace(out_path.with_name(source.name))
        return out_path, report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
