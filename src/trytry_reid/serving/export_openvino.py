"""OpenVINO IR export: the ONNX graph of ``export.py`` converted with ``openvino.convert_model``, saved in fp32.

An IR is two files, ``model.xml`` (the graph) and ``model.bin`` (the weights) beside it. The ONNX metadata
contract (input size, normalisation, feature size, precision, weights hash, operating point) is copied into
the model's ``rt_info`` under ``trytry_reid``, where ``runtimes.open_openvino`` reads it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from trytry_reid.serving.runtimes import OPENVINO_NAMESPACE, ModelFileError, require_package


def check_ir_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".xml":
        raise ModelFileError(f"--out {path}: an OpenVINO model is written as NAME.xml (with NAME.bin beside it)")
    return path


def convert_to_openvino(loaded_model, inputs=None):
    """(``openvino.Model`` of ``loaded_model``'s embedding, its metadata dict); with ``inputs`` (calibration
    crops, see quantize.py) the model is quantized to INT8 with NNCF and the metadata says so."""
    openvino = require_package("openvino", "openvino", "export --format openvino")
    from trytry_reid.serving.export import export_onnx, read_preprocessing

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(loaded_model, Path(tmp) / "model.onnx")
        meta = read_preprocessing(onnx_path)
        model = openvino.convert_model(str(onnx_path))
    if inputs is not None:
        from trytry_reid.serving.quantize import quantize_openvino

        model = quantize_openvino(model, inputs)
        meta.update(precision="int8", quantization=f"static INT8 (NNCF), {len(inputs)} calibration crops")
    return model, meta


def save_openvino(model, meta: dict[str, str], out_path: str | Path) -> Path:
    """Write ``model`` as ``out_path`` (.xml) + .bin in fp32 (no fp16 weight compression), ``meta`` in its
    rt_info."""
    openvino = require_package("openvino", "openvino", "export --format openvino")
    out_path = check_ir_path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for key, value in meta.items():
        model.set_rt_info(str(value), [OPENVINO_NAMESPACE, key])
    openvino.save_model(model, str(out_path), compress_to_fp16=False)
    return out_path


def export_openvino(loaded_model, out_path: str | Path, inputs=None) -> Path:
    """Write ``loaded_model``'s embedding as an OpenVINO IR (fp32; INT8 when calibration ``inputs`` are given)."""
    check_ir_path(out_path)
    return save_openvino(*convert_to_openvino(loaded_model, inputs), out_path)
