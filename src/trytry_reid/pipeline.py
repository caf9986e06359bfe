"""The training job: config -> datasets, model, losses, optimizers -> engine.fit -> metrics, figures.

The only place (with builders.py) that reads the config; everything it calls takes plain arguments.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from . import builders
from .config import Config, dump_yaml, to_dict
from .data.datasets import build_dataset
from .data.validate import check_identities, find_bad_images
from .engine import distributed
from .engine.checkpoint import check_writable, load_checkpoint
from .engine.rng import seed_everything
from .engine.train import FitOptions, TrainObjects, fit
from .reports import fixed_queries, format_table, ranking_array, write_figures, write_json, write_metrics
from .evaluation.calibration import Calibration
from .operating_point import ENTRY_KEY, make_entry
from .retrieval import RetrievalResult, evaluate_model
from .visualization.calibration_plot import calibration_array, draw_calibration
from .visualization.curves import draw_curves

log = logging.getLogger("trytry_reid")


def output_dir(config: Config, resume: str | None) -> Path:
    """The run folder: `output_dir`, or runs/<name>-<timestamp> (with --resume: the newest such run)."""
    if config.output_dir:
        return Path(config.output_dir)
    if resume == "auto":
        runs = sorted(Path("runs").glob(f"{config.name}-*/checkpoints/last.pt"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise FileNotFoundError(f"--resume: no runs/{config.name}-*/checkpoints/last.pt to resume; "
                                    f"pass --resume PATH or output_dir=...")
        return runs[-1].parent.parent
    return Path("runs") / f"{config.name}-{datetime.now():%Y%m%d-%H%M%S}"


# What a training run writes into its folder; a folder holding any of them holds a run.
RUN_FILES = ("config.yml", "metrics.json", "summary.json", "curves.png")
RUN_FOLDERS = ("checkpoints", "tb", "figures")


class RunExistsError(FileExistsError):
    """Training would write into a folder that already holds a run."""


def claim_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse a folder that holds a run unless ``overwrite``; with it, delete that run's files (only those)."""
    found = [name for name in RUN_FILES + RUN_FOLDERS if (out / name).exists()]
    if not found:
        return
    if not overwrite:
        raise RunExistsError(
            f"output folder {out} already holds a run ({', '.join(found)}); nothing was changed. Continue it "
            f"with --resume, train into another folder (output_dir=...), or pass --overwrite to replace it")
    log.warning("--overwrite: deleting the run in %s (%s)", out, ", ".join(found))
    for name in found:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def resume_path(out: Path, resume: str | None) -> Path | None:
    if resume is None:
        return None
    path = out / "checkpoints" / "last.pt" if resume == "auto" else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: checkpoint {path} does not exist")
    return path


def run_check_data(config: Config) -> int:
    """`train --check-data`: decode every image of every split; report all problems at once."""
    problems = 0
    for label, splits in [(config.data.name, build_dataset(config.data.name, config.data.root))] + \
            builders.build_test_sets(config, None):
        records = splits.train + splits.query + splits.gallery
        bad = find_bad_images(records, full=True)
        notes = check_identities(splits)
        for path, reason in bad:
            print(f"{label}: bad image {path}: {reason}")
        for note in notes:
            print(f"{label}: {note}")
        print(f"{label}: {len(records)} images checked, {len(bad)} bad")
        problems += len(bad)
    return 1 if problems else 0


class Evaluator:
    """evaluate(epoch) for engine.fit: ranks every test set, logs metrics, fixed-query ranking grids and the
    calibration figure; keeps the first test set's operating point for the checkpoints written after it."""

    def __init__(self, config: Config, model, test_sets, device: str, writer: SummaryWriter | None,
                 operating_point: dict | None = None) -> None:
        self.config, self.model, self.test_sets = config, model, test_sets
        self.device, self.writer = device, writer
        self.results: list[RetrievalResult] = []
        self.queries: dict[str, list[int]] = {}
        self.operating_point = operating_point  # resumed runs start from their checkpoint's

    def __call__(self, epoch: int) -> dict[str, dict[str, float]]:
        t = self.config.test
        model = distributed.unwrap(self.model)
        transform = builders.test_transform(self.config)
        self.results = [evaluate_model(model, label, s.query, s.gallery, transform, batch_size=t.batch_size,
                                       workers=self.config.data.workers, device=self.device, flip=t.flip,
                                       metric=t.metric, use_rerank=t.rerank, max_rank=t.max_rank)
                        for label, s in self.test_sets]
        first = self.results[0] if self.results else None
        # never keep an older operating point for the new weights: none when this evaluation cannot calibrate
        self.operating_point = None if first is None or first.calibration is None else \
            make_entry(first.calibration, t.calibration_fpr, first.label, epoch=epoch)
        summaries = self.summaries()
        log.debug("epoch %d evaluation:\n%s", epoch, format_table(summaries))
        self.log_rankings(epoch)
        self.log_calibration(epoch)
        return summaries

    def summaries(self) -> dict[str, dict[str, float]]:
        return {r.label: r.summary() for r in self.results}

    def calibrations(self) -> dict[str, Calibration]:
        return {r.label: r.calibration for r in self.results if r.calibration is not None}

    def checkpoint_extras(self) -> dict:
        """``{"calibration": entry}`` once an evaluation calibrated the first test set (FitOptions hook)."""
        return {} if self.operating_point is None else {ENTRY_KEY: self.operating_point}

    def log_rankings(self, epoch: int) -> None:
        if self.writer is None or self.config.test.ranking_queries == 0:
            return
        for result in self.results:
            queries = self.queries.setdefault(result.label, fixed_queries(result, 4, self.config.train.seed))
            grid = ranking_array(result, queries, top_k=min(8, self.config.test.ranking_top_k))
            self.writer.add_image(f"ranking/{result.label}", grid, epoch, dataformats="HWC")

    def log_calibration(self, epoch: int) -> None:
        """The histograms + ROC figure, with the stored threshold (AUC and TPR@1e-3 go out as eval scalars)."""
        calibrations = self.calibrations()
        if self.writer is None or not calibrations:
            return
        threshold = None if self.operating_point is None else self.operating_point["threshold"]
        image = calibration_array(calibrations, threshold, threshold_label(self.operating_point))
        self.writer.add_image("calibration", image, epoch, dataformats="HWC")


