"""The training loop: functions over already-built objects, read top to bottom.

``fit`` loops epochs; ``train_one_epoch`` loops batches; ``train_step`` does one optimisation step::

    output = model(images)                       # ReidOutput
    terms, stats = criterion(output, labels)     # {name: weighted loss}, {"name/key": float}
    sum(terms.values()).backward()
    own-rate loss grads *= 1 / term weight       # BoT: centers move at their own lr, not weight * lr
    optimizer.step(); loss_optimizer.step(); scheduler.step()   # the schedule is per iteration
    average.after_step(model)                    # train.ema_decay: the weights evaluation ranks with
                                                 # (train.average_epochs: average.after_epoch at each epoch end)

History (returned by ``fit``, stored in every checkpoint, drawn by ``visualization/curves.py``)::

    {"steps":  [int, ...],                 # global step (1-based) at each logged point
     "epochs": [float, ...],               # fractional epoch at each logged point
     "lr":     [float, ...],
     "loss":   {"total": [...], "<term>": [...]},          # means over the steps since the last point
     "stats":  {"<term>/<key>": [...], "embedding_norm": [...], "images_per_s": [...]},
     "eval":   [{"epoch": int, "dataset": str, "rank1": float, "mAP": float, "mINP": float, ...}, ...],
     "warnings": [{"step": int, "message": str}, ...],
     "train_seconds": float, "train_images": int,   # wall time of the training epochs (evaluation and
                                                   # checkpoints excluded) and the images they trained on
     "train_steps": int}                           # training steps (batches) taken, logged or not

Every list in "loss" and "stats" is aligned with "steps" (NaN where a key was absent). The triplet stats the
seed watches are ``stats["triplet/valid_triplets"]`` and ``stats["triplet/valid_fraction"]`` for a term
named ``triplet``. "epoch" in "eval" counts completed epochs (1-based).
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from tqdm import tqdm

from trytry_reid.engine import distributed
from trytry_reid.engine.checkpoint import check_writable, estimate_checkpoint_bytes, load_checkpoint, save_checkpoint
from trytry_reid.engine.precision import check_precision, onednn_fp32_precision
from trytry_reid.engine.signals import StopRequest, TrainingInterrupted, resume_message
from trytry_reid.engine.state import Progress, TrainObjects, restore_training_state, training_state
from trytry_reid.errors import ReidError

log = logging.getLogger(__name__)

AMP_MODES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
Evaluate = Callable[[int], dict[str, dict[str, float]]]
Loaders = Callable[[int, int], Iterable[Sequence[Any]]]


class NonFiniteLossError(ReidError, FloatingPointError):
    """The loss became NaN or infinite; the message has the step, each term and the batch's ids."""


class SkippedStepsError(ReidError, FloatingPointError):
    """Mixed precision (fp16) kept skipping optimizer steps because gradients overflowed."""


