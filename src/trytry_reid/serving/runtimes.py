"""Inference engines behind one contract: a PyTorch checkpoint, an ONNX file (onnxruntime) or an OpenVINO IR.

``open_model(engine, path)`` gives an ``InferenceModel``: ``run(batch)`` maps a normalised float32 batch
[N, 3, height, width] (RGB, NCHW, pixels / 255 then ``(x - mean) / std``) to L2-normalised features [N, D]
float32, and ``contract`` says how to build that batch and what comes out. A checkpoint carries its contract in
its config; an exported file carries it as string metadata (``metadata_props`` in ONNX, ``rt_info`` under
``trytry_reid`` in OpenVINO), written by ``export``. A file without it is refused: guessing the input size or
normalisation would give wrong features silently.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from trytry_reid.catalog import lookup
from trytry_reid.errors import ReidError

if TYPE_CHECKING:
    import torch

# Metadata every exported model carries (values are strings; mean and std are JSON lists).
CONTRACT_KEYS = ("input_name", "output_name", "height", "width", "mean", "std", "color", "layout", "feature_dim")
OPENVINO_NAMESPACE = "trytry_reid"


class MissingExtraError(ReidError, ImportError):
    """An optional package an engine needs is not installed; the message names the extra to install."""


class ModelFileError(ReidError, ValueError):
    """A model file that cannot serve as asked (missing metadata, wrong layout); the message names it."""


def require_package(module: str, extra: str, purpose: str):
    """Import ``module`` or raise MissingExtraError naming ``pip install 'trytry-reid[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f"{purpose} needs the '{module}' package, which is not installed: "
                                f"pip install 'trytry-reid[{extra}]'") from error


