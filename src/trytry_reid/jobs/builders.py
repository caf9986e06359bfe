"""Turn the validated config into objects. Only this module and the jobs that call it (train.py, evaluate.py,
calibrate.py, commands.py) read a Config; library code takes plain arguments."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch

from trytry_reid.data.batch_augment import BatchPhotometric
from trytry_reid.data.datasets import DatasetError, Record, Splits, build_dataset
from trytry_reid.data.holdout import camera_shift, carve_validation
from trytry_reid.data.images import ImageDataset, relabel
from trytry_reid.data.sampler import PKSampler, pass_batches
from trytry_reid.data.transforms import build_test_transform, build_train_transform
from trytry_reid.data.validate import apply_bad_image_policy, find_bad_images
from trytry_reid.engine import optimizers
from trytry_reid.engine.averaging import UniformAverage, WeightAverage, short_run_warning
from trytry_reid.engine.epoch_loaders import EpochLoaders
from trytry_reid.engine.schedule import build_scheduler
from trytry_reid.errors import ConfigError
from trytry_reid.jobs.config import Config
from trytry_reid.losses import criterion as losses
from trytry_reid.losses.criterion import LOSSES, Criterion
from trytry_reid.models.reid_model import ReidModel, build_reid_model

log = logging.getLogger("trytry_reid")


@dataclass
class TrainData:
    splits: Splits
    records: list[Record]  # the training records kept after the bad-image policy
    labels: list[int]  # 0..num_classes-1 per record
    sampler: PKSampler
    loaders: EpochLoaders  # loaders(epoch, start_batch) -> that epoch's DataLoader (exactly resumable)
    num_classes: int
    steps_per_epoch: int


def build_train_splits(config: Config) -> Splits:
    """The training dataset; with ``data.validation_ids`` its query/gallery are the held-out training ids."""
    splits = build_dataset(config.data.name, config.data.root)
    if config.data.validation_cameras:
        splits = camera_shift(splits, config.data.validation_ids, config.data.validation_cameras)[0]
    elif config.data.validation_ids > 0:
        splits = carve_validation(splits, config.data.validation_ids)
        log.info("validation split: training on %d ids, ranking %d held-out ids (%d queries, %d gallery)",
                 len({r.pid for r in splits.train}), len({r.pid for r in splits.query}), len(splits.query),
                 len(splits.gallery))
    return splits


def test_transform(config: Config):
    data = config.data
    return build_test_transform(data.height, data.width, mean=tuple(data.mean), std=tuple(data.std),
                                interpolation=data.interpolation)


def train_transform(config: Config):
    """Per image (in the loader workers): resize, flip, pad + crop, as uint8."""
    return build_train_transform(config.data.height, config.data.width, flip_p=config.data.flip_p,
                                 pad=config.data.pad, interpolation=config.data.interpolation)


def train_batch_transform(config: Config) -> BatchPhotometric:
    """Per batch (in the loader workers): AugMix-like mixing, colour jitter, grayscale, normalisation, erasing."""
    data = config.data
    return BatchPhotometric(color_jitter=data.color_jitter, random_erasing_p=data.random_erasing,
                            grayscale_p=data.grayscale, augmix_p=data.augmix, mean=tuple(data.mean),
                            std=tuple(data.std))


def checked_train_records(config: Config, splits: Splits) -> list[Record]:
    """The training records after a cheap header check of every image and the bad-image policy."""
    if not splits.train:
        raise DatasetError(f"dataset '{splits.name}' has no training split; it can only be a test set "
                         f"(put it under test.datasets)")
    bad = find_bad_images(splits.train, full=False)
    return apply_bad_image_policy(splits.train, bad, config.data.on_bad_image, config.data.max_bad_images)


def steps_per_epoch(config: Config, labels: list[int]) -> int:
    """About one pass over the training images per epoch (at least one batch per P identities), capped. With
    ``data.balance=image`` a pass is the sampler's: every identity's images in chunks of K, P chunks a batch."""
    d = config.data
    counts = np.unique(labels, return_counts=True)[1]
    one_pass = pass_batches(counts, d.batch_p, d.batch_k, d.balance)
    steps = one_pass if d.balance == "image" else max(one_pass, len(labels) // (d.batch_p * d.batch_k))
    cap = config.train.steps_per_epoch
    return min(steps, cap) if cap else steps


def build_train_data(config: Config, splits: Splits, rank: int = 0, world_size: int = 1) -> TrainData:
    records = checked_train_records(config, splits)
    labels, mapping = relabel(records)
    if config.data.batch_p > len(mapping):
        raise ConfigError(f"config key 'data.batch_p' = {config.data.batch_p}: the training set of "
                          f"'{splits.name}' has only {len(mapping)} identities; lower data.batch_p")
    steps = steps_per_epoch(config, labels)
    sampler = PKSampler(labels, config.data.batch_p, config.data.batch_k, seed=config.train.seed,
                        num_batches=steps, rank=rank, world_size=world_size, balance=config.data.balance)
    dataset = ImageDataset(records, train_transform(config), labels)
    loaders = EpochLoaders(dataset, sampler, seed=config.train.seed, workers=config.data.workers,
                           pin_memory=torch.cuda.is_available(), batch_transform=train_batch_transform(config))
    return TrainData(splits, records, labels, sampler, loaders, len(mapping), steps)


def build_model(config: Config, num_classes: int, *, load_pretrained: bool = True) -> ReidModel:
    """The config's model; ``load_pretrained=False`` skips ``model.pretrained`` (a resumed run's weights come
    from its checkpoint, so the starting weights are neither downloaded nor read)."""
    model = dataclasses.asdict(config.model)
    if not load_pretrained:
        model["pretrained"] = "none"
    return build_reid_model(num_classes=num_classes, **model)


def active_losses(config: Config) -> dict[str, float]:
    """{loss name: weight} of the terms the config turns on (weight > 0), in LOSSES order."""
    weights = {name: getattr(config.loss, name).weight for name in LOSSES}
    return {name: weight for name, weight in weights.items() if weight > 0}


def needs_classifier(config: Config) -> bool:
    """Whether a loss the config turns on reads the classifier's logits."""
    return any(LOSSES[name].field == "logits" for name in active_losses(config))


