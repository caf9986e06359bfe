"""Verification from pair histograms: ROC, AUC, EER and the threshold that meets a target false-positive rate.

Decision rule: a pair is called "same person" when its distance <= threshold. TPR(t) is the fraction of
positive pairs called same, FPR(t) the fraction of negative pairs called same. The ROC is evaluated at every
upper bin edge of a ``PairHistograms`` (exact there, see pair_histograms.py); what the binning can cost
between edges is bounded and reported next to each figure:

  * AUC: the trapezoid over the edge ROC counts a (positive, negative) pair that shares a bin as half a
    success; the exact (Mann-Whitney, ties as half) AUC differs by at most ``auc_error_bound`` =
    sum_i pos_i neg_i / (2 P N).
  * TPR at a target FPR: the operating point is the largest edge whose FPR <= target. An exact threshold
    inside the next bin could still meet the target, so the exact best TPR lies in
    [tpr, tpr + ``tpr_error_bound``], the bound being that next bin's share of the positives; the exact
    threshold lies within one bin width above ``threshold``.
  * EER (where FPR = 1 - TPR, linearly interpolated between adjacent ROC points): the exact crossing lies in
    the same bin, so the exact EER differs by at most ``eer_error_bound`` = min(that bin's FPR step, its
    FNR step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from trytry_reid.evaluation.pair_histograms import PairHistograms

TARGET_FPRS = (1e-2, 1e-3, 1e-4)
ROC_GRID = tuple(float(x) for x in np.logspace(-6, 0, 61))  # compact ROC: points at these FPRs (log axis)
COARSE_BINS = 256  # histogram resolution written to JSON and drawn


@dataclass(frozen=True)
class Roc:
    """The ROC at the histogram's bin edges: ``thresholds``, ``fpr``, ``tpr`` float64 [bins], nondecreasing."""

    thresholds: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray


@dataclass(frozen=True)
class OperatingPoint:
    target_fpr: float
    threshold: float      # "same" iff distance <= threshold
    fpr: float            # measured on the calibration pairs, <= target_fpr
    tpr: float
    tpr_error_bound: float

    def to_json(self) -> dict:
        return {"target_fpr": self.target_fpr, "threshold": self.threshold, "fpr": self.fpr, "tpr": self.tpr,
                "tpr_error_bound": self.tpr_error_bound}


@dataclass(frozen=True)
class Calibration:
    histograms: PairHistograms
    roc: Roc
    auc: float
    auc_error_bound: float
    eer: float
    eer_threshold: float
    eer_error_bound: float
    operating_points: tuple[OperatingPoint, ...]

    def at(self, target_fpr: float) -> OperatingPoint:
        """The operating point for any ``target_fpr`` (``operating_points`` holds those of ``calibrate``)."""
        return operating_point(self.roc, target_fpr)

    def summary(self) -> dict[str, float]:
        """The scalars reported next to rank-1 / mAP (metrics.json, TensorBoard): AUC, EER, TPR at FPR 1e-3."""
        return {"auc": self.auc, "eer": self.eer, "tpr@fpr=1e-3": self.at(1e-3).tpr}

    def to_json(self) -> dict:
        """Plain JSON: counts, AUC/EER with their error bounds, operating points, a compact ROC (points at
        ``ROC_GRID`` FPRs) and ``COARSE_BINS``-bin histograms."""
        h = self.histograms
        positive, negative = h.coarse(COARSE_BINS)
        return {"bins": h.bins, "max_distance": h.max_distance, "num_positive": h.num_positive,
                "num_negative": h.num_negative, "num_excluded": h.excluded, "auc": self.auc,
                "auc_error_bound": self.auc_error_bound, "eer": self.eer, "eer_threshold": self.eer_threshold,
                "eer_error_bound": self.eer_error_bound,
                "operating_points": [p.to_json() for p in self.operating_points],
                "roc": compact_roc(self.roc),
                "histogram": {"range": [0.0, h.max_distance], "bins": COARSE_BINS,
                              "positive": positive.tolist(), "negative": negative.tolist()}}


