"""Value checks on a typed config: what cannot work is refused before any training starts, every problem at
once. Each ``check_*`` function stops at its first problem (later checks in it may rely on earlier ones);
``check_values`` runs them all (``@collected``) and raises one ConfigError listing every problem found."""

from __future__ import annotations

import contextvars
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from trytry_reid.catalog import did_you_mean
from trytry_reid.errors import ConfigError

if TYPE_CHECKING:
    from trytry_reid.jobs.config import Config

DATASETS_WITHOUT_ROOT = {"digits"}


def choices() -> dict[str, Iterable[str]]:
    """Config key -> its valid names, read from the catalogs of the code that uses the key."""
    from trytry_reid.data.datasets import DATASETS
    from trytry_reid.data.sampler import BALANCES
    from trytry_reid.data.validate import POLICIES
    from trytry_reid.engine.distributed import DEVICES
    from trytry_reid.engine.optimizers import OPTIMIZERS
    from trytry_reid.engine.precision import FP32_PRECISIONS
    from trytry_reid.engine.schedule import SCHEDULES
    from trytry_reid.engine.train import AMP_MODES
    from trytry_reid.evaluation.distance import DISTANCES
    from trytry_reid.losses.selectors import SELECTORS
    from trytry_reid.models.backbones import BACKBONES
    from trytry_reid.models.pooling import POOLINGS
    from trytry_reid.models.reid_model import RETRIEVAL_FEATURES

    return {"data.name": DATASETS, "data.on_bad_image": POLICIES, "data.balance": BALANCES,
            "model.backbone": BACKBONES, "model.pooling": POOLINGS, "model.retrieval_feature": RETRIEVAL_FEATURES,
            "loss.triplet.selector": SELECTORS, "loss.triplet.metric": DISTANCES,
            "train.optimizer": OPTIMIZERS, "train.schedule": SCHEDULES, "train.device": DEVICES,
            "train.amp": AMP_MODES, "train.fp32_precision": FP32_PRECISIONS,
            "test.metric": DISTANCES}


def fail(key: str, value: Any, expected: str) -> None:
    raise ConfigError(f"config key '{key}' = {value!r}: expected {expected}")


_PROBLEMS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("config_problems", default=None)


def collected(check: Callable[..., None]) -> Callable[..., None]:
    """Inside ``check_values``, a check's ConfigError is recorded and the next check runs; outside it, raised."""
    @functools.wraps(check)
    def run(*args: Any) -> None:
        problems = _PROBLEMS.get()
        try:
            check(*args)
        except ConfigError as error:
            if problems is None:
                raise
            problems.append(str(error))
    return run


def problems_error(problems: list[str]) -> ConfigError:
    """One problem: its own message; several: a count and one line each."""
    if len(problems) == 1:
        return ConfigError(problems[0])
    error = ConfigError(f"{len(problems)} config problems:\n  " + "\n  ".join(problems))
    error.problems = list(problems)
    return error