@dataclass(frozen=True)
class ModelContract:
    """What an engine's input must be and what it returns."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    calibration: dict[str, Any] | None = None   # the operating point (operating_point.py), if calibrated
    precision: str = "fp32"                     # "fp32" or "int8": features of the two are not interchangeable
    weights_sha256: str | None = None           # of the checkpoint weights the model was made from
    interpolation: str = "bilinear"             # the resize filter (data/transforms.INTERPOLATIONS)

    def transform(self) -> Callable:
        """The test transform that makes one input row from a PIL RGB image."""
        from trytry_reid.data.transforms import build_test_transform

        return build_test_transform(self.height, self.width, mean=self.mean, std=self.std,
                                    interpolation=self.interpolation)


@dataclass
class InferenceModel:
    """A model ready to run on CPU batches: ``run(batch [N, 3, H, W] float32) -> features [N, D] float32``."""

    engine: str
    path: Path | None                             # None for a model built in memory (no file to record)
    contract: ModelContract
    run: Callable[[torch.Tensor], np.ndarray]
    source: str                                   # "checkpoint best.pt", "ONNX file m.onnx", ... for messages
    loaded: Any = field(default=None, repr=False)  # the LoadedModel of a checkpoint (torch engine only)

    def provenance(self) -> dict[str, Any]:
        """What an index records of the model its features come from (see ``index.py``); {} without a file."""
        if self.path is None:
            return {}
        if self.engine == "torch":
            return torch_provenance(self.loaded, self.path)
        recorded = {"model": str(self.path.resolve()), "model_sha256": files_sha256(model_files(self.path)),
                    "engine": self.engine, "precision": self.contract.precision}
        if self.contract.weights_sha256:
            recorded["weights_sha256"] = self.contract.weights_sha256
        return recorded


# The keys of an index's info that ``provenance`` writes (all replaced together when an index is extended).
PROVENANCE_KEYS = ("checkpoint", "checkpoint_sha256", "model", "model_sha256", "engine", "precision",
                   "weights_sha256")


def torch_provenance(loaded, checkpoint: str | Path | None) -> dict[str, Any]:
    """A checkpoint's path, the hash of its file and the hash of the model's weights alone (``calibrate``
    rewrites a checkpoint's file, never its weights); {} without a checkpoint path."""
    if checkpoint is None:
        return {}
    from trytry_reid.engine.checkpoint import file_sha256, weights_sha256

    return {"checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": file_sha256(checkpoint),
            "weights_sha256": weights_sha256(loaded.model)}


def as_inference_model(model, checkpoint: str | Path | None = None) -> "InferenceModel":
    """``model`` when it is an InferenceModel, else a LoadedModel (read from ``checkpoint``) as one."""
    return model if isinstance(model, InferenceModel) else torch_model(model, checkpoint)


def provenance_of(model, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """``InferenceModel.provenance`` of ``model``, or of a LoadedModel read from ``checkpoint``."""
    return model.provenance() if isinstance(model, InferenceModel) else torch_provenance(model, checkpoint)


def recorded_model(info: dict[str, Any]) -> tuple[str, str] | None:
    """(engine, file) of the model an index's info records, None when it records none."""
    if "model" in info:
        return str(info.get("engine", "onnx")), str(info["model"])
    if "checkpoint" in info:
        return "torch", str(info["checkpoint"])
    return None


def describe_recorded(info: dict[str, Any]) -> str:
    """How messages name the model an index's info (or a provenance) records."""
    found = recorded_model(info)
    if found is None:
        return "an unrecorded model"
    engine, path = found
    precision = info.get("precision", "fp32")
    return f"checkpoint {path}" if engine == "torch" else f"{engine} model {path} ({precision})"


def files_sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_files(path: Path) -> list[Path]:
    """The files a model consists of: an OpenVINO IR is its .xml and the .bin next to it."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def contract_from_metadata(meta: dict[str, str], source: str) -> ModelContract:
    """Parse export metadata (string values) into a contract; a missing or malformed key is refused."""
    missing = [key for key in CONTRACT_KEYS if key not in meta]
    if missing:
        raise ModelFileError(f"{source} lacks metadata {missing}: export it with `trytry-reid export`")
    if meta["color"] != "RGB" or meta["layout"] != "NCHW":
        raise ModelFileError(f"{source}: expected RGB NCHW input, metadata says {meta['color']} {meta['layout']}")
    try:
        mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
        calibration = json.loads(meta["calibration"]) if "calibration" in meta else None
        contract = ModelContract(int(meta["height"]), int(meta["width"]), tuple(float(m) for m in mean),
                                 tuple(float(s) for s in std), int(meta["feature_dim"]), calibration,
                                 meta.get("precision", "fp32"), meta.get("weights_sha256"),
                                 meta.get("interpolation", "bilinear"))
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{source}: malformed metadata ({error}): export it again") from error
    if len(contract.mean) != 3 or len(contract.std) != 3:
        raise ModelFileError(f"{source}: metadata mean/std must hold 3 values each, got {mean} and {std}")
    from trytry_reid.data.transforms import INTERPOLATIONS

    if contract.interpolation not in INTERPOLATIONS:
        raise ModelFileError(f"{source}: metadata interpolation {contract.interpolation!r} is not one of "
                             f"{', '.join(INTERPOLATIONS)}: export it again")
    return contract


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def torch_model(loaded, path: str | Path | None = None, source: str = "") -> InferenceModel:
    """A loaded checkpoint (``inference.LoadedModel``, read from ``path``) as an engine: its inference copy
    (BatchNorm folded), on the device its weights are on."""
    import torch

    from trytry_reid.models.inference_copy import inference_copy

    device = next(loaded.model.parameters()).device
    fast = inference_copy(loaded.model)

    def run(batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return fast.embed(batch.to(device)).float().cpu().numpy()

    contract = ModelContract(loaded.height, loaded.width, tuple(loaded.mean), tuple(loaded.std),
                             int(loaded.model.output_dim), loaded.calibration,
                             interpolation=loaded.interpolation)
    return InferenceModel("torch", None if path is None else Path(path), contract, run,
                          source or (f"checkpoint {path}" if path is not None else "a model in memory"), loaded)


def open_checkpoint(path: str | Path, device: str = "cpu") -> InferenceModel:
    """A checkpoint written by ``train`` (weights_only)."""
    from trytry_reid.serving.inference import load_model

    return torch_model(load_model(_existing(path, "checkpoint"), device), path)


def check_threads(threads: int | None) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r}: expected a number of threads >= 1, or None for the engine's own")


def open_onnx(path: str | Path, threads: int | None = None) -> InferenceModel:
    """An ONNX file written by ``export`` (onnxruntime, CPU; ``threads``: its intra-op threads, default one
    per physical core)."""
    require_package("onnx", "export", "the onnx engine")
    onnxruntime = require_package("onnxruntime", "export", "the onnx engine")
    from trytry_reid.serving.model_metadata import read_preprocessing

    path = _existing(path, "ONNX file")
    meta = read_preprocessing(path)         # OnnxFileError when the file is not an ONNX model
    contract = contract_from_metadata(meta, f"ONNX file {path}")
    check_threads(threads)
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(batch: torch.Tensor) -> np.ndarray:
        return session.run([meta["output_name"]], {meta["input_name"]: batch.numpy()})[0]

    return InferenceModel("onnx", path, contract, run, f"ONNX file {path}")


def read_openvino_metadata(model) -> dict[str, str]:
    """The ``trytry_reid`` entries of an OpenVINO model's rt_info, as strings ({} when it has none)."""
    if not model.has_rt_info([OPENVINO_NAMESPACE]):
        return {}
    return {key: value.astype(str) for key, value in model.get_rt_info()[OPENVINO_NAMESPACE].items()}


def compile_openvino(model, core=None, threads: int | None = None):
    """Compile for CPU in fp32 arithmetic: OpenVINO's CPU default on bf16-capable CPUs is bf16, whose features
    differ from PyTorch's by about 1e-3; an INT8 model's remaining float layers also stay fp32."""
    import openvino

    core = core or openvino.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(model, "CPU", config)


def open_openvino(path: str | Path, threads: int | None = None) -> InferenceModel:
    """An OpenVINO IR (.xml with its .bin) written by ``export --format openvino`` (``threads``: its inference
    threads, default OpenVINO's choice)."""
    check_threads(threads)
    openvino = require_package("openvino", "openvino", "the openvino engine")
    path = _existing(path, "OpenVINO model")
    if path.suffix != ".xml":
        raise ModelFileError(f"OpenVINO model {path}: expected the IR's .xml file (its weights in the .bin beside it)")
    core = openvino.Core()
    try:
        model = core.read_model(str(path))
    except RuntimeError as error:
        raise ModelFileError(f"OpenVINO model {path} cannot be read: {str(error).strip().splitlines()[0]}") from error
    contract = contract_from_metadata(read_openvino_metadata(model), f"OpenVINO model {path}")
    compiled = compile_openvino(model, core, threads)
    request, lock = compiled.create_infer_request(), threading.Lock()

    def run(batch: torch.Tensor) -> np.ndarray:
        with lock:              # one infer request: calls from several threads take turns
            return request.infer({0: batch.numpy()})[compiled.output(0)].copy()

    return InferenceModel("openvino", path, contract, run, f"OpenVINO model {path}")


# engine name -> opener(path); `extract`, `index` and `serve` take these names as --engine.
ENGINES: dict[str, Callable[[str | Path], InferenceModel]] = {
    "torch": open_checkpoint, "onnx": open_onnx, "openvino": open_openvino}


def open_model(engine: str, path: str | Path, device: str = "cpu") -> InferenceModel:
    """Open ``path`` with the engine called ``engine`` (a name in ``ENGINES``); ``device`` is PyTorch's (the
    others run on the CPU)."""
    opener = lookup(ENGINES, engine, "inference engine")
    return opener(path, device) if engine == "torch" else opener(path)
