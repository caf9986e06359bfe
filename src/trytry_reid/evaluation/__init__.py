"""Evaluation: ranking metrics, distances, re-ranking and feature extraction."""

from trytry_reid.evaluation.rank import evaluate_rank

__all__ = ["evaluate_rank"]