def get(config: "Config", key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


@collected
def check_choice(key: str, value: str, valid: Iterable[str]) -> None:
    valid = sorted(valid)
    if value not in valid:
        fail(key, value, f"one of {', '.join(valid)}.{did_you_mean(value, valid)}")


def check_values(config: "Config") -> None:
    """Every check; one ConfigError naming every problem found."""
    problems: list[str] = []
    token = _PROBLEMS.set(problems)
    try:
        for key, valid in choices().items():
            if key != "model.backbone" or not is_timm_name(config.model.backbone):   # timm names: check_backbone
                check_choice(key, get(config, key), valid)
        check_test_dataset_names(config)
        check_root("data.root", config.data.name, config.data.root)
        check_data(config)
        check_model(config)
        check_backbone(config)
        check_pretrained(config)
        check_losses(config)
        check_train(config)
        check_average(config)
        check_test(config)
    finally:
        _PROBLEMS.reset(token)
    if problems:
        raise problems_error(problems)


@collected
def check_test_dataset_names(config: "Config") -> None:
    from trytry_reid.data.datasets import DATASETS

    for i, item in enumerate(config.test.datasets):
        check_choice(f"test.datasets[{i}].name", item.name, DATASETS)


@collected
def check_root(key: str, name: str, root: str | None) -> None:
    if root is None:
        if name not in DATASETS_WITHOUT_ROOT:
            fail(key, root, f"the folder of dataset '{name}' (set {key}=/path/to/{name})")
        return
    if not Path(root).expanduser().is_dir():
        fail(key, root, f"an existing folder holding dataset '{name}' (see docs/GETTING_STARTED.md, 'Datasets')")


@collected
def check_data(config: "Config") -> None:
    from trytry_reid.data.transforms import INTERPOLATIONS

    data = config.data
    if data.interpolation is not None:       # None: the pretrained checkpoint's, else bilinear
        check_choice("data.interpolation", data.interpolation, INTERPOLATIONS)
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
    check_validation(config)
    for key in ("flip_p", "random_erasing", "grayscale", "augmix"):
        if not 0.0 <= get(config, f"data.{key}") <= 1.0:
            fail(f"data.{key}", get(config, f"data.{key}"), "a probability in [0, 1]")
    for key in ("mean", "std"):
        value = get(config, f"data.{key}")
        if value is not None and len(value) != 3:
            fail(f"data.{key}", value, "three numbers (R, G, B), or null for the backbone's own")
    if data.std is not None and min(data.std) <= 0:
        fail("data.std", data.std, "positive numbers")


@collected
def check_validation(config: "Config") -> None:
    """A validation run (data.validation_ids) scores held-out data only: no test set but the validation halves."""
    from trytry_reid.data.datasets import VALIDATION_DATASETS

    data = config.data
    test_sets = [item.name for item in config.test.datasets if item.name not in VALIDATION_DATASETS]
    if data.validation_ids > 0 and test_sets:
        fail("data.validation_ids", data.validation_ids, "0 while test.datasets is set: a run that chooses a recipe "
             f"on held-out training ids must not score the test sets ({', '.join(test_sets)}); only "
             f"{', '.join(VALIDATION_DATASETS)} may be scored alongside it")
    cameras = data.validation_cameras
    if cameras and (data.validation_ids == 0 or len(set(cameras)) < 2 or min(cameras) < 1
                    or len(set(cameras)) != len(cameras)):
        fail("data.validation_cameras", cameras, "two or more distinct camera numbers (c1 = 1), with "
             "data.validation_ids > 0 (the held-out ids are ranked within those cameras)")


@collected
def check_model(config: "Config") -> None:
    model = config.model
    if model.last_stride not in (1, 2):
        fail("model.last_stride", model.last_stride, "1 or 2")
    if model.embedding_dim < 0:
        fail("model.embedding_dim", model.embedding_dim, "0 (no embedding layer) or a positive size")
    if model.embedding_bn_relu and model.embedding_dim == 0:
        fail("model.embedding_bn_relu", model.embedding_bn_relu, "false unless model.embedding_dim > 0 (it "
             "normalises the embedding layer's output)")
    if not model.classifier_std > 0:
        fail("model.classifier_std", model.classifier_std, "a positive std for the classifier's normal init")


def is_timm_name(backbone: str) -> bool:
    from trytry_reid.models.backbone_entry import TIMM_PREFIX

    return backbone.startswith(TIMM_PREFIX)


@collected
def check_backbone(config: "Config") -> None:
    """A timm/<name> backbone: timm installed, a known CNN, runs at the config's input size and last stride."""
    from trytry_reid.errors import ReidError
    from trytry_reid.models.backbone_entry import TIMM_PREFIX

    name = config.model.backbone
    if is_timm_name(name):
        from trytry_reid.models.timm_trunk import check_timm_trunk

        try:
            check_timm_trunk(name[len(TIMM_PREFIX):], config.model.last_stride, config.data.height,
                             config.data.width)
        except ReidError as error:
            raise ConfigError(f"config key 'model.backbone' = {name!r}: {error}") from error


@collected
def check_pretrained(config: "Config") -> None:
    """ImageNet weights the backbone has; an existing weights file; a checkpoint of the same backbone."""
    from trytry_reid.errors import ReidError
    from trytry_reid.models.backbones import BACKBONES, backbone_entry, same_architecture
    from trytry_reid.models.weights_file import reid_checkpoint_config

    model = config.model
    try:
        entry = backbone_entry(model.backbone)
    except ReidError:
        return          # an unknown backbone: its own check reports it
    if model.pretrained == "imagenet" and not entry.has_imagenet_weights:
        with_weights = ", ".join(sorted(name for name, e in BACKBONES.items() if e.has_imagenet_weights))
        fail("model.pretrained", model.pretrained, f"'none' or a weights file: backbone '{model.backbone}' "
             f"has no ImageNet weights (those with weights: {with_weights}, timm/<name>)")
    if model.pretrained in ("imagenet", "none"):
        return
    path = Path(model.pretrained).expanduser()
    if not path.is_file():
        fail("model.pretrained", model.pretrained, "'imagenet', 'none' or the path of an existing weights file "
             "(a state dict or a trytry-reid checkpoint)")
    trained = ((reid_checkpoint_config(path) or {}).get("model") or {}).get("backbone", model.backbone)
    if not same_architecture(str(trained), model.backbone):
        fail("model.pretrained", model.pretrained, f"a checkpoint of backbone '{model.backbone}' (model.backbone), "
             f"but it was trained with '{trained}': set model.backbone={trained} to fine-tune it")


@collected
def check_losses(config: "Config") -> None:
    from trytry_reid.losses.criterion import LOSSES

    loss = config.loss
    weights = {name: get(loss, f"{name}.weight") for name in LOSSES}
    for name, weight in weights.items():
        if weight < 0:
            fail(f"loss.{name}.weight", weight, "0 (term off) or a positive weight")
    standalone = [name for name in LOSSES if LOSSES[name].standalone]
    if not any(weights[name] > 0 for name in standalone):
        fail(f"loss.{standalone[0]}.weight", weights[standalone[0]],
             f"a positive weight for at least one of {', '.join(standalone)}")
    if not 0.0 <= loss.cross_entropy.label_smoothing < 1.0:
        fail("loss.cross_entropy.label_smoothing", loss.cross_entropy.label_smoothing, "a value in [0, 1)")
    if weights["triplet"] > 0 and config.data.batch_k < 2:
        fail("data.batch_k", config.data.batch_k, "at least 2 images per identity while loss.triplet.weight > 0 "
             "(a triplet needs a positive from the same identity)")
    if loss.triplet.margin < 0:
        fail("loss.triplet.margin", loss.triplet.margin, "0 or more")
    if loss.center.lr <= 0:
        fail("loss.center.lr", loss.center.lr, "a positive learning rate")
    if loss.cosface.scale <= 0 or not 0 <= loss.cosface.margin < 1:
        bad = "scale" if loss.cosface.scale <= 0 else "margin"
        fail(f"loss.cosface.{bad}", getattr(loss.cosface, bad), "scale > 0 and a margin in [0, 1)")


@collected
def check_train(config: "Config") -> None:
    train = config.train
    positive = {"epochs": train.epochs, "lr": train.lr, "head_lr_factor": train.head_lr_factor,
                "eval_every": train.eval_every, "log_every": train.log_every}
    for key, value in positive.items():
        if value <= 0:
            fail(f"train.{key}", value, "a positive number")
    if min(train.weight_decay, train.warmup_epochs, train.checkpoint_every_steps, train.checkpoint_keep) < 0:
        bad = next(k for k in ("weight_decay", "warmup_epochs", "checkpoint_every_steps", "checkpoint_keep")
                   if getattr(train, k) < 0)
        fail(f"train.{bad}", getattr(train, bad), "0 or more")
    if not 0.0 < train.warmup_factor <= 1.0:
        fail("train.warmup_factor", train.warmup_factor, "a factor in (0, 1]")
    if train.steps_per_epoch is not None and train.steps_per_epoch < 1:
        fail("train.steps_per_epoch", train.steps_per_epoch, "a positive number of steps, or null")
    if len(train.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in train.adam_betas):
        fail("train.adam_betas", train.adam_betas, "two coefficients [beta1, beta2], each in [0, 1)")
    if list(train.milestones) != sorted(train.milestones):
        fail("train.milestones", train.milestones, "increasing epoch numbers")


@collected
def check_average(config: "Config") -> None:
    train = config.train
    if not 0.0 <= train.ema_decay < 1.0:
        fail("train.ema_decay", train.ema_decay, "0 (off) or a decay in (0, 1), like 0.998")
    if not 0 <= train.average_epochs <= train.epochs:
        fail("train.average_epochs", train.average_epochs, f"0 (off) to train.epochs ({train.epochs}); "
             "lower it too when shortening a run")
    if train.average_epochs and train.ema_decay:
        fail("train.average_epochs", train.average_epochs, "0 when train.ema_decay is set (one weight average)")


def check_test(config: "Config") -> None:
    for i, item in enumerate(config.test.datasets):
        check_root(f"test.datasets[{i}].root", item.name, item.root)
    check_test_values(config)


@collected
def check_test_values(config: "Config") -> None:
    for key in ("batch_size", "max_rank", "ranking_top_k", "tsne_max_ids"):
        if get(config, f"test.{key}") < 1:
            fail(f"test.{key}", get(config, f"test.{key}"), "a positive integer")
    for key in ("ranking_queries", "aqe"):
        if get(config, f"test.{key}") < 0:
            fail(f"test.{key}", get(config, f"test.{key}"), "0 (off) or more")
    if not 0.0 < config.test.calibration_fpr < 1.0:
        fail("test.calibration_fpr", config.test.calibration_fpr, "a false-positive rate in (0, 1), e.g. 1e-3")
