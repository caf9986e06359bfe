"""ONNX export of the retrieval embedding, and a parity check of the exported file with onnxruntime.

The exported graph maps ``images`` [N, 3, height, width] float32 (dynamic N) to ``embeddings`` [N, D], the
L2-normalised ``ReidModel.embed`` output. Preprocessing is not inside the graph; it is written into the
model's ``metadata_props`` (and returned by ``preprocessing``): RGB, resize to (height, width) with Pillow's
antialiased ``interpolation`` filter (bilinear, or bicubic for fast-reid's models), scale pixels to [0, 1],
subtract ``mean`` and divide by ``std`` per channel, NCHW layout; the feature dimension is ``feature_dim``.
A calibrated model also carries its operating point (``threshold``, ``threshold_metric``, ``threshold_rule`` and
the whole entry as JSON in ``calibration``; operating_point.py).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from trytry_reid.errors import ReidError

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


class ExportCheckError(ReidError, RuntimeError):
    """An exported model disagrees with PyTorch beyond what its check allows; nothing unchecked is kept."""


OnnxParityError = ExportCheckError      # the name the ONNX check has always raised


class _Embedder(nn.Module):
    """Exposes ``ReidModel.embed`` as ``forward`` so the exporter traces the retrieval feature."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.embed(images)


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
    from trytry_reid.serving.index import weights_sha256

    return {"precision": precision, "weights_sha256": weights_sha256(loaded_model.model)}


def export_onnx(loaded_model, out_path: str | Path, opset: int = 17) -> Path:
    """Write ``loaded_model``'s embedding as ONNX (dynamic batch) with the preprocessing in its metadata."""
    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = loaded_model.model.eval()
    device = next(model.parameters()).device
    dummy = torch.zeros(2, 3, loaded_model.height, loaded_model.width, device=device)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript-based exporter: the torch.export-based one needs the extra onnxscript package.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        # InstanceNorm (IBN / AIN trunks) normalises by each input's own statistics in eval mode too; the
        # exporter warns that it exports it "with train=True", which is exactly that.
        warnings.filterwarnings("ignore", message=".*'instance_norm' is set to train=True", category=UserWarning)
        # The wrapper must be in eval mode too: the exporter restores the wrapper's mode recursively afterwards.
        torch.onnx.export(_Embedder(model).eval(), (dummy,), str(out_path), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset, dynamo=False,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    proto = onnx.load(str(out_path))
    onnx.helper.set_model_props(proto, {**preprocessing(loaded_model), **identity_metadata(loaded_model),
                                        **calibration_metadata(loaded_model.calibration)})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out_path))
    return out_path


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


def ranking_agreement(reference_q: np.ndarray, reference_g: np.ndarray, other_q: np.ndarray,
                      other_g: np.ndarray, k: int, tie_tolerance: float, same_set: bool) -> dict:
    """Compare the top-k gallery lists of two feature sets.

    ``identical``: fraction of queries with exactly the same top-k list. ``equivalent``: fraction whose
    other-list, scored with the reference features, is a reference top-k up to score differences below
    ``tie_tolerance`` (swaps between near-equal scores are allowed). With ``same_set`` a query never
    ranks itself.
    """
    ref_scores = reference_q @ reference_g.T                          # [Q, G]
    oth_scores = other_q @ other_g.T
    if same_set:
        np.fill_diagonal(ref_scores, -np.inf)
        np.fill_diagonal(oth_scores, -np.inf)
    k = min(k, ref_scores.shape[1] - int(same_set))
    ref_top = np.argsort(-ref_scores, axis=1, kind="stable")[:, :k]
    oth_top = np.argsort(-oth_scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(ref_scores, ref_top, 1)
    achieved = np.take_along_axis(ref_scores, oth_top, 1)
    equivalent = (np.abs(best - achieved) <= tie_tolerance).all(axis=1)
    return {"k": int(k), "identical": float((ref_top == oth_top).all(axis=1).mean()),
            "equivalent": float(equivalent.mean())}


def check_onnx(onnx_path: str | Path, loaded_model, image_paths: Sequence[str | Path], *,
               gallery_paths: Sequence[str | Path] | None = None, tolerance: float = 1e-4,
               top_k: int = 10, batch_size: int = 32) -> dict:
    """``export_check.check_fp32`` of an ONNX file (onnxruntime) against PyTorch; raises ExportCheckError."""
    from trytry_reid.serving.export_check import check_fp32
    from trytry_reid.serving.runtimes import open_onnx

    return check_fp32(open_onnx(onnx_path), loaded_model, image_paths, gallery_paths=gallery_paths,
                      tolerance=tolerance, top_k=top_k, batch_size=batch_size)
