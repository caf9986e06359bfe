"""Training engine: schedule, checkpoints, exact resume, signals, mixed precision, DDP."""

from trytry_reid.engine.checkpoint import CheckpointError, check_writable, load_checkpoint, save_checkpoint
from trytry_reid.engine.epoch_loaders import EpochLoaders
from trytry_reid.engine.rng import capture_rng_state, restore_rng_state, seed_everything
from trytry_reid.engine.schedule import build_scheduler, lr_factor
from trytry_reid.engine.signals import TrainingInterrupted
from trytry_reid.engine.state import TrainObjects
from trytry_reid.engine.train import FitOptions, NonFiniteLossError, SkippedStepsError, fit, train_one_epoch, train_step

__all__ = [
    "CheckpointError", "EpochLoaders", "FitOptions", "NonFiniteLossError", "SkippedStepsError", "TrainObjects",
    "TrainingInterrupted", "build_scheduler", "capture_rng_state", "check_writable", "fit", "load_checkpoint",
    "lr_factor", "restore_rng_state", "save_checkpoint", "seed_everything", "train_one_epoch", "train_step",
]
