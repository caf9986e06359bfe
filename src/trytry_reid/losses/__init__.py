"""Losses: triplet selectors, triplet / center / cross-entropy / CosFace losses and the weighted Criterion."""

from trytry_reid.losses.center import CenterLoss
from trytry_reid.losses.cosface import CosFaceLoss
from trytry_reid.losses.criterion import LOSSES, Criterion, LossTerm, build_term
from trytry_reid.losses.cross_entropy import CrossEntropyLoss
from trytry_reid.losses.selectors import SELECTORS
from trytry_reid.losses.triplet import TripletLoss

__all__ = ["LOSSES", "SELECTORS", "CenterLoss", "CosFaceLoss", "Criterion", "CrossEntropyLoss", "LossTerm",
           "TripletLoss", "build_term"]
