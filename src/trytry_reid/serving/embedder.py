"""Embed person crops from your own code (trackers, scripts): ``trytry_reid.Embedder``.

    embedder = Embedder.from_checkpoint("best.pt")     # or .from_onnx("reid.onnx"), .from_openvino("reid.xml")
    features = embedder.embed(["a.jpg", pil_image, rgb_array])   # float32 [N, D], rows L2-normalised
    features = embedder.embed_boxes(frame, boxes_xyxy, bgr=True)  # crops of an OpenCV frame
    embedder.distance(features[0], features[1])                    # cosine distance, 1 - cos, in [0, 2]
    embedder.same_person(features[0], features[1])                 # distance <= the calibrated threshold

Images go through the model's own test transform (RGB, antialiased resize to the training size with the
model's filter, bilinear or bicubic, [0, 1], mean/std), the same one ``extract`` and ``evaluate`` use, so the
three back-ends agree. Numpy images must be H x W x 3 uint8, RGB, or BGR with ``bgr=True`` (what OpenCV
gives); paths and PIL images are read upright as 8-bit RGB (data/image_modes.py: 16-bit, CMYK, transparency).
Crops below 8 pixels a side are refused (data/crop_size.py); ``embed_boxes(..., on_small="nan")`` gives such
boxes NaN rows instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from trytry_reid.data.crop_size import check_crop_size
from trytry_reid.data.image_modes import ImageModeError, as_rgb
from trytry_reid.data.images import read_image
from trytry_reid.data.transforms import build_test_transform
from trytry_reid.evaluation.distance import compute_distance
from trytry_reid.evaluation.operating_point import check_entry, require_value, resolve_threshold
from trytry_reid.serving.boxes import check_on_small, crop_bounds, frame_pixels

Forward = Callable[[torch.Tensor], np.ndarray]   # normalised batch [B, 3, H, W] -> features [B, D]


class Embedder:
    """A model (PyTorch checkpoint, ONNX file or OpenVINO IR) with its preprocessing and calibrated threshold."""

    def __init__(self, forward: Forward, *, height: int, width: int, mean: Sequence[float], std: Sequence[float],
                 dim: int, calibration: dict[str, Any] | None = None, batch_size: int = 64,
                 source: str = "", interpolation: str = "bilinear") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._forward = forward
        self.transform = build_test_transform(height, width, mean=mean, std=std, interpolation=interpolation)
        self.height, self.width, self.dim = int(height), int(width), int(dim)
        self.calibration = None if calibration is None else check_entry(calibration, source or "embedder")
        self.batch_size = batch_size
        self.source = source

    @classmethod
    def from_model(cls, model, batch_size: int = 64) -> "Embedder":
        """From any engine's ``trytry_reid.serving.runtimes.InferenceModel`` (its contract and threshold)."""
        c = model.contract
        return cls(model.run, height=c.height, width=c.width, mean=c.mean, std=c.std, dim=c.feature_dim,
                   calibration=c.calibration, batch_size=batch_size, source=model.source,
                   interpolation=c.interpolation)

    @classmethod
    def from_loaded(cls, loaded, batch_size: int = 64, source: str = "") -> "Embedder":
        """From a ``trytry_reid.serving.inference.LoadedModel`` (runs on the device its weights are on)."""
        from trytry_reid.serving.runtimes import torch_model

        return cls.from_model(torch_model(loaded, source=source), batch_size)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", batch_size: int = 64) -> "Embedder":
        """From a checkpoint written by ``train`` (loaded with weights_only)."""
        from trytry_reid.serving.runtimes import open_checkpoint

        return cls.from_model(open_checkpoint(path, device), batch_size)

    @classmethod
    def from_onnx(cls, path: str | Path, batch_size: int = 64, threads: int | None = None) -> "Embedder":
        """From an ONNX file written by ``export`` (onnxruntime, CPU; ``threads``: its intra-op threads, default
        one per core); preprocessing and threshold come from its metadata (docs/DEPLOY.md, 'Model contract')."""
        from trytry_reid.serving.runtimes import open_onnx

        return cls.from_model(open_onnx(path, threads), batch_size)

    @classmethod
    def from_openvino(cls, path: str | Path, batch_size: int = 64, threads: int | None = None) -> "Embedder":
        """From an OpenVINO IR (.xml + .bin) written by ``export --format openvino`` (CPU, fp32 arithmetic;
        ``threads``: its inference threads, default OpenVINO's choice); the same metadata contract as ONNX, in
        the model's rt_info."""
        from trytry_reid.serving.runtimes import open_openvino

        return cls.from_model(open_openvino(path, threads), batch_size)

    @property
    def threshold(self) -> float | None:
        """The calibrated "same person" threshold (cosine distance), None when the model was not calibrated."""
        return None if self.calibration is None else float(self.calibration["threshold"])

    def embed(self, images, *, bgr: bool = False) -> np.ndarray:
        """Features float32 [N, D] (rows L2-normalised) of one image or a sequence of them (paths, PIL images,
        H x W x 3 uint8 arrays; a [N, H, W, 3] array is N images), in batches of ``batch_size``."""
        items = [images] if _is_single(images) else list(images)
        parts = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            batch = torch.stack([self.transform(as_rgb_image(item, bgr, start + i)) for i, item in enumerate(chunk)])
            parts.append(np.asarray(self._forward(batch), dtype=np.float32))  # L2-normalised by the model
        return np.concatenate(parts)

    def embed_boxes(self, frame, boxes_xyxy, *, bgr: bool = False, on_small: str = "error") -> np.ndarray:
        """Features [K, D] of the crops ``boxes_xyxy`` [K, 4] (x1, y1, x2, y2 in pixels) of ``frame`` (H x W x 3
        uint8 array or PIL image). Boxes are clipped to the frame; one empty or below the minimum crop size
        after clipping is refused (``on_small="error"``) or gets a NaN row (``on_small="nan"``; see boxes.py)."""
        pixels = frame_pixels(frame)
        bounds, small = crop_bounds(boxes_xyxy, pixels.shape[:2])
        check_on_small(on_small, bounds, small, boxes_xyxy, pixels.shape[:2])
        features = np.full((len(bounds), self.dim), np.nan, dtype=np.float32)
        kept = [pixels[y1:y2, x1:x2] for (x1, y1, x2, y2), tiny in zip(bounds, small) if not tiny]
        features[~small] = self.embed(kept, bgr=bgr)
        return features

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
        """Cosine distance 1 - cos: two features [D] -> a float; [N, D] and [M, D] -> [N, M]; [N, D] and [D]
        -> [N]."""
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim not in (1, 2) or b.ndim not in (1, 2):
            raise ValueError(f"features must be [D] or [N, D], got shapes {a.shape} and {b.shape}")
        dist = compute_distance(np.atleast_2d(a), np.atleast_2d(b), metric="cosine")
        dist = dist[0] if a.ndim == 1 else dist
        dist = dist[..., 0] if b.ndim == 1 else dist
        return float(dist) if np.ndim(dist) == 0 else dist

    def same_person(self, a: np.ndarray, b: np.ndarray, threshold: float | None = None) -> bool | np.ndarray:
        """``distance(a, b) <= threshold`` (default: the calibrated one; an error says how to get one)."""
        if threshold is None:
            value = require_value(resolve_threshold("auto", self.calibration), self.source or "this model")
        else:
            value = float(threshold)
        result = np.asarray(self.distance(a, b)) <= value
        return bool(result) if result.ndim == 0 else result


def _is_single(images) -> bool:
    return isinstance(images, (str, Path, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim == 3)


def as_rgb_image(item, bgr: bool, position: int) -> Image.Image:
    """A path, PIL image or H x W x 3 uint8 array (BGR when ``bgr``) as a PIL RGB image, read by the rules of
    data/image_modes.py and at least the minimum crop size (data/crop_size.py)."""
    if isinstance(item, (str, Path)):
        return read_image(str(item))
    if isinstance(item, Image.Image):
        check_crop_size(*item.size, f"image {position}")
        try:
            return as_rgb(item)
        except ImageModeError as error:
            raise ImageModeError(f"image {position}: {error}") from error
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8 or 0 in item.shape:
            raise ValueError(f"image {position}: a numpy image must be a non-empty H x W x 3 uint8 array "
                             f"({'BGR' if bgr else 'RGB'}), got shape {item.shape} dtype {item.dtype}")
        check_crop_size(item.shape[1], item.shape[0], f"image {position}")
        return Image.fromarray(np.ascontiguousarray(item[..., ::-1] if bgr else item))
    raise TypeError(f"image {position}: expected a file path, a PIL image or an H x W x 3 uint8 array, "
                    f"got {type(item).__name__}")
