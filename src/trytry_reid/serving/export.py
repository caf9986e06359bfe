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

import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from trytry_reid.serving.export_check import ExportCheckError, ranking_agreement
from trytry_reid.serving.model_metadata import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxFileError,
    calibration_metadata,
    identity_metadata,
    preprocessing,
    read_preprocessing,
)

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ExportCheckError", "OnnxFileError", "OnnxParityError", "calibration_metadata",
           "check_onnx", "export_onnx", "identity_metadata", "preprocessing", "ranking_agreement",
           "read_preprocessing"]

OnnxParityError = ExportCheckError      # the name the ONNX check has always raised


class _Embedder(nn.Module):
    """Exposes ``ReidModel.embed`` as ``forward`` so the exporter traces the retrieval feature."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.embed(images)


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


def check_onnx(onnx_path: str | Path, loaded_model, image_paths: Sequence[str | Path], *,
               gallery_paths: Sequence[str | Path] | None = None, tolerance: float = 1e-4,
               top_k: int = 10, batch_size: int = 32) -> dict:
    """``export_check.check_fp32`` of an ONNX file (onnxruntime) against PyTorch; raises ExportCheckError."""
    from trytry_reid.serving.export_check import check_fp32
    from trytry_reid.serving.runtimes import open_onnx

    return check_fp32(open_onnx(onnx_path), loaded_model, image_paths, gallery_paths=gallery_paths,
                      tolerance=tolerance, top_k=top_k, batch_size=batch_size)
