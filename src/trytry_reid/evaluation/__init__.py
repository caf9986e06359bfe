"""Evaluation: ranking metrics, verification calibration, open-set identification, distances, re-ranking,
feature extraction and saved feature files."""

from trytry_reid.evaluation.calibration import Calibration, calibrate
from trytry_reid.evaluation.distance import average_query_expansion, compute_distance, fuse_flip
from trytry_reid.evaluation.feature_file import FeatureFileError, FeatureSet, load_features, save_features
from trytry_reid.evaluation.features import extract_features
from trytry_reid.evaluation.open_set import best_matches, dir_at_far
from trytry_reid.evaluation.pair_histograms import PairHistograms, pair_histograms, pair_histograms_from_features
from trytry_reid.evaluation.rank import evaluate_rank
from trytry_reid.evaluation.rerank import rerank

__all__ = ["Calibration", "FeatureFileError", "FeatureSet", "PairHistograms", "average_query_expansion", "best_matches",
           "calibrate",
           "compute_distance", "dir_at_far", "evaluate_rank", "extract_features", "fuse_flip", "load_features",
           "pair_histograms", "pair_histograms_from_features", "rerank", "save_features"]
