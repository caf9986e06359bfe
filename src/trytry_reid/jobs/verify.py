"""`trytry-reid verify`: are two crops the same person? Their cosine distance against the model's threshold."""

from __future__ import annotations

from pathlib import Path

from trytry_reid.errors import UsageError
from trytry_reid.evaluation.operating_point import METRIC, parse_threshold, require_value, resolve_threshold
from trytry_reid.serving.embedder import Embedder


def verify_pair(checkpoint: str | Path, image_a: str | Path, image_b: str | Path,
                threshold: str | float = "auto") -> dict:
    """The decision as a plain dict: distance, threshold (and where it came from, with its FPR/TPR on the
    calibration set when known), ``same`` and ``verdict`` ("same" / "different")."""
    for image in (image_a, image_b):
        if Path(image).is_dir():
            raise IsADirectoryError(f"{image} is a folder, not an image file: verify compares two crops")
        if not Path(image).is_file():
            raise FileNotFoundError(f"image not found: {image}")
    if isinstance(threshold, str) and parse_threshold(threshold) == "none":
        raise UsageError("verify decides with a threshold and --threshold none gives none: use 'auto' (the "
                         "checkpoint's calibrated one) or a cosine distance in [0, 2]")
    embedder = Embedder.from_checkpoint(checkpoint)
    resolved = resolve_threshold(threshold, embedder.calibration)
    value = require_value(resolved, f"checkpoint {checkpoint}")
    features = embedder.embed([image_a, image_b])
    distance = embedder.distance(features[0], features[1])
    same = bool(distance <= value)
    return {"image_a": str(image_a), "image_b": str(image_b), "metric": METRIC, "distance": distance,
            "threshold": value, "same": same, "verdict": "same" if same else "different",
            "threshold_source": resolved.source, "fpr": resolved.fpr, "tpr": resolved.tpr,
            "dataset": resolved.dataset}
