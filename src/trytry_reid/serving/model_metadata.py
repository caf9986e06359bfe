"""What an exported model carries beside its graph: the input contract, the operating point and the weights'
identity, as string key/values (ONNX ``metadata_props``; OpenVINO ``rt_info``), and reading them back."""

from __future__ import annotations

import json
from pathlib import Path

from trytry_reid.engine.checkpoint import weights_sha256
from trytry_reid.errors import ReidError

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


def preprocessing(loaded_model) -> dict[str, str]:
    """The input contract as string key/values (ONNX metadata holds strings); lists are JSON."""
    interpolation = getattr(loaded_model, "interpolation", "bilinear")
    return {
        "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "layout": "NCHW", "color": "RGB",
        "height": str(loaded_model.height), "width": str(loaded_model.width),
        "resize": f"{interpolation}, antialias, to (height, width)", "interpolation": interpolation,
        "scale": "pixel / 255",
        "mean": json.dumps([float(m) for m in loaded_model.mean]),
        "std": json.dumps([float(s) for s in loaded_model.std]),
        "output": "L2-normalised embedding [N, D]; cosine distance = 1 - dot product",
        "feature_dim": str(int(loaded_model.model.output_dim)),
    }


def calibration_metadata(calibration: dict | None) -> dict[str, str]:
    """The operating point as ONNX metadata strings (nothing for an uncalibrated model)."""
    if calibration is None:
        return {}
    return {"threshold": repr(float(calibration["threshold"])), "threshold_metric": calibration["metric"],
            "threshold_rule": "same person iff cosine distance (1 - dot product) <= threshold",
            "calibration": json.dumps(calibration)}


def identity_metadata(loaded_model, precision: str = "fp32") -> dict[str, str]:
    """Which weights the file was made from (the hash an index compares) and its arithmetic: features of an
    INT8 model are close to, but not interchangeable with, its fp32 model's."""
    return {"precision": precision, "weights_sha256": weights_sha256(loaded_model.model)}


class OnnxFileError(ReidError, ValueError):
    """A file that is not an ONNX model; the message names it."""


def read_preprocessing(onnx_path: str | Path) -> dict[str, str]:
    """The metadata written by ``export_onnx`` (``metadata_props`` as a dict); OnnxFileError for a file that
    does not parse as an ONNX model (a checkpoint, an image, a damaged file)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except DecodeError as error:
        raise OnnxFileError(f"{onnx_path} is not an ONNX model (it does not parse as one: {error}); "
                            f"export one with `trytry-reid export`") from error
    return {prop.key: prop.value for prop in proto.metadata_props}