def roc_from_histograms(hist: PairHistograms) -> Roc:
    """The ROC at every upper bin edge; a clear error when one kind of pair is missing."""
    if hist.num_positive == 0 or hist.num_negative == 0:
        kind = "positive (same identity, another camera)" if hist.num_positive == 0 else \
            "negative (different identities)"
        raise ValueError(f"the calibration set has no {kind} pairs ({hist.num_positive} positive, "
                         f"{hist.num_negative} negative, {hist.excluded} same-camera pairs left out); "
                         f"calibration needs both")
    return Roc(thresholds=hist.upper_edges(), fpr=np.cumsum(hist.negative) / hist.num_negative,
               tpr=np.cumsum(hist.positive) / hist.num_positive)


def calibrate(hist: PairHistograms, target_fprs: Sequence[float] = TARGET_FPRS) -> Calibration:
    """ROC, AUC, EER and one operating point per target FPR, each with its quantisation bound."""
    roc = roc_from_histograms(hist)
    fpr0, tpr0 = _with_origin(roc.fpr), _with_origin(roc.tpr)
    auc = float(np.sum(np.diff(fpr0) * (tpr0[1:] + tpr0[:-1]) / 2))
    shared = float(np.dot(hist.positive.astype(np.float64), hist.negative)) / (hist.num_positive * hist.num_negative)
    eer, eer_threshold, eer_bound = _equal_error(roc)
    points = tuple(operating_point(roc, f) for f in target_fprs)
    return Calibration(histograms=hist, roc=roc, auc=auc, auc_error_bound=shared / 2, eer=eer,
                       eer_threshold=eer_threshold, eer_error_bound=eer_bound, operating_points=points)


def operating_point(roc: Roc, target_fpr: float) -> OperatingPoint:
    """The largest bin-edge threshold whose FPR <= ``target_fpr``. When even the first bin's negatives exceed
    the target, threshold 0 is returned with FPR = TPR = 0 (only identical crops would be called same)."""
    if not 0.0 < target_fpr <= 1.0:
        raise ValueError(f"target FPR must be in (0, 1], got {target_fpr}")
    i = int(np.searchsorted(roc.fpr, target_fpr, side="right")) - 1
    if i < 0:
        return OperatingPoint(float(target_fpr), 0.0, 0.0, 0.0, float(roc.tpr[0]))
    next_tpr = roc.tpr[min(i + 1, len(roc.tpr) - 1)]
    return OperatingPoint(float(target_fpr), float(roc.thresholds[i]), float(roc.fpr[i]), float(roc.tpr[i]),
                          float(next_tpr - roc.tpr[i]))


def rates_at(roc: Roc, threshold: float) -> tuple[float, float]:
    """(FPR, TPR) of ``threshold`` on this ROC's pairs: exact at a bin edge (every threshold this module
    returns is one); otherwise those of the largest edge <= threshold."""
    i = int(np.searchsorted(roc.thresholds, threshold, side="right")) - 1
    return (0.0, 0.0) if i < 0 else (float(roc.fpr[i]), float(roc.tpr[i]))


def compact_roc(roc: Roc, grid: Sequence[float] = ROC_GRID) -> dict[str, list[float]]:
    """The ROC points at the largest thresholds whose FPR <= each grid value (a few dozen points: small
    enough for JSON, a checkpoint or ONNX metadata, fine enough for a log-FPR plot)."""
    idx = np.searchsorted(roc.fpr, np.asarray(grid), side="right") - 1
    idx = np.unique(idx[idx >= 0])
    return {"threshold": roc.thresholds[idx].tolist(), "fpr": roc.fpr[idx].tolist(), "tpr": roc.tpr[idx].tolist()}


def _with_origin(values: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], values])


def _equal_error(roc: Roc) -> tuple[float, float, float]:
    """(EER, its threshold, error bound): FPR and FNR = 1 - TPR interpolated linearly between the two ROC
    points (the origin included) around their first crossing."""
    fpr, fnr = _with_origin(roc.fpr), 1.0 - _with_origin(roc.tpr)
    thresholds = np.concatenate([[0.0], roc.thresholds])
    i = int(np.argmax(fpr >= fnr))          # fpr - fnr rises from -1 to 1: a crossing always exists
    if i == 0:
        return float(fpr[0]), 0.0, 0.0
    gap_before, gap_after = fnr[i - 1] - fpr[i - 1], fpr[i] - fnr[i]
    a = gap_before / (gap_before + gap_after)
    eer = fpr[i - 1] + a * (fpr[i] - fpr[i - 1])
    bound = min(fpr[i] - fpr[i - 1], fnr[i - 1] - fnr[i])
    return float(eer), float(thresholds[i - 1] + a * (thresholds[i] - thresholds[i - 1])), float(bound)
