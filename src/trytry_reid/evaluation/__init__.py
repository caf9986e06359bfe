"""Evaluation: ranking metrics, distances, re-ranking and feature extraction."""

from trytry_reid.evaluation.distance import average_query_expansion, compute_distance, fuse_flip
from trytry_reid.evaluation.rank import evaluate_rank
from trytry_reid.evaluation.rerank import rerank

__all__ = ["average_query_expansion", "compute_distance", "evaluate_rank", "fuse_flip", "rerank"]
