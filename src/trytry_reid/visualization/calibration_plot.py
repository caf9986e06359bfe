"""The figure that justifies a threshold: per test set, the distance histograms of positive and negative
pairs with the threshold drawn in, and the ROC on a log-FPR axis with the operating points marked.

Drawn on a ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot state), like the other figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trytry_reid.atomic import write_figure
from trytry_reid.evaluation.calibration import COARSE_BINS, Calibration, rates_at

ROW_SIZE = (11.0, 3.6)  # inches per test set
DPI = 100
POSITIVE_COLOR, NEGATIVE_COLOR, THRESHOLD_COLOR = "#1a9850", "#d73027", "#2c5aa0"


def calibration_figure(calibrations: Mapping[str, Calibration], threshold: float | None = None,
                       threshold_label: str = "threshold") -> Figure:
    """One row per test set: histograms (each kind normalised to sum 1) | ROC (TPR vs FPR, log FPR)."""
    if not calibrations:
        raise ValueError("calibration_figure needs at least one calibrated test set")
    fig = Figure(figsize=(ROW_SIZE[0], ROW_SIZE[1] * len(calibrations)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(calibrations), 2, squeeze=False)
    for (label, calibration), (hist_ax, roc_ax) in zip(calibrations.items(), axes):
        _draw_histograms(hist_ax, label, calibration, threshold, threshold_label)
        _draw_roc(roc_ax, label, calibration, threshold)
    return fig


def draw_calibration(calibrations: Mapping[str, Calibration], out_path: str | Path, threshold: float | None = None,
                     threshold_label: str = "threshold") -> Path:
    """Write ``calibration_figure`` as a PNG."""
    return write_figure(calibration_figure(calibrations, threshold, threshold_label), out_path, DPI)


def calibration_array(calibrations: Mapping[str, Calibration], threshold: float | None = None,
                      threshold_label: str = "threshold") -> np.ndarray:
    """The figure as an RGB array [H, W, 3] uint8 (for TensorBoard)."""
    fig = calibration_figure(calibrations, threshold, threshold_label)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()


def _draw_histograms(ax, label: str, calibration: Calibration, threshold: float | None, threshold_label: str) -> None:
    h = calibration.histograms
    positive, negative = h.coarse(COARSE_BINS)
    edges = np.linspace(0.0, h.max_distance, COARSE_BINS + 1)
    for counts, color, name in ((negative, NEGATIVE_COLOR, f"different ({h.num_negative:,} pairs)"),
                                (positive, POSITIVE_COLOR, f"same person ({h.num_positive:,} pairs)")):
        ax.stairs(counts / counts.sum(), edges, fill=True, alpha=0.45, color=color, label=name)
    used = np.flatnonzero(positive + negative)
    ax.set_xlim(edges[used[0]], edges[used[-1] + 1])
    if threshold is not None:
        fpr, tpr = rates_at(calibration.roc, threshold)
        ax.axvline(threshold, color=THRESHOLD_COLOR, linewidth=2,
                   label=f"{threshold_label} {threshold:.4f}\nhere: FPR {fpr:.1e}, TPR {tpr:.3f}")
    ax.set_xlabel("cosine distance (1 - cos)")
    ax.set_ylabel("fraction of pairs per bin")
    ax.set_title(f"{label}: distances of query-gallery pairs")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)


def _draw_roc(ax, label: str, calibration: Calibration, threshold: float | None) -> None:
    roc = calibration.roc
    floor = 0.5 / calibration.histograms.num_negative
    ax.plot(np.maximum(roc.fpr, floor), roc.tpr, color="#333333", linewidth=1.6, label="ROC")
    for point in calibration.operating_points:
        ax.plot(max(point.fpr, floor), point.tpr, "o", markersize=6,
                label=f"FPR <= {point.target_fpr:.0e}: TPR {point.tpr:.3f} at {point.threshold:.4f}")
    if threshold is not None:
        fpr, tpr = rates_at(roc, threshold)
        ax.plot(max(fpr, floor), tpr, "*", color=THRESHOLD_COLOR, markersize=14, label="the threshold")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false positive rate (log)")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{label}: ROC, AUC {calibration.auc:.4f}, EER {100 * calibration.eer:.2f}%")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
