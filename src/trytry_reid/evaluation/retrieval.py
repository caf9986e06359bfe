"""Query/gallery retrieval of one test set with a model: features -> distances -> Market-protocol metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from trytry_reid.data.datasets import Record
from trytry_reid.evaluation import evaluate_rank
from trytry_reid.evaluation.calibration import Calibration, calibrate
from trytry_reid.evaluation.distance import average_query_expansion, compute_distance
from trytry_reid.evaluation.features import extract_features
from trytry_reid.evaluation.pair_histograms import pair_histograms, pair_histograms_from_features
from trytry_reid.evaluation.rerank import rerank

SUMMARY_RANKS = (1, 5, 10)
log = logging.getLogger("trytry_reid")


@dataclass
class RetrievalResult:
    """Everything a figure or a report needs about one ranked test set."""

    label: str
    query: list[Record]
    gallery: list[Record]
    query_features: np.ndarray  # [Q, D] L2-normalised, the model's own (before any query expansion)
    gallery_features: np.ndarray  # [G, D]
    distmat: np.ndarray  # [Q, G], smaller is closer
    ranking: dict  # evaluate_rank's output (cmc, mAP, mINP, all_ap, ...)
    # verification of every query-gallery pair by the cosine distance of the model's own features (no AQE,
    # no re-ranking): the distance that search, verify and the Embedder compare with a threshold
    calibration: Calibration | None = None

    def summary(self) -> dict[str, float]:
        """rank1, rank5, rank10, mAP, mINP as fractions, the query counts, and (when the pairs allow a
        calibration) auc, eer and tpr@fpr=1e-3 of the cosine distance."""
        out = summarize(self.ranking)
        if self.calibration is not None:
            out.update(self.calibration.summary())
        return out


def summarize(ranking: dict) -> dict[str, float]:
    cmc = ranking["cmc"]
    out = {f"rank{k}": float(cmc[min(k, len(cmc)) - 1]) for k in SUMMARY_RANKS}
    out.update(mAP=float(ranking["mAP"]), mINP=float(ranking["mINP"]),
               num_valid_queries=int(ranking["num_valid_queries"]))
    return out


def rank_features(label: str, query: list[Record], gallery: list[Record], qf: np.ndarray, gf: np.ndarray, *,
                  metric: str = "cosine", use_rerank: bool = False, aqe: int = 0,
                  max_rank: int = 50) -> RetrievalResult:
    """Rank the gallery for each query from features alone (also used by `evaluate --features`); ``aqe`` > 0
    first replaces each query by its average query expansion over that many gallery neighbours. The
    calibration always scores the features as given (AQE and re-ranking change the ranking only)."""
    ranked_qf, ranked_gf = average_query_expansion(qf, gf, k=aqe) if aqe > 0 else (qf, gf)
    distmat = rerank(ranked_qf, ranked_gf) if use_rerank else compute_distance(ranked_qf, ranked_gf, metric=metric)
    ranking = evaluate_rank(distmat, pids(query), pids(gallery), camids(query), camids(gallery),
                            max_rank=max_rank)
    cosine = distmat if metric == "cosine" and not use_rerank and aqe == 0 else None
    return RetrievalResult(label, query, gallery, qf, gf, distmat, ranking,
                           verify_pairs(label, query, gallery, qf, gf, cosine))


def verify_pairs(label: str, query: list[Record], gallery: list[Record], qf: np.ndarray, gf: np.ndarray,
                 cosine_distmat: np.ndarray | None = None) -> Calibration | None:
    """Calibration of every query-gallery pair by cosine distance (from ``cosine_distmat`` when given, else
    from the features in chunks); None, with a warning, when the set has no positive or no negative pair."""
    ids = (pids(query), pids(gallery), camids(query), camids(gallery))
    hist = pair_histograms(cosine_distmat, *ids) if cosine_distmat is not None else \
        pair_histograms_from_features(qf, gf, *ids, metric="cosine")
    if hist.num_positive == 0 or hist.num_negative == 0:
        log.warning("%s: no verification figures (%d positive, %d negative pairs)", label, hist.num_positive,
                    hist.num_negative)
        return None
    return calibrate(hist)


def evaluate_model(model: torch.nn.Module, label: str, query: list[Record], gallery: list[Record],
                   transform: Callable, *, batch_size: int = 128, workers: int = 0, device: str = "cpu",
                   flip: bool = False, metric: str = "cosine", use_rerank: bool = False, aqe: int = 0,
                   max_rank: int = 50) -> RetrievalResult:
    """Extract query and gallery features with `model.embed` and rank them."""
    kwargs = dict(batch_size=batch_size, workers=workers, device=device, flip=flip)
    qf = extract_features(model, query, transform, **kwargs)
    gf = extract_features(model, gallery, transform, **kwargs)
    return rank_features(label, query, gallery, qf, gf, metric=metric, use_rerank=use_rerank, aqe=aqe,
                         max_rank=max_rank)


def pids(records: list[Record]) -> np.ndarray:
    return np.asarray([r.pid for r in records], dtype=np.int64)


def camids(records: list[Record]) -> np.ndarray:
    return np.asarray([r.camid for r in records], dtype=np.int64)
