"""curves.png: a run's training history on one page, for people without TensorBoard.

The history is the plain dict ``engine.train.fit`` returns (its module docstring is the reference)::

    {"steps": [int], "lr": [float], "loss": {"total": [float], term_name: [float]},
     "stats": {"<term>/valid_triplets": [float], ...},
     "eval": [{"epoch": int, "dataset": str, "rank1": float, "mAP": float, ...}],
     "warnings": [{"step": int, "message": str}]}

Every per-step series is aligned with ``steps`` (NaN where a value was absent). Missing or empty parts are
allowed: their panel says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from trytry_reid.atomic import write_figure

FIGSIZE = (12.0, 8.0)  # inches
DPI = 110  # the PNG is FIGSIZE * DPI pixels: 1320 x 880
SMOOTH_ABOVE = 100  # per-step series longer than this get a moving-average line over the faint raw one


def _series(history: dict, key: str, length: int | None) -> np.ndarray | None:
    """history[key] as a float array, None when absent or empty; checks its length against the steps."""
    values = history.get(key)
    if values is None or len(values) == 0:
        return None
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (length is not None and len(array) != length):
        raise ValueError(f"history['{key}'] must be a list of {length} numbers (one per step), got shape "
                         f"{array.shape}")
    return array


def _steps(history: dict) -> np.ndarray | None:
    steps = history.get("steps")
    if steps is None or len(steps) == 0:
        return None
    return np.asarray(steps, dtype=np.int64)


def _smooth(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Trailing moving average over about 2% of the series; returns (averaged values, window)."""
    window = max(2, len(values) // 50)
    return np.convolve(values, np.ones(window) / window, mode="valid"), window


def _plot_step_series(ax, steps: np.ndarray, values: np.ndarray, color, label: str, width: float = 1.6) -> None:
    if len(values) > SMOOTH_ABOVE:
        smooth, window = _smooth(values)
        ax.plot(steps, values, color=color, alpha=0.2, linewidth=0.8)
        ax.plot(steps[window - 1:], smooth, color=color, linewidth=width, label=label)
    else:
        ax.plot(steps, values, color=color, linewidth=width, label=label, marker="." if len(values) < 30 else None)


def _say(ax, message: str) -> None:
    """An empty panel that explains why it is empty."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=13, color="#666666")
    ax.set_axis_off()


def _loss_terms(history: dict, length: int | None) -> dict[str, np.ndarray]:
    loss = history.get("loss") or {}
    if not isinstance(loss, dict):
        raise ValueError(f"history['loss'] must be a dict of term name -> list of floats, got {type(loss).__name__}")
    terms = {name: _series(loss, name, length) for name in loss}
    return {name: values for name, values in terms.items() if values is not None}


def _warning_steps(history: dict) -> list[int]:
    """Steps of the training loop's warnings (e.g. embedding collapse), marked on the loss panel."""
    return [int(w["step"]) for w in history.get("warnings") or [] if isinstance(w, dict) and "step" in w]


def _draw_loss(ax, steps: np.ndarray | None, terms: dict[str, np.ndarray], warning_steps: list[int]) -> None:
    ax.set_title("Loss terms (weighted) and total")
    if steps is None or not terms:
        _say(ax, "no loss recorded in this run")
        return
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    parts = {name: values for name, values in terms.items() if name != "total"}
    for i, (name, values) in enumerate(parts.items()):
        _plot_step_series(ax, steps, values, palette(i % 10), name)
    total = terms.get("total")
    if total is None and len(parts) > 1:
        total = np.sum(list(parts.values()), axis=0)
    if total is not None:
        _plot_step_series(ax, steps, total, "black", "total", width=2.2)
    for i, step in enumerate(warning_steps):
        ax.axvline(step, color="tab:red", linestyle=":", linewidth=1.5, label="warning" if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=10)


def _valid_series(history: dict, length: int | None) -> dict[str, np.ndarray]:
    """{triplet term: per-step number of valid triplets per batch} (stats["<term>/valid_triplets"]): the
    convergence indicator of triplet training. With random-negative selection every selected triplet is
    valid by construction, so the count, not the fraction, is what falls as the model learns."""
    stats = history.get("stats") or {}
    suffix = "/valid_triplets"
    found = {key[: -len(suffix)]: _series(stats, key, length) for key in stats if key.endswith(suffix)}
    return {k: v for k, v in found.items() if v is not None and not np.isnan(v).all()}


def _draw_valid_triplets(ax, steps: np.ndarray | None, series: dict[str, np.ndarray]) -> None:
    ax.set_title("Valid triplets per batch (loss > 0)")
    if steps is None or not series:
        _say(ax, "no triplet loss in this run")
        return
    shades = ["tab:purple", "tab:pink", "tab:olive", "tab:cyan"]
    for i, (name, values) in enumerate(series.items()):
        _plot_step_series(ax, steps, values, shades[i % len(shades)], name)
    if len(series) > 1:
        ax.legend(fontsize=10)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("step")
    ax.set_ylabel("valid triplets")


def _draw_lr(ax, steps: np.ndarray | None, lr: np.ndarray | None) -> None:
    ax.set_title("Learning rate")
    if steps is None or lr is None:
        _say(ax, "no learning rate recorded in this run")
        return
    ax.plot(steps, lr, color="tab:gray", linewidth=1.8)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))