@dataclass
class FitOptions:
    epochs: int
    steps_per_epoch: int
    device: str | torch.device = "cpu"
    eval_every: int = 0  # evaluate every N epochs (0: only after the last epoch)
    checkpoint_dir: Path | None = None  # None: no checkpoints (and no resume after a signal)
    checkpoint_every_steps: int = 0  # also write last.pt every N steps (0: only at epoch ends)
    checkpoint_keep: int = 3  # numbered epoch_XXXX.pt copies kept besides last.pt and best.pt (0: none)
    amp: str = "off"  # off | bf16 | fp16
    fp32_precision: str = "none"  # engine/precision.FP32_PRECISIONS: oneDNN's math inside fp32 conv/matmul
    channels_last: bool = False
    log_every: int = 10  # steps between history points / TensorBoard scalars
    collapse_window: int = 20  # steps of collapsed embeddings before a warning
    collapse_eps: float = 1e-3  # mean positive and negative distances both below this = collapsed
    max_skipped_steps: int = 25  # consecutive fp16-skipped steps before giving up
    progress: bool = True  # tqdm bar per epoch (rank 0 only)
    run_config: dict = field(default_factory=dict)  # stored as "config" in every checkpoint
    # called at each checkpoint write; its entries join the checkpoint dict (e.g. the calibrated operating point)
    checkpoint_extras: Callable[[], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got '{self.amp}'")
        check_precision(self.fp32_precision)
        for name in ("epochs", "steps_per_epoch", "log_every", "collapse_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"FitOptions.{name} must be >= 1, got {getattr(self, name)}")


def fit(objects: TrainObjects, loaders: Loaders, options: FitOptions, *, evaluate: Evaluate | None = None,
        writer: Any = None, resume_from: str | Path | dict | None = None) -> dict[str, Any]:
    """Train for ``options.epochs`` epochs (continuing ``resume_from`` exactly); return the history.

    ``loaders(epoch, start_batch)`` yields that epoch's batches from ``start_batch`` on, each a sequence
    ``(images [B,3,H,W], labels [B], ...)`` with dataset indices at position 3 when present (see
    ``epoch_loaders.EpochLoaders``). ``evaluate(epoch)`` returns ``{dataset: {"rank1", "mAP", "mINP", ...}}``; the
    first dataset's mAP selects best.pt. ``writer`` is a TensorBoard SummaryWriter or None (when resuming,
    open it with ``purge_step=load_checkpoint(path)["step"] + 1`` so replayed steps are not drawn twice).
    ``resume_from`` is a checkpoint path or the state dict already loaded from one.
    Raises NonFiniteLossError, SkippedStepsError, CheckpointError, or TrainingInterrupted after a signal.
    """
    device = torch.device(options.device)
    is_main = distributed.current().is_main
    _prepare(objects, options, device)
    history, progress = History(), Progress()
    if options.checkpoint_dir is not None and is_main:
        check_writable(options.checkpoint_dir, need_bytes=checkpoint_space(objects, options.checkpoint_keep))
    if resume_from is not None:
        state = resume_from if isinstance(resume_from, dict) else load_checkpoint(resume_from)
        progress = restore_training_state(state, objects, history)
        log.info("resumed at epoch %d step %d", progress.epoch, progress.step_in_epoch)
    with StopRequest() as stop:
        while progress.epoch < options.epochs:
            batches = loaders(progress.epoch, progress.step_in_epoch)
            with onednn_fp32_precision(options.fp32_precision):  # the steps only: evaluation stays full fp32
                train_one_epoch(objects, batches, progress, options, history, writer, stop)
            _end_of_epoch(objects, progress, options, history, writer, evaluate)
    return history.to_dict()


def checkpoint_space(objects: TrainObjects, keep: int) -> int:
    """Bytes a run's checkpoints may need: last.pt, best.pt and ``keep`` numbered copies, each about three
    times the model and loss tensors (weights, optimizer moments; and the weight average when kept)."""
    average = [] if objects.average is None else [objects.average.module]
    return 3 * estimate_checkpoint_bytes(objects.model, objects.criterion, *average) * (keep + 2)


def _prepare(objects: TrainObjects, options: FitOptions, device: torch.device) -> None:
    objects.model.to(device)
    objects.criterion.to(device)
    if objects.average is not None:
        objects.average.module.to(device)
    if options.channels_last:
        objects.model.to(memory_format=torch.channels_last)
        if objects.average is not None:
            objects.average.module.to(memory_format=torch.channels_last)
    _ensure_scaler(objects, options, device.type)


def train_one_epoch(objects: TrainObjects, batches: Iterable[Sequence[Any]], progress: Progress,
                    options: FitOptions, history: History, writer: Any, stop: StopRequest) -> None:
    """Run the rest of ``progress.epoch``: steps ``progress.step_in_epoch`` .. ``steps_per_epoch - 1``."""
    device = torch.device(options.device)
    remaining = options.steps_per_epoch - progress.step_in_epoch
    is_main = distributed.current().is_main
    bar = tqdm(total=options.steps_per_epoch, initial=progress.step_in_epoch, desc=f"epoch {progress.epoch + 1}",
               disable=not (options.progress and is_main), leave=False, dynamic_ncols=True)
    objects.model.train()
    objects.criterion.train()
    tick = started = time.perf_counter()
    trained = 0  # images, over all ranks
    for batch in itertools.islice(batches, remaining):
        images, labels = _to_device(batch, device, options.channels_last)
        lr = objects.optimizer.param_groups[0]["lr"]  # the rate this step uses (the scheduler steps inside)
        values = train_step(objects, images, labels, options, progress.global_step + 1, _batch_ids(batch))
        _count_skipped(values, progress, options)
        progress.step_in_epoch += 1
        progress.global_step += 1
        now = time.perf_counter()
        values["images_per_s"] = len(labels) * distributed.current().world_size / max(now - tick, 1e-9)
        trained += len(labels) * distributed.current().world_size
        tick = now
        history.record_step(values, progress, options, writer, lr=lr)
        bar.update(1)
        bar.set_postfix(loss=f"{values['loss/total']:.4f}", **_bar_extras(values), refresh=False)
        if options.checkpoint_every_steps and progress.global_step % options.checkpoint_every_steps == 0:
            save_training_state(objects, progress, options, history)
        if distributed.any_rank([stop.requested is not None], device)[0]:
            history.add_training_time(time.perf_counter() - started, trained)  # the part done counts too
            _stop_on_signal(objects, progress, options, history, stop.requested or 15)
    bar.close()
    history.add_training_time(time.perf_counter() - started, trained)
    if progress.step_in_epoch < options.steps_per_epoch:
        raise ValueError(
            f"the loader of epoch {progress.epoch} ran out after batch {progress.step_in_epoch}, but "
            f"steps_per_epoch is {options.steps_per_epoch}: lower steps_per_epoch or give the sampler more batches"
        )


def train_step(objects: TrainObjects, images: torch.Tensor, labels: torch.Tensor, options: FitOptions,
               step: int, batch_ids: Sequence[int] = ()) -> dict[str, float]:
    """One optimisation step; returns ``{"loss/total", "loss/<term>", "<term>/<stat>", "embedding_norm",
    "_skipped"}``. Raises NonFiniteLossError (before any update) when the loss is NaN or infinite."""
    device_type = images.device.type
    dtype = AMP_MODES[options.amp]
    _ensure_scaler(objects, options, device_type)
    with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        output = objects.model(images)
        terms, stats = objects.criterion(output, labels)
    total = sum(terms.values())
    values = _step_values(total, terms, output.features)
    finite = all(math.isfinite(v) for v in values.values())
    if distributed.any_rank([not finite], images.device)[0]:
        raise NonFiniteLossError(_non_finite_message(step, values, labels, batch_ids, options.checkpoint_dir))
    values["_skipped"] = float(_backward_and_step(objects, total))
    if objects.average is not None:
        objects.average.after_step(distributed.unwrap(objects.model))
    values.update(stats)
    return values


def _ensure_scaler(objects: TrainObjects, options: FitOptions, device_type: str) -> None:
    """The fp16 gradient scaler (a no-op one for off/bf16), built once per TrainObjects."""
    if objects.scaler is None:
        objects.scaler = torch.amp.GradScaler(device_type, enabled=options.amp == "fp16")


def _step_values(total: torch.Tensor, terms: dict[str, torch.Tensor], features: torch.Tensor) -> dict[str, float]:
    """Loss terms and the embedding norm as floats, fetched from the device in one transfer."""
    names = ["loss/total", *[f"loss/{name}" for name in terms], "embedding_norm"]
    stacked = torch.stack([total.detach().float(), *[t.detach().float() for t in terms.values()],
                           features.detach().float().norm(dim=1).mean()])
    return dict(zip(names, stacked.tolist()))


def _backward_and_step(objects: TrainObjects, total: torch.Tensor) -> bool:
    """Backward, optimizer steps (through the fp16 scaler), scheduler step; True when fp16 skipped it."""
    scaler = objects.scaler
    objects.optimizer.zero_grad(set_to_none=True)
    if objects.loss_optimizer is not None:
        objects.loss_optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scale_before = scaler.get_scale()
    distributed.average_gradients(list(objects.criterion.parameters()))  # DDP averages only the model's
    scaler.step(objects.optimizer)
    if objects.loss_optimizer is not None:
        scaler.unscale_(objects.loss_optimizer)
        for group in objects.loss_optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(group.get("grad_scale", 1.0))
        scaler.step(objects.loss_optimizer)
    scaler.update()
    skipped = scaler.is_enabled() and scaler.get_scale() < scale_before
    with warnings.catch_warnings():  # a skipped fp16 step still counts as an iteration of the schedule
        if skipped:
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        objects.scheduler.step()
    return skipped


def _count_skipped(values: dict[str, float], progress: Progress, options: FitOptions) -> None:
    """fp16: an overflow skips the step and halves the scale; many in a row means training is broken."""
    skipped = values.pop("_skipped", 0.0)
    progress.skipped_in_a_row = progress.skipped_in_a_row + 1 if skipped else 0
    if progress.skipped_in_a_row >= options.max_skipped_steps:
        raise SkippedStepsError(
            f"fp16 mixed precision skipped {progress.skipped_in_a_row} optimizer steps in a row (gradients "
            f"overflowed at every loss scale) up to step {progress.global_step + 1}; try amp=bf16 or amp=off, "
            f"or a lower learning rate"
        )


def _non_finite_message(step: int, values: dict[str, float], labels: torch.Tensor, ids: Sequence[int],
                        checkpoint_dir: Path | None) -> str:
    terms = ", ".join(f"{k.removeprefix('loss/')}={v}" for k, v in values.items() if k.startswith("loss/"))
    last = None if checkpoint_dir is None else Path(checkpoint_dir) / "last.pt"
    kept = f"the last good checkpoint, {last}, is kept" if last is not None and last.is_file() else \
        "no checkpoint was written yet"
    return (
        f"non-finite loss at step {step}: {terms}; batch labels {labels.tolist()}, dataset indices "
        f"{list(ids)}. Training stopped before this step's update; {kept}."
    )


def _to_device(batch: Sequence[Any], device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    images = batch[0].to(device, non_blocking=True, memory_format=fmt)
    return images, torch.as_tensor(batch[1]).to(device, non_blocking=True)


def _batch_ids(batch: Sequence[Any]) -> list[int]:
    return torch.as_tensor(batch[3]).tolist() if len(batch) > 3 else []


def _bar_extras(values: dict[str, float]) -> dict[str, str]:
    extras = {"img/s": f"{values['images_per_s']:.0f}"}
    for key, value in values.items():
        if key.endswith("/valid_triplets"):
            extras["valid"] = f"{value:.0f}"
    return extras


def _end_of_epoch(objects: TrainObjects, progress: Progress, options: FitOptions, history: "History",
                  writer: Any, evaluate: Evaluate | None) -> None:
    """Evaluate when due (rank 0), advance to the next epoch, write last.pt / epoch_XXXX.pt / best.pt."""
    done = progress.epoch + 1
    if objects.average is not None:
        objects.average.after_epoch(distributed.unwrap(objects.model), done)  # train.average_epochs' snapshot
    due = evaluate is not None and (done == options.epochs or (options.eval_every and done % options.eval_every == 0))
    improved = False
    if due and distributed.current().is_main:
        objects.model.eval()
        metrics = evaluate(done)  # ranks with objects.inference_model() (the caller built it so)
        objects.model.train()
        history.record_eval(done, progress.global_step, metrics, writer)
        progress.metrics = metrics
        first = next(iter(metrics.values()), {})
        if "mAP" in first and first["mAP"] > progress.best_map:
            progress.best_map, improved = float(first["mAP"]), True
    if due:
        distributed.barrier()
    progress.epoch, progress.step_in_epoch = done, 0
    save_training_state(objects, progress, options, history)
    if options.checkpoint_keep > 0:
        save_training_state(objects, progress, options, history, f"epoch_{done:04d}.pt")
    if improved:
        save_training_state(objects, progress, options, history, "best.pt")


def _stop_on_signal(objects: TrainObjects, progress: Progress, options: FitOptions, history: "History",
                    signum: int) -> None:
    path = save_training_state(objects, progress, options, history)
    message = resume_message(signum, None if path is None else str(path))
    log.info(message)
    print(message, file=sys.stderr, flush=True)  # shown whatever the logging setup: it says how to resume
    raise TrainingInterrupted(message, signum)


def save_training_state(objects: TrainObjects, progress: Progress, options: FitOptions, history: "History",
                        name: str = "last.pt") -> Path | None:
    """Write the resume state to ``checkpoint_dir / name`` (rank 0 only; returns the path, else None)."""
    if options.checkpoint_dir is None or not distributed.current().is_main:
        return None
    path = Path(options.checkpoint_dir) / name
    state = training_state(objects, progress, history, options.run_config)
    if options.checkpoint_extras is not None:
        state.update(options.checkpoint_extras())
    save_checkpoint(state, path, keep=options.checkpoint_keep)
    return path


class History:
    """Per-step scalars at a modest rate, evaluations and warnings (structure: see the module docstring)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {"steps": [], "epochs": [], "lr": [], "loss": {}, "stats": {}, "eval": [],
                                     "warnings": [], "train_seconds": 0.0, "train_images": 0}
        self.window: dict[str, float] = {}  # sums since the last point
        self.count = 0
        self.collapsed_steps = 0

    def state_dict(self) -> dict[str, Any]:
        return {"data": self.data, "window": dict(self.window), "count": self.count,
                "collapsed_steps": self.collapsed_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.data, self.window = state["data"], dict(state["window"])
            self.count, self.collapsed_steps = state["count"], state["collapsed_steps"]

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def add_training_time(self, seconds: float, images: int) -> None:
        """Count an epoch's (or a resumed part's) training wall time and images; evaluation is not in it."""
        self.data["train_seconds"] = self.data.get("train_seconds", 0.0) + seconds
        self.data["train_images"] = self.data.get("train_images", 0) + images

    def record_step(self, values: dict[str, float], progress: Progress, options: FitOptions, writer: Any,
                    lr: float) -> None:
        for key, value in values.items():
            self.window[key] = self.window.get(key, 0.0) + value
        self.count += 1
        self.data["train_steps"] = progress.global_step
        self._watch_collapse(values, progress, options, writer)
        if progress.global_step % options.log_every == 0:
            self._flush(progress, options, writer, lr)

    def _flush(self, progress: Progress, options: FitOptions, writer: Any, lr: float) -> None:
        keys = sorted(self.window)
        means = distributed.mean_over_ranks([self.window[k] / self.count for k in keys], options.device)
        self.window, self.count = {}, 0
        n = len(self.data["steps"])
        self.data["steps"].append(progress.global_step)
        self.data["epochs"].append(progress.epoch + progress.step_in_epoch / options.steps_per_epoch)
        self.data["lr"].append(lr)
        for key, mean in zip(keys, means):
            group, name = ("loss", key[5:]) if key.startswith("loss/") else ("stats", key)
            self.data[group].setdefault(name, [math.nan] * n).append(mean)
        for group in ("loss", "stats"):
            for series in self.data[group].values():
                series.extend([math.nan] * (n + 1 - len(series)))
        if writer is not None and distributed.current().is_main:
            writer.add_scalar("train/lr", lr, progress.global_step)
            for key, mean in zip(keys, means):
                writer.add_scalar(f"train/{key}", mean, progress.global_step)

    def _watch_collapse(self, values: dict[str, float], progress: Progress, options: FitOptions, writer: Any) -> None:
        """Warn when every triplet term's mean positive and negative distances stay ~0 for a window of steps."""
        pos = [v for k, v in values.items() if k.endswith("/mean_pos_dist")]
        neg = [v for k, v in values.items() if k.endswith("/mean_neg_dist")]
        collapsed = bool(pos) and max(pos + neg) < options.collapse_eps
        self.collapsed_steps = self.collapsed_steps + 1 if collapsed else 0
        if self.collapsed_steps < options.collapse_window:
            return
        self.collapsed_steps = 0
        message = (f"embeddings collapsed: mean positive and negative triplet distances below "
                   f"{options.collapse_eps:g} for {options.collapse_window} steps up to step "
                   f"{progress.global_step}; the triplet loss sits at its margin and learns nothing")
        log.warning(message)
        self.data["warnings"].append({"step": progress.global_step, "message": message})
        if writer is not None and distributed.current().is_main:
            writer.add_scalar("train/collapse_warning", 1.0, progress.global_step)

    def record_eval(self, epoch: int, step: int, metrics: dict[str, dict[str, float]], writer: Any) -> None:
        for dataset, values in metrics.items():
            self.data["eval"].append({"epoch": epoch, "dataset": dataset, **{k: float(v) for k, v in values.items()}})
            if writer is not None:
                for name, value in values.items():
                    writer.add_scalar(f"eval/{dataset}/{name}", float(value), step)
            log.info("epoch %d %s: %s", epoch, dataset, ", ".join(f"{k}={float(v):.4f}" for k, v in values.items()))
