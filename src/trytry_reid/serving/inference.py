"""Rebuild a trained model from a checkpoint alone, for evaluation, extraction, export and serving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trytry_reid.data.transforms import build_test_transform
from trytry_reid.engine.checkpoint import CheckpointError, load_checkpoint
from trytry_reid.evaluation.operating_point import read_from_checkpoint
from trytry_reid.models.reid_model import ReidModel, build_reid_model


@dataclass
class LoadedModel:
    model: ReidModel
    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    config: dict[str, Any]
    calibration: dict[str, Any] | None = None  # the stored operating point (operating_point.py), if calibrated
    interpolation: str = "bilinear"  # the resize filter (data/transforms.INTERPOLATIONS)

    def transform(self) -> Callable:
        """The test-time transform the model was trained for (resize, to tensor, normalize)."""
        return build_test_transform(self.height, self.width, mean=self.mean, std=self.std,
                                    interpolation=self.interpolation)


def load_model(checkpoint: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a checkpoint written by `train` (weights_only) and return the model in eval mode."""
    state = load_checkpoint(Path(checkpoint))
    for key in ("model", "config"):
        if key not in state:
            raise CheckpointError(f"checkpoint {checkpoint} has no '{key}' entry: was it written by trytry-reid train?")
    config = state["config"]
    model = build_reid_model(num_classes=int(state.get("num_classes", 0)), **{**config["model"], "pretrained": "none"})
    model.load_state_dict(state["model"])
    model.to(device).eval()
    data = config["data"]
    return LoadedModel(model=model, height=int(data["height"]), width=int(data["width"]),
                       mean=tuple(data["mean"]), std=tuple(data["std"]), config=config,
                       calibration=read_from_checkpoint(state, f"checkpoint {checkpoint}"),
                       interpolation=data.get("interpolation") or "bilinear")
