"""INT8 post-training static quantization of an exported model, calibrated on the user's own crops.

Weights are quantized per output channel; activations per tensor, with ranges measured by running the fp32
model on calibration crops, which must look like what will be embedded (the same camera views, detector,
crop sizes). ONNX: onnxruntime's ``quantize_static`` (QDQ format: Quantize/DequantizeLinear pairs that
onnxruntime fuses into integer kernels; uint8 activations, int8 weights, the fast pairing on x86).
OpenVINO: NNCF's ``quantize`` (its default symmetric preset). The result keeps the fp32 file's metadata
contract, with ``precision`` set to ``int8``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from trytry_reid.errors import UsageError
from trytry_reid.serving.runtimes import require_package

log = logging.getLogger(__name__)

MIN_CALIBRATION_IMAGES = 100      # fewer crops give activation ranges that depend on which few were drawn
DEFAULT_CALIBRATION_IMAGES = 300


def calibration_inputs(folder: str | Path | None, transform: Callable, count: int = DEFAULT_CALIBRATION_IMAGES,
                       flag: str = "--calibration-images") -> list[np.ndarray]:
    """Up to ``count`` normalised crops [1, 3, H, W] float32 from ``folder`` (recursive), spread evenly over
    its sorted file list so that they are not all one identity or camera. A missing folder, or one with
    fewer than ``MIN_CALIBRATION_IMAGES``, is refused naming the flag and the number needed."""
    from trytry_reid.data.images import read_image
    from trytry_reid.serving.folder_images import find_images

    if folder is None:
        raise UsageError(f"INT8 export needs calibration crops: add {flag} DIR, a folder of at least "
                         f"{MIN_CALIBRATION_IMAGES} person crops like the ones the model will embed")
    if count < MIN_CALIBRATION_IMAGES:
        raise UsageError(f"--calibration-count {count}: INT8 calibration needs at least {MIN_CALIBRATION_IMAGES}")
    paths = find_images(folder)
    if len(paths) < MIN_CALIBRATION_IMAGES:
        raise UsageError(f"{flag} '{folder}' holds {len(paths)} images; INT8 calibration needs at least "
                         f"{MIN_CALIBRATION_IMAGES} (a few hundred is better: {DEFAULT_CALIBRATION_IMAGES} are "
                         f"used by default)")
    chosen = np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int))
    return [transform(read_image(str(paths[i]))).numpy()[None] for i in chosen]


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol (``get_next`` until None) over prepared inputs."""

    def __init__(self, input_name: str, inputs: list[np.ndarray], batch_size: int = 16) -> None:
        batches = [np.concatenate(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)]
        self._items = iter([{input_name: batch} for batch in batches])

    def get_next(self) -> dict | None:
        return next(self._items, None)


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, inputs: list[np.ndarray]) -> Path:
    """Write the INT8 (QDQ) version of the fp32 ONNX file ``fp32_path``, calibrated on ``inputs``, with the
    fp32 file's metadata and ``precision`` = int8."""
    onnx = require_package("onnx", "export", "INT8 ONNX export")
    quantization = require_package("onnxruntime.quantization", "export", "INT8 ONNX export")
    from trytry_reid.serving.export import INPUT_NAME, read_preprocessing

    out_path = Path(out_path)
    prepared = out_path.with_name(out_path.name + ".prepared.onnx")
    try:
        # Shape inference and graph optimisation first, as onnxruntime's quantizer documentation advises.
        quantization.shape_inference.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
        quantization.quantize_static(
            str(prepared), str(out_path), _CalibrationReader(INPUT_NAME, inputs),
            quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax)
    finally:
        prepared.unlink(missing_ok=True)
    proto = onnx.load(str(out_path))
    meta = {**read_preprocessing(fp32_path), "precision": "int8",
            "quantization": f"static INT8 (onnxruntime QDQ, per-channel weights), {len(inputs)} calibration crops"}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, str(out_path))
    return out_path


def quantize_openvino(model, inputs: list[np.ndarray]):
    """The INT8 version of an OpenVINO model (``openvino.Model``), calibrated on ``inputs`` with NNCF."""
    nncf = require_package("nncf", "openvino", "INT8 OpenVINO export")
    return nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs))
