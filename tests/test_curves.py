"""curves.png from synthetic histories: size, which panels hold data, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colors
from PIL import Image

from trytry_reid.visualization.curves import DPI, FIGSIZE, draw_curves

PNG_SHAPE = (round(FIGSIZE[1] * DPI), round(FIGSIZE[0] * DPI), 3)


def full_history(num_steps: int = 300) -> dict:
    t = np.arange(num_steps)
    return {
        "steps": (t + 1).tolist(),
        "loss": {"cross_entropy": (2.0 * np.exp(-t / 80) + 0.2).tolist(),
                 "triplet": (0.3 * np.exp(-t / 120)).tolist()},
        "stats": {"triplet/valid_triplets": np.linspace(60, 10, num_steps).tolist(),
                  "triplet/mean_pos_dist": np.linspace(0.5, 0.2, num_steps).tolist()},
        "warnings": [{"step": num_steps // 2, "message": "embeddings collapsed"}],
        "lr": np.minimum(1.0, (t + 1) / 50).tolist(),
        "eval": [{"epoch": e, "dataset": "digits", "rank1": 0.5 + 0.04 * e, "mAP": 0.3 + 0.05 * e, "mINP": 0.1}
                 for e in (2, 4, 6, 8)],
    }


def count_color(image: np.ndarray, name: str, tolerance: int = 12) -> int:
    rgb = np.round(np.asarray(colors.to_rgb(name)) * 255)
    return int((np.abs(image.astype(int) - rgb).max(-1) <= tolerance).sum())


def quadrant(image: np.ndarray, row: int, col: int) -> np.ndarray:
    h, w = image.shape[0] // 2, image.shape[1] // 2
    return image[row * h:(row + 1) * h, col * w:(col + 1) * w]


def test_full_history_fills_every_panel(tmp_path):
    out = draw_curves(full_history(), tmp_path / "run" / "curves.png")
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == PNG_SHAPE
    assert count_color(quadrant(image, 0, 0), "tab:blue") > 200  # cross-entropy line
    assert count_color(quadrant(image, 0, 1), "tab:purple") > 200  # valid triplets
    assert count_color(quadrant(image, 1, 0), "tab:blue") > 200  # rank-1 / mAP of the one test set
    assert count_color(quadrant(image, 1, 1), "tab:gray") > 100  # learning rate
    assert count_color(quadrant(image, 0, 0), "tab:red") > 50  # the collapse warning's marker


def test_missing_parts_leave_their_panels_empty(tmp_path):
    history = {"steps": [0, 1, 2, 3], "loss": {"cross_entropy": [3.0, 2.5, 2.0, 1.8]}}
    image = np.asarray(Image.open(draw_curves(history, tmp_path / "curves.png")).convert("RGB"))
    assert image.shape == PNG_SHAPE
    assert count_color(quadrant(image, 0, 0), "tab:blue") > 50
    assert count_color(quadrant(image, 0, 1), "tab:purple") == 0  # "no triplet loss in this run"
    assert count_color(quadrant(image, 1, 0), "tab:blue") == 0  # "no evaluation in this run"
    history = {"steps": [0, 1, 2], "stats": {"triplet/valid_triplets": [float("nan")] * 3}}  # all NaN
    empty = np.asarray(Image.open(draw_curves(history, tmp_path / "empty.png")).convert("RGB"))
    assert empty.shape == PNG_SHAPE
    assert count_color(quadrant(empty, 0, 1), "tab:purple") == 0


def test_inconsistent_history_is_refused_with_the_key_named(tmp_path):
    history = full_history(10)
    history["loss"]["triplet"] = [0.1] * 9
    with pytest.raises(ValueError, match=r"history\['triplet'\] must be a list of 10"):
        draw_curves(history, tmp_path / "curves.png")
    history = full_history(10)
    history["stats"]["triplet/valid_triplets"] = [5.0] * 11
    with pytest.raises(ValueError, match=r"history\['triplet/valid_triplets'\] must be a list of 10"):
        draw_curves(history, tmp_path / "curves.png")
    history = full_history(10)
    del history["eval"][1]["mAP"]
    with pytest.raises(ValueError, match=r"history\['eval'\]\[1\] lacks \['mAP'\]"):
        draw_curves(history, tmp_path / "curves.png")
    with pytest.raises(ValueError, match="history must be a dict"):
        draw_curves([1, 2], tmp_path / "curves.png")