def build_criterion(config: Config, num_classes: int, feature_dim: int) -> Criterion:
    """The weighted loss terms of the config's ``loss`` sections (a weight of 0 leaves the term out)."""
    sections = {name: dataclasses.asdict(getattr(config.loss, name)) for name in LOSSES}
    return losses.build_criterion(sections, num_classes, feature_dim)


def parameter_groups(model: ReidModel, criterion: Criterion, lr: float, head_lr_factor: float) -> list[dict]:
    """The trunk at ``lr``; the new layers after it (pooling, embedding, BNNeck, classifier) and the loss
    parameters trained with the model at ``lr * head_lr_factor``. Frozen parameters (BNNeck's bias) are left
    out, and so are the parameters of loss terms with an optimizer of their own (the centers)."""
    trunk = {id(p) for p in model.trunk.parameters()}
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in trunk]
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) in trunk], "lr": lr},
              {"params": head + criterion.shared_parameters(), "lr": lr * head_lr_factor}]
    return [g for g in groups if g["params"]]


def build_optimizer(config: Config, model: ReidModel, criterion: Criterion) -> torch.optim.Optimizer:
    t = config.train
    groups = parameter_groups(model, criterion, t.lr, t.head_lr_factor)
    return optimizers.build_optimizer(t.optimizer, groups, lr=t.lr, weight_decay=t.weight_decay,
                                      momentum=t.momentum, betas=t.adam_betas)


def build_loss_optimizer(criterion: Criterion) -> torch.optim.Optimizer | None:
    """The SGD of the loss terms that train at their own rate (BoT's centers), or None when there are none."""
    groups = criterion.own_optimizer_groups()
    return torch.optim.SGD(groups) if groups else None


def build_lr_scheduler(config: Config, optimizer: torch.optim.Optimizer, steps: int):
    """Warmup then multistep/cosine, stepped per iteration; the config's epochs become iterations here."""
    t = config.train
    return build_scheduler(optimizer, warmup_steps=t.warmup_epochs * steps, warmup_factor=t.warmup_factor,
                           schedule=t.schedule, milestones=[m * steps for m in t.milestones], gamma=t.gamma,
                           total_steps=t.epochs * steps)


def retrieval_options(config: Config, device: str) -> dict:
    """evaluate_model's keyword arguments from the config's ``test`` section (one mapping for every job)."""
    t = config.test
    return dict(batch_size=t.batch_size, workers=config.data.workers, device=device, flip=t.flip,
                metric=t.metric, use_rerank=t.rerank, aqe=t.aqe, max_rank=t.max_rank)


def build_test_sets(config: Config, train_splits: Splits | None) -> list[tuple[str, Splits]]:
    """(label, splits) for each configured test set; none configured = the training dataset itself. A
    validation run (data.validation_ids) ranks its held-out training ids first (and, with
    data.validation_cameras, those ids within the held-out cameras), then the validation halves it names."""
    configured = [(item.label or item.name, build_dataset(item.name, item.root)) for item in config.test.datasets]
    if config.data.validation_ids > 0 or not configured:
        splits = train_splits or build_train_splits(config)
        return [(splits.name, splits), *camera_shift_set(config), *configured]
    return configured


def camera_shift_set(config: Config) -> list[tuple[str, Splits]]:
    """[(label, the held-out ids within data.validation_cameras)], or [] without validation cameras."""
    d = config.data
    if not d.validation_cameras:
        return []
    shifted = camera_shift(build_dataset(d.name, d.root), d.validation_ids, d.validation_cameras)[1]
    return [(shifted.name, shifted)]


def build_weight_average(config: Config, model: ReidModel,
                         steps_per_epoch: int) -> WeightAverage | UniformAverage | None:
    """train.ema_decay's exponential average (with the log's warning when the run is too short for its decay),
    train.average_epochs' uniform one, or None."""
    t = config.train
    if t.average_epochs:
        return UniformAverage(model, t.average_epochs, t.epochs)
    if not t.ema_decay:
        return None
    warning = short_run_warning(t.ema_decay, t.epochs * steps_per_epoch)
    if warning:
        log.warning(warning)
    return WeightAverage(model, t.ema_decay)
