"""The calibrated operating point a model carries, and how commands pick the threshold they decide with.

One plain dict (the *entry*), written by ``calibrate`` (and by training at each evaluation) into the
checkpoint under ``"calibration"``, copied by ``index`` into ``index.json``'s ``info`` and by ``export`` into
the ONNX metadata; ``verify``, ``search``, ``serve`` and ``Embedder`` read it. Keys:

  metric        "cosine": 1 - cos of L2-normalised features, the distance search/verify/Embedder compute
  target_fpr    the false-positive rate asked for
  threshold     "same person" iff distance <= threshold
  fpr, tpr      what that threshold gets on the calibration pairs
  auc, eer      of the calibration pairs
  dataset, num_positive, num_negative, date (UTC), and where known the training epoch/step
  roc           compact ROC {"threshold", "fpr", "tpr"} (a few dozen points) to read off the FPR/TPR of
                another threshold
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from trytry_reid.errors import ReidError, UsageError
from trytry_reid.evaluation.calibration import Calibration, Roc, compact_roc, rates_at

ENTRY_KEY = "calibration"
METRIC = "cosine"
_REQUIRED = ("metric", "target_fpr", "threshold", "fpr", "tpr")


class CalibrationError(ReidError, ValueError):
    """A calibration that cannot be made or used (no pairs of a kind, a missing or foreign operating point)."""


@dataclass(frozen=True)
class Threshold:
    """The threshold a command decides with (``value`` None: no decision, just a ranking)."""

    value: float | None
    source: str                 # "calibrated" | "explicit" | "none"
    fpr: float | None = None    # on the calibration pairs, when known
    tpr: float | None = None
    dataset: str | None = None

    def describe(self) -> str:
        """One line for people, e.g. 'threshold 0.3125 (calibrated on viper: FPR 1.0e-03, TPR 0.412)'."""
        if self.value is None:
            return "no threshold (ranking only; run `trytry-reid calibrate` or pass --threshold)"
        rates = "" if self.fpr is None else f"FPR {self.fpr:.1e}, TPR {self.tpr:.3f} on {self.dataset}"
        origin = "calibrated" if self.source == "calibrated" else "explicit"
        return f"threshold {self.value:.4f} ({origin}{': ' + rates if rates else ''})"

    def to_json(self) -> dict:
        return {"threshold": self.value, "source": self.source, "fpr": self.fpr, "tpr": self.tpr,
                "dataset": self.dataset}


def make_entry(calibration: Calibration, target_fpr: float, dataset: str, **provenance: object) -> dict:
    """The entry for ``calibration``'s operating point at ``target_fpr`` (cosine distances)."""
    point = calibration.at(target_fpr)
    return {"metric": METRIC, "target_fpr": float(target_fpr), "threshold": point.threshold, "fpr": point.fpr,
            "tpr": point.tpr, "auc": calibration.auc, "eer": calibration.eer, "dataset": dataset,
            "num_positive": calibration.histograms.num_positive,
            "num_negative": calibration.histograms.num_negative,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **provenance,
            "roc": compact_roc(calibration.roc)}


def check_entry(entry: object, where: str) -> dict:
    """``entry`` if it is a usable operating point; a ValueError naming ``where`` otherwise."""
    if not isinstance(entry, dict):
        raise CalibrationError(f"{where}: the calibration entry must be a dict, got {type(entry).__name__}")
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise CalibrationError(f"{where}: the calibration entry lacks {missing}; rerun `trytry-reid calibrate`")
    if entry["metric"] != METRIC:
        raise CalibrationError(f"{where}: the calibration was made with the {entry['metric']!r} distance but verify "
                         f"and search use {METRIC!r}; rerun `trytry-reid calibrate`")
    if not isinstance(entry["threshold"], (int, float)) or not math.isfinite(entry["threshold"]):
        raise CalibrationError(f"{where}: calibration threshold {entry['threshold']!r} is not a finite number")
    return entry


def read_from_checkpoint(state: dict, where: str) -> dict | None:
    """The checkpoint dict's entry (checked), or None when it was never calibrated."""
    entry = state.get(ENTRY_KEY)
    return None if entry is None else check_entry(entry, where)


def parse_threshold(text: str) -> str | float:
    """A ``--threshold`` / form value: 'auto', 'none' or a cosine distance in [0, 2]."""
    value = str(text).strip().lower()
    if value in ("auto", "none", ""):
        return value or "auto"
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 2.0:
        raise UsageError(f"threshold must be 'auto', 'none' or a cosine distance in [0, 2], got {text!r}")
    return number


def resolve_threshold(spec: str | float | None, entry: dict | None) -> Threshold:
    """'auto' / None: the entry's threshold (or none when there is no entry); 'none': no threshold; a number:
    that threshold, with its FPR/TPR read off the entry's ROC when there is one."""
    spec = "auto" if spec is None else parse_threshold(spec) if isinstance(spec, str) else float(spec)
    if spec == "none" or (spec == "auto" and entry is None):
        return Threshold(None, "none")
    if spec == "auto":
        return Threshold(float(entry["threshold"]), "calibrated", float(entry["fpr"]), float(entry["tpr"]),
                         entry.get("dataset"))
    rates = None if entry is None else rates_on_roc(entry, spec)
    return Threshold(float(spec), "explicit", *(rates or (None, None)),
                     None if entry is None else entry.get("dataset"))


def rates_on_roc(entry: dict, threshold: float) -> tuple[float, float] | None:
    """(FPR, TPR) of ``threshold`` from the entry's compact ROC: those of the largest stored threshold <= it
    (exact at stored points, a lower estimate between them); None without a ROC."""
    roc = entry.get("roc")
    if not roc or not roc.get("threshold"):
        return None
    return rates_at(Roc(*(np.asarray(roc[key], dtype=np.float64) for key in ("threshold", "fpr", "tpr"))),
                    threshold)


def flag_results(distances: np.ndarray, threshold: Threshold) -> tuple[np.ndarray | None, bool | None]:
    """(within [k] bool: distance <= threshold, unknown: no result within) of one query's ranked distances;
    (None, None) when there is no threshold."""
    if threshold.value is None:
        return None, None
    within = np.asarray(distances) <= threshold.value
    return within, not bool(within.any())


def require_value(threshold: Threshold, where: str) -> float:
    """The threshold value, or the error that says how to get one."""
    if threshold.value is None:
        raise CalibrationError(f"{where} has no calibration: run `trytry-reid calibrate --checkpoint CKPT` "
                               f"to store an operating point, or give an explicit threshold (--threshold DISTANCE)")
    return threshold.value