def _eval_by_dataset(entries: Sequence[dict]) -> dict[str, dict[str, np.ndarray]]:
    """{dataset: {"epoch", "rank1", "mAP"}} sorted by epoch; a clear error for entries missing a key."""
    grouped: dict[str, list[tuple[float, float, float]]] = {}
    for i, entry in enumerate(entries):
        missing = [key for key in ("epoch", "rank1", "mAP") if key not in entry]
        if missing:
            raise ValueError(f"history['eval'][{i}] lacks {missing}; expected keys epoch, dataset, rank1, mAP")
        name = str(entry.get("dataset", "test"))
        grouped.setdefault(name, []).append((float(entry["epoch"]), float(entry["rank1"]), float(entry["mAP"])))
    result = {}
    for name, rows in grouped.items():
        table = np.asarray(sorted(rows))
        result[name] = {"epoch": table[:, 0], "rank1": table[:, 1], "mAP": table[:, 2]}
    return result


def _draw_eval(ax, entries: Sequence[dict]) -> None:
    ax.set_title("Rank-1 (solid) and mAP (dashed) per evaluation")
    if not entries:
        _say(ax, "no evaluation in this run")
        return
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    for i, (name, series) in enumerate(_eval_by_dataset(entries).items()):
        color = palette(i % 10)
        ax.plot(series["epoch"], 100 * series["rank1"], color=color, marker="o", linewidth=2, label=f"{name} rank-1")
        ax.plot(series["epoch"], 100 * series["mAP"], color=color, marker="s", linewidth=2, linestyle="--",
                label=f"{name} mAP")
    epochs = [float(entry["epoch"]) for entry in entries]
    ax.set_xlim(min(epochs) - 1, max(epochs) + 1)  # a single evaluation still gets integer epoch ticks
    ax.set_ylim(0, 102)
    ax.set_xlabel("epoch")
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10, loc="best", framealpha=0.9)


def _style(ax) -> None:
    """Readable fonts, no top/right frame, integer ticks on step and epoch axes."""
    ax.title.set_fontsize(14)
    ax.xaxis.label.set_fontsize(12)
    ax.yaxis.label.set_fontsize(12)
    ax.tick_params(labelsize=11)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.spines[["top", "right"]].set_visible(False)


def draw_curves(history: dict, out_path: str | Path) -> Path:
    """Write a 2 x 2 page (FIGSIZE x DPI pixels): loss terms, valid-triplet fraction, rank-1/mAP, learning rate."""
    if not isinstance(history, dict):
        raise ValueError(f"history must be a dict (see trytry_reid.visualization.curves), got {type(history).__name__}")
    steps = _steps(history)
    length = None if steps is None else len(steps)
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    _draw_loss(axes[0, 0], steps, _loss_terms(history, length), _warning_steps(history))
    _draw_valid_triplets(axes[0, 1], steps, _valid_series(history, length))
    _draw_eval(axes[1, 0], history.get("eval") or [])
    _draw_lr(axes[1, 1], steps, _series(history, "lr", length))
    for ax in axes.flat:
        _style(ax)
    return write_figure(fig, out_path, DPI)
