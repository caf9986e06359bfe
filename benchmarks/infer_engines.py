"""The engines infer_speed.py compares, built from one model, and its end-to-end extraction measurement.

Every engine is a ``runtimes.InferenceModel`` (``run``: normalised batch [N, 3, H, W] -> features [N, D]), so
the same ``extract_folder`` drives each one end to end.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from trytry_reid.models.inference_copy import inference_copy
from trytry_reid.serving.folder_images import extract_folder
from trytry_reid.serving.runtimes import InferenceModel, ModelContract, open_onnx, open_openvino


def model_gflop(loaded) -> float:
    """Forward GFLOP of one crop (convolutions and matrix products, 2 FLOP per multiply-add)."""
    x = torch.zeros(1, 3, loaded.height, loaded.width)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        loaded.model.embed(x)
    return counter.get_total_flops() / 1e9


def _torch_engine(name: str, contract: ModelContract, module, channels_last: bool = False,
                  bf16: bool = False) -> InferenceModel:
    """``module.embed``; ``bf16``: under CPU autocast, whose convolutions and matmuls run as oneDNN bf16
    kernels (oneDNN's fp32_precision=bf16 setting changes no inference convolution in this PyTorch)."""
    def run(batch: torch.Tensor) -> np.ndarray:
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return module.embed(batch).float().numpy()

    return InferenceModel(name, None, contract, run, name)


def has_bf16() -> bool:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512_bf16" in text or "amx_bf16" in text


def build_engines(loaded, images: list[Path], folder: Path, calibration_count: int = 100) -> dict[str, InferenceModel]:
    """Every engine of ``loaded`` (files exported into ``folder``; INT8 calibrated on ``images``)."""
    from trytry_reid.serving.export import export_onnx
    from trytry_reid.serving.export_formats import write_onnx, write_openvino
    from trytry_reid.serving.quantize import calibration_inputs

    contract = ModelContract(loaded.height, loaded.width, loaded.mean, loaded.std, int(loaded.model.output_dim))
    fast = inference_copy(loaded.model)
    fast_cl = copy.deepcopy(fast).to(memory_format=torch.channels_last)
    engines = {"pytorch_fp32_eager": _torch_engine("pytorch_fp32_eager", contract, loaded.model),
               "pytorch_fp32_folded": _torch_engine("pytorch_fp32_folded", contract, fast),
               "pytorch_fp32_folded_cl": _torch_engine("pytorch_fp32_folded_cl", contract, fast_cl, True)}
    if has_bf16():
        engines["pytorch_bf16_autocast"] = _torch_engine("pytorch_bf16_autocast", contract, fast_cl, True, True)
    inputs = calibration_inputs(images[0].parent, loaded.transform(), calibration_count)
    engines["onnx_fp32"] = open_onnx(export_onnx(loaded, folder / "fp32.onnx"))
    engines["onnx_int8"] = open_onnx(write_onnx(loaded, folder / "int8.onnx", inputs))
    engines["openvino_fp32"] = open_openvino(write_openvino(loaded, folder / "fp32.xml"))
    engines["openvino_int8"] = open_openvino(write_openvino(loaded, folder / "int8.xml", inputs))
    engines["openvino_default_bf16"] = openvino_default_precision(engines["openvino_fp32"])
    for name, engine in engines.items():
        engine.engine = name
    return engines


def openvino_default_precision(fp32: InferenceModel) -> InferenceModel:
    """The fp32 IR compiled with OpenVINO's CPU default inference precision (bf16 where the CPU has it; the
    checked engine compiles in f32)."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(str(fp32.path)), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))

    def run(batch: torch.Tensor) -> np.ndarray:
        return request.infer({0: batch.numpy()})[compiled.output(0)].copy()

    return InferenceModel("openvino_default", None, fp32.contract, run, f"OpenVINO, {precision}")


def extract_speed(engines: dict[str, InferenceModel], images: list[Path], batch: int, workers: tuple[int, ...],
                  folder: Path, rounds: int = 2) -> dict[str, dict]:
    """End-to-end ``extract_folder`` crops/s of each engine on ``images`` (listing, header checks, decoding,
    resizing, the model), for each DataLoader worker count; engines alternate, best of ``rounds``."""
    crops = folder / "crops"
    crops.mkdir(exist_ok=True)
    for path in images:
        link = crops / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    best: dict[str, dict] = {name: {} for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            for count in workers:
                start = time.perf_counter()
                extract_folder(engine, crops, batch_size=batch, workers=count, progress=False)
                speed = len(images) / (time.perf_counter() - start)
                key = f"extract_crops_per_s_w{count}"
                best[name][key] = max(best[name].get(key, 0.0), speed)
    for name, row in best.items():
        row["extract_crops_per_s"] = max(row.values())
        row["extract_images"], row["extract_batch"] = len(images), batch
    return best
