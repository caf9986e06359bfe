"""The training job: config -> datasets, model, losses, optimizers -> engine.fit -> metrics, figures.

Like the other jobs (evaluate.py, calibrate.py) it reads the Config, through builders.py; the
library code it calls takes plain arguments.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from trytry_reid.atomic import atomic_file
from trytry_reid.data.validate import dataset_report
from trytry_reid.engine import distributed
from trytry_reid.engine.checkpoint import check_writable, load_checkpoint
from trytry_reid.engine.rng import seed_everything
from trytry_reid.engine.state import TrainObjects
from trytry_reid.engine.train import FitOptions, checkpoint_space, fit
from trytry_reid.errors import UsageError
from trytry_reid.evaluation.calibration import Calibration
from trytry_reid.evaluation.operating_point import ENTRY_KEY, make_entry
from trytry_reid.evaluation.retrieval import RetrievalResult, evaluate_model
from trytry_reid.jobs import builders, run_folder
from trytry_reid.jobs.config import Config, dump_yaml, to_dict
from trytry_reid.jobs.reports import (
    fixed_queries,
    format_table,
    ranking_array,
    write_figures,
    write_json,
    write_metrics,
)
from trytry_reid.visualization.calibration_plot import calibration_array, draw_calibration
from trytry_reid.visualization.curves import draw_curves

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


def run_check_data(config: Config) -> int:
    """`train --check-data`: every dataset of the config once (training, then test sets), every image decoded,
    every naming problem reported with the bad images (see data/validate.py: dataset_report)."""
    sources = {(config.data.name, config.data.root): config.data.name}
    for item in config.test.datasets:
        sources.setdefault((item.name, item.root), item.label or item.name)
    problems = 0
    for (name, root), label in sources.items():
        lines, found = dataset_report(name, root)
        for line in lines:
            print(f"{label}: {line}")
        problems += found
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
        options = builders.retrieval_options(self.config, self.device)
        self.results = [evaluate_model(model, label, s.query, s.gallery, transform, **options)
                        for label, s in self.test_sets]
        first = self.results[0] if self.results else None
        # never keep an older operating point for the new weights: none when this evaluation cannot calibrate,
        # nor when test.flip averages in flipped crops (the served embedding does not: `calibrate` measures it)
        self.operating_point = None if first is None or first.calibration is None or t.flip else \
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


def tensorboard_writer(out: Path, state: dict | None) -> SummaryWriter:
    """A resumed run drops the events logged after its checkpoint, so replayed steps are not drawn twice."""
    if state is None:
        return SummaryWriter(str(out / "tb"))
    return SummaryWriter(str(out / "tb"), purge_step=int(state.get("step", 0)) + 1)


def fit_options(config: Config, out: Path, steps: int, device, checkpoint_extras=None) -> FitOptions:
    t = config.train
    return FitOptions(epochs=t.epochs, steps_per_epoch=steps, device=device, eval_every=t.eval_every,
                      checkpoint_dir=out / "checkpoints", checkpoint_every_steps=t.checkpoint_every_steps,
                      checkpoint_keep=t.checkpoint_keep, amp=t.amp, fp32_precision=t.fp32_precision,
                      channels_last=t.channels_last, log_every=t.log_every, run_config=to_dict(config),
                      checkpoint_extras=checkpoint_extras)


def build_objects(config: Config, train: builders.TrainData, info, device, resuming: bool = False) -> TrainObjects:
    model = builders.build_model(config, train.num_classes if builders.needs_classifier(config) else 0,
                                 load_pretrained=not resuming)
    criterion = builders.build_criterion(config, train.num_classes, model.output_dim)
    optimizer = builders.build_optimizer(config, model, criterion)
    scheduler = builders.build_lr_scheduler(config, optimizer, train.steps_per_epoch)
    average = builders.build_weight_average(config, model, train.steps_per_epoch)
    return TrainObjects(model=distributed.wrap_model(model.to(device), info, device), criterion=criterion,
                        optimizer=optimizer, scheduler=scheduler,
                        loss_optimizer=builders.build_loss_optimizer(criterion), average=average)


def load_resume_state(config: Config, checkpoint: Path | None) -> dict | None:
    """The checkpoint to resume, read once and checked against the config (nothing is written)."""
    if checkpoint is None:
        return None
    state = load_checkpoint(checkpoint)
    run_folder.check_resume_config(state, to_dict(config), to_dict(Config()), checkpoint)
    return state


def run_train(config: Config, resume: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train, evaluate and report; returns the summary written to summary.json.

    Every check that can fail (the output folder, the resume checkpoint and its fit with the config, the
    data, the sampler, the model) runs before the first file is written."""
    if resume is not None and overwrite:
        raise UsageError("--resume continues the run in its folder and --overwrite would delete it; pass one")
    info = distributed.init_distributed()
    device = distributed.device_for(info, config.train.device)
    out = output_dir(config, resume)
    checkpoint = run_folder.resume_path(out, resume)
    state = load_resume_state(config, checkpoint)
    if state is not None and run_folder.finished_epochs(state, config.train.epochs, checkpoint) is not None:
        print(f"this run already finished {state['epoch']} epoch(s) ({checkpoint}); nothing was changed. "
              f"To train longer, resume with train.epochs larger than {state['epoch']}")
        return {}
    # every rank checks (read only), so none goes on alone into the collectives when the folder is refused
    found = [] if run_folder.resumes_in_place(out, checkpoint) else run_folder.refuse_existing_run(out, overwrite)
    seed_everything(config.train.seed)
    splits = builders.build_train_splits(config)
    train = builders.build_train_data(config, splits, info.rank, info.world_size)
    test_sets = builders.build_test_sets(config, splits)
    objects = build_objects(config, train, info, device, resuming=state is not None)
    if state is not None:
        run_folder.check_resume_model(state, distributed.unwrap(objects.model), checkpoint)
        run_folder.check_resume_state(state, objects, checkpoint)
    if info.is_main:
        check_writable(out, need_bytes=checkpoint_space(objects, config.train.checkpoint_keep))
        run_folder.delete_run(out, found)
        with atomic_file(out / "config.yml", "w") as handle:
            handle.write(dump_yaml(config))
    writer = tensorboard_writer(out, state) if info.is_main else None
    evaluator = Evaluator(config, objects.inference_model(), test_sets, str(device), writer,
                          None if state is None else state.get(ENTRY_KEY))
    log.info("training %s for %d epochs x %d steps; outputs in %s", config.name, config.train.epochs,
             train.steps_per_epoch, out)
    start = time.time()
    try:
        history = fit(objects, train.loaders, fit_options(config, out, train.steps_per_epoch, device,
                                                          evaluator.checkpoint_extras),
                      evaluate=evaluator, writer=writer, resume_from=state)
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
    logged = history["steps"][-1] if history["steps"] else 0
    summary = {"epochs": config.train.epochs, "steps": history.get("train_steps", logged),
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
    checkpoints = [out / "checkpoints" / name for name in ("best.pt", "last.pt")]
    for path in written + [path for path in checkpoints if path.is_file()] + [out / "tb"]:
        print(f"  {path}")
    return summary
