"""Evaluation: ranking metrics, distances, re-ranking, feature extraction and saved feature files."""

from trytry_reid.evaluation.distance import average_query_expansion, compute_distance, fuse_flip
from trytry_reid.evaluation.feature_file import FeatureFileError, load_feature_file, save_feature_file
from trytry_reid.evaluation.features import extract_features
from trytry_reid.evaluation.rank import evaluate_rank
from trytry_reid.evaluation.rerank import rerank

__all__ = ["FeatureFileError", "average_query_expansion", "compute_distance", "evaluate_rank", "extract_features",
           "fuse_flip", "load_feature_file", "rerank", "save_feature_file"]
