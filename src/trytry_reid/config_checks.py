"""Value checks on a typed config: what cannot work is refused before any training starts."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from .config import Config

DATASETS_WITHOUT_ROOT = {"digits"}
CHOICES = {
    "data.on_bad_image": ("error", "skip"),
    "model.pooling": ("avg", "gem"),
    "loss.triplet.metric": ("euclidean", "cosine"),
    "train.optimizer": ("sgd", "adam", "adamw"),
    "train.schedule": ("multistep", "cosine"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.amp": ("off", "bf16", "fp16"),
    "test.metric": ("cosine", "euclidean"),
}


def fail(key: str, value: Any, expected: str) -> None:
    from .config import ConfigError

    raise ConfigError(f"config key '{key}' = {value!r}: expected {expected}")


def get(config: "Config", key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def check_choice(key: str, value: str, valid: Iterable[str]) -> None:
    valid = sorted(valid)
    if value not in valid:
        close = difflib.get_close_matches(str(value), valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        fail(key, value, f"one of {', '.join(valid)}{hint}")


def check_values(config: "Config") -> None:
    for key, valid in CHOICES.items():
        check_choice(key, get(config, key), valid)
    check_catalog_names(config)
    check_data(config)
    check_model(config)
    check_losses(config)
    check_train(config)
    check_test(config)


def check_catalog_names(config: "Config") -> None:
    from .data.datasets import DATASETS
    from .losses.selectors import SELECTORS
    from .models.backbones import BACKBONES

    check_choice("data.name", config.data.name, DATASETS)
    check_choice("model.backbone", config.model.backbone, BACKBONES)
    check_choice("loss.triplet.selector", config.loss.triplet.selector, SELECTORS)
    for i, item in enumerate(config.test.datasets):
        check_choice(f"test.datasets[{i}].name", item.name, DATASETS)


def check_root(key: str, name: str, root: str | None) -> None:
    if root is None:
        if name not in DATASETS_WITHOUT_ROOT:
            fail(key, root, f"the folder of dataset '{name}' (set {key}=/path/to/{name})")
        return
    if not Path(root).expanduser().is_dir():
        fail(key, root, f"an existing folder holding dataset '{name}' (see README, 'Datasets')")


def check_data(config: "Config") -> None:
    data = config.data
    check_root("data.root", data.name, data.root)
    for key in ("height", "width", "batch_p", "batch_k"):
        if get(config, f"data.{key}") < 1:
            fail(f"data.{key}", get(config, f"data.{key}"), "a positive integer")
    if data.batch_p < 2:
        fail("data.batch_p", data.batch_p, "at least 2 identities per batch (negatives are needed)")
    if data.batch_size is not None and data.batch_size != data.batch_p * data.batch_k:
        fail("data.batch_size", data.batch_size, f"data.batch_p * data.batch_k = {data.batch_p * data.batch_k}")
    if data.workers < 0:
        fail("data.workers", data.workers, "0 or more")
    if data.validation_ids < 0:
        fail("data.validation_ids", data.validation_ids, "0 (no validation split) or a number of identities")
    for key in ("flip_p", "random_erasing"):
        if not 0.0 <= get(config, f"data.{key}") <= 1.0:
            fail(f"data.{key}", get(config, f"data.{key}"), "a probability in [0, 1]")
    for key in ("mean", "std"):
        if len(get(config, f"data.{key}")) != 3:
            fail(f"data.{key}", get(config, f"data.{key}"), "three numbers (R, G, B)")
    if min(data.std) <= 0:
        fail("data.std", data.std, "positive numbers")


def check_model(config: "Config") -> None:
    model = config.model
    if model.last_stride not in (1, 2):
        fail("model.last_stride", model.last_stride, "1 or 2")
    if model.embedding_dim < 0:
        fail("model.embedding_dim", model.embedding_dim, "0 (no embedding layer) or a positive size")
    special = ("imagenet", "none")
    if model.pretrained not in special and not Path(model.pretrained).expanduser().is_file():
        fail("model.pretrained", model.pretrained, "'imagenet', 'none' or the path of an existing state dict file")


def check_losses(config: "Config") -> None:
    loss = config.loss
    weights = {name: get(loss, f"{name}.weight") for name in ("cross_entropy", "triplet", "center")}
    for name, weight in weights.items():
        if weight < 0:
            fail(f"loss.{name}.weight", weight, "0 (term off) or a positive weight")
    if weights["cross_entropy"] == 0 and weights["triplet"] == 0:
        fail("loss.cross_entropy.weight", 0.0, "a positive weight for at least one of cross_entropy, triplet")
    if not 0.0 <= loss.cross_entropy.label_smoothing < 1.0:
        fail("loss.cross_entropy.label_smoothing", loss.cross_entropy.label_smoothing, "a value in [0, 1)")
    if loss.triplet.margin < 0:
        fail("loss.triplet.margin", loss.triplet.margin, "0 or more")
    if loss.center.lr <= 0:
        fail("loss.center.lr", loss.center.lr, "a positive learning rate")


def check_train(config: "Config") -> None:
    train = config.train
    positive = {"epochs": train.epochs, "lr": train.lr, "head_lr_factor": train.head_lr_factor,
                "eval_every": train.eval_every,
                "log_every": train.log_every, "checkpoint_keep": train.checkpoint_keep}
    for key, value in positive.items():
        if value <= 0:
            fail(f"train.{key}", value, "a positive number")
    if train.weight_decay < 0 or train.warmup_epochs < 0 or train.checkpoint_every_steps < 0:
        bad = next(k for k in ("weight_decay", "warmup_epochs", "checkpoint_every_steps")
                   if getattr(train, k) < 0)
        fail(f"train.{bad}", getattr(train, bad), "0 or more")
    if not 0.0 < train.warmup_factor <= 1.0:
        fail("train.warmup_factor", train.warmup_factor, "a factor in (0, 1]")
    if train.steps_per_epoch is not None and train.steps_per_epoch < 1:
        fail("train.steps_per_epoch", train.steps_per_epoch, "a positive number of steps, or null")
    if list(train.milestones) != sorted(train.milestones):
        fail("train.milestones", train.milestones, "increasing epoch numbers")


def check_test(config: "Config") -> None:
    for i, item in enumerate(config.test.datasets):
        check_root(f"test.datasets[{i}].root", item.name, item.root)
    for key in ("batch_size", "max_rank", "ranking_top_k", "tsne_max_ids"):
        if get(config, f"test.{key}") < 1:
            fail(f"test.{key}", get(config, f"test.{key}"), "a positive integer")
    if config.test.ranking_queries < 0:
        fail("test.ranking_queries", config.test.ranking_queries, "0 or more")
    if not 0.0 < config.test.calibration_fpr < 1.0:
        fail("test.calibration_fpr", config.test.calibration_fpr, "a false-positive rate in (0, 1), e.g. 1e-3")