def threshold_label(entry: dict | None) -> str:
    return "threshold" if entry is None else f"threshold (FPR {entry['target_fpr']:g} on {entry['dataset']})"


def tensorboard_writer(out: Path, resume_step: int | None) -> SummaryWriter:
    """A resumed run drops the events logged after its checkpoint, so replayed steps are not drawn twice."""
    if resume_step is None:
        return SummaryWriter(str(out / "tb"))
    return SummaryWriter(str(out / "tb"), purge_step=resume_step + 1)


def fit_options(config: Config, out: Path, steps: int, device, checkpoint_extras=None) -> FitOptions:
    t = config.train
    return FitOptions(epochs=t.epochs, steps_per_epoch=steps, device=device, eval_every=t.eval_every,
                      checkpoint_dir=out / "checkpoints", checkpoint_every_steps=t.checkpoint_every_steps,
                      keep=t.checkpoint_keep, amp=t.amp, channels_last=t.channels_last,
                      history_every=t.log_every, run_config=to_dict(config), checkpoint_extras=checkpoint_extras)


def build_objects(config: Config, train: builders.TrainData, info, device) -> TrainObjects:
    use_ce = config.loss.cross_entropy.weight > 0
    model = builders.build_model(config, train.num_classes if use_ce else 0)
    criterion = builders.build_criterion(config, train.num_classes, model.output_dim)
    optimizer = builders.build_optimizer(config, model)
    return TrainObjects(model=distributed.wrap_model(model.to(device), info, device), criterion=criterion,
                        optimizer=optimizer, scheduler=builders.build_lr_scheduler(config, optimizer, train.steps_per_epoch),
                        center_optimizer=builders.build_center_optimizer(config, criterion),
                        center_weight=config.loss.center.weight or 1.0)


def run_train(config: Config, resume: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train, evaluate and report; returns the summary written to summary.json."""
    info = distributed.init_distributed()
    device = distributed.device_for(info, config.train.device)
    out = output_dir(config, resume)
    checkpoint = resume_path(out, resume)
    if info.is_main and checkpoint is None:
        claim_output_dir(out, overwrite)
    if info.is_main:
        check_writable(out)
        (out / "config.yml").write_text(dump_yaml(config))
    seed_everything(config.train.seed)
    splits = builders.build_train_splits(config)
    train = builders.build_train_data(config, splits, info.rank, info.world_size)
    test_sets = builders.build_test_sets(config, splits)
    objects = build_objects(config, train, info, device)
    resumed = load_checkpoint(checkpoint) if checkpoint is not None and info.is_main else None
    resume_step = None if resumed is None else int(resumed.get("step", 0))
    writer = tensorboard_writer(out, resume_step) if info.is_main else None
    evaluator = Evaluator(config, objects.model, test_sets, str(device), writer,
                          None if resumed is None else resumed.get(ENTRY_KEY))
    del resumed
    log.info("training %s for %d epochs x %d steps; outputs in %s", config.name, config.train.epochs,
             train.steps_per_epoch, out)
    start = time.time()
    try:
        history = fit(objects, train.loaders, fit_options(config, out, train.steps_per_epoch, device,
                                                          evaluator.checkpoint_extras),
                      evaluate=evaluator, writer=writer, resume_from=checkpoint)
    finally:
        if writer is not None:
            writer.close()
    if not info.is_main:
        return {}
    return finish(config, out, history, evaluator, time.time() - start)


def training_speed(history: dict) -> float:
    """Training images per second of wall time: every image trained on over the time the training epochs
    took (data loading included; evaluation and end-of-epoch checkpoints excluded)."""
    seconds = history.get("train_seconds", 0.0)
    return round(history.get("train_images", 0) / seconds, 1) if seconds > 0 else 0.0


def finish(config: Config, out: Path, history: dict, evaluator: Evaluator, wall: float) -> dict[str, Any]:
    """Write metrics.json, summary.json, curves.png and the figures; print where they are."""
    summaries = evaluator.summaries()
    summary = {"epochs": config.train.epochs, "steps": history["steps"][-1] if history["steps"] else 0,
               "wall_s": round(wall, 1), "train_s": round(history.get("train_seconds", 0.0), 1),
               "train_images": history.get("train_images", 0),
               "images_per_s": training_speed(history), "metrics": summaries}
    written = [write_metrics(out / "metrics.json", summaries, config.train.epochs),
               write_json(out / "summary.json", summary), draw_curves(history, out / "curves.png")]
    if config.test.figures and evaluator.results:
        t = config.test
        written += write_figures(evaluator.results, out / "figures", num_queries=t.ranking_queries,
                                 top_k=t.ranking_top_k, tsne_max_ids=t.tsne_max_ids, seed=config.train.seed)
        if evaluator.calibrations():
            entry = evaluator.operating_point
            written.append(draw_calibration(evaluator.calibrations(), out / "figures" / "calibration.png",
                                            None if entry is None else entry["threshold"], threshold_label(entry)))
    print(format_table(summaries))
    print(f"\nrun folder: {out}")
    for path in written + [out / "checkpoints" / "last.pt", out / "tb"]:
        print(f"  {path}")
    return summary
