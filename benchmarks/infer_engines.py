"""The engines infer_speed.py compares, built from one model, and its end-to-end extraction measurement.

Every engine is a ``runtimes.InferenceModel`` (``run``: normalised batch [N, 3, H, W] -> features [N, D]), so
the same ``extract_folder`` drives each one end to end.
"""

from __future__ import annotations

import copy
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from trytry_reid.models.inference_copy import fold_batchnorms, inference_copy
from trytry_reid.serving.folder_images import extract_folder
from trytry_reid.serving.runtimes import InferenceModel, ModelContract, open_onnx, open_openvino


def model_gflop(loaded) -> float:
    """Forward GFLOP of one crop (convolutions and matrix products, 2 FLOP per multiply-add)."""
    x = torch.zeros(1, 3, loaded.height, loaded.width)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        loaded.model.embed(x)
    return counter.get_total_flops() / 1e9


def _torch_engine(name: str, contract: ModelContract, module, bf16: bool = False) -> InferenceModel:
    """``module.embed``; ``bf16``: under CPU autocast, whose convolutions and matmuls run as oneDNN bf16
    kernels (oneDNN's fp32_precision=bf16 setting changes no inference convolution in this PyTorch)."""
    def run(batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return module.embed(batch).float().numpy()

    return InferenceModel(name, None, contract, run, name)


class _Scripted(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)


def torchscript_engine(loaded, contract: ModelContract) -> InferenceModel:
    """The optimised copy traced, frozen and optimised for inference by TorchScript (oneDNN weight prepacking
    and operator fusion): what PyTorch's graph mode, in maintenance, still gains; not an engine the toolkit
    ships (a trace silently freezes any data-dependent branch)."""
    example = torch.zeros(2, 3, loaded.height, loaded.width)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_Scripted(inference_copy(loaded.model)), example)
        scripted = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

    def run(batch: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return scripted(batch).numpy()

    return InferenceModel("pytorch_fp32_torchscript", None, contract, run, "TorchScript")


def has_bf16() -> bool:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "avx512_bf16" in text or "amx_bf16" in text


def build_engines(loaded, images: list[Path], folder: Path, calibration_count: int = 100,
                  threads: int | None = None) -> dict[str, InferenceModel]:
    """Every engine of ``loaded`` (files exported into ``folder``; INT8 calibrated on ``images``)."""
    from trytry_reid.serving.export import export_onnx
    from trytry_reid.serving.export_formats import write_onnx, write_openvino
    from trytry_reid.serving.quantize import calibration_inputs

    contract = ModelContract(loaded.height, loaded.width, loaded.mean, loaded.std, int(loaded.model.output_dim))
    folded_nchw = copy.deepcopy(loaded.model).eval()
    folded_nchw.trunk = fold_batchnorms(folded_nchw.trunk, copy_first=False)
    shipped = inference_copy(loaded.model)
    engines = {"pytorch_fp32_eager": _torch_engine("pytorch_fp32_eager", contract, loaded.model),
               "pytorch_fp32_folded_nchw": _torch_engine("pytorch_fp32_folded_nchw", contract, folded_nchw),
               "pytorch_fp32_optimised": _torch_engine("pytorch_fp32_optimised", contract, shipped),
               "pytorch_fp32_torchscript": torchscript_engine(loaded, contract)}
    if has_bf16():
        engines["pytorch_bf16_autocast"] = _torch_engine("pytorch_bf16_autocast", contract, shipped, bf16=True)
    inputs = calibration_inputs(images[0].parent, loaded.transform(), calibration_count)
    engines["onnx_fp32"] = open_onnx(export_onnx(loaded, folder / "fp32.onnx"), threads)
    engines["onnx_int8"] = open_onnx(write_onnx(loaded, folder / "int8.onnx", inputs), threads)
    engines["openvino_fp32"] = open_openvino(write_openvino(loaded, folder / "fp32.xml"), threads)
    engines["openvino_int8"] = open_openvino(write_openvino(loaded, folder / "int8.xml", inputs), threads)
    engines["openvino_default_bf16"] = openvino_default_precision(engines["openvino_fp32"], threads)
    for name, engine in engines.items():
        engine.engine = name
    return engines


def openvino_default_precision(fp32: InferenceModel, threads: int | None) -> InferenceModel:
    """The fp32 IR compiled with OpenVINO's CPU default inference precision (bf16 where the CPU has it; the
    checked engine compiles in f32)."""
    import openvino

    core = openvino.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    compiled = core.compile_model(core.read_model(str(fp32.path)), "CPU", config)
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
