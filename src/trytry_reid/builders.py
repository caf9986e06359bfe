"""Turn the validated config into objects. The only module (with pipeline.py) that reads a Config."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from .config import Config
from .data.datasets import Record, Splits, build_dataset
from .data.holdout import carve_validation
from .data.images import ImageDataset, relabel
from .data.sampler import PKSampler
from .data.transforms import build_test_transform, build_train_transform
from .data.validate import apply_bad_image_policy, find_bad_images
from .engine.rng import EpochLoaders
from .engine.schedule import build_scheduler
from .losses.criterion import Criterion, LossTerm
from .losses.center import CenterLoss
from .losses.cross_entropy import CrossEntropyLoss
from .losses.triplet import TripletLoss
from .models.backbones import build_backbone
from .models.reid_model import ReidModel

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
    if config.data.validation_ids > 0:
        splits = carve_validation(splits, config.data.validation_ids)
        log.info("validation split: training on %d ids, ranking %d held-out ids (%d queries, %d gallery)",
                 len({r.pid for r in splits.train}), len({r.pid for r in splits.query}), len(splits.query),
                 len(splits.gallery))
    return splits


def test_transform(config: Config):
    data = config.data
    return build_test_transform(data.height, data.width, mean=tuple(data.mean), std=tuple(data.std))


def train_transform(config: Config):
    data = config.data
    return build_train_transform(data.height, data.width, flip_p=data.flip_p, pad=data.pad,
                                 random_erasing_p=data.random_erasing, color_jitter=data.color_jitter,
                                 mean=tuple(data.mean), std=tuple(data.std))


def checked_train_records(config: Config, splits: Splits) -> list[Record]:
    """The training records after a cheap header check of every image and the bad-image policy."""
    if not splits.train:
        raise ValueError(f"dataset '{splits.name}' has no training split; it can only be a test set "
                         f"(put it under test.datasets)")
    bad = find_bad_images(splits.train, full=False)
    return apply_bad_image_policy(splits.train, bad, config.data.on_bad_image, config.data.max_bad_images)


def steps_per_epoch(config: Config, num_records: int, num_ids: int) -> int:
    """About one pass over the training images per epoch (at least one batch per P identities), capped."""
    batch = config.data.batch_p * config.data.batch_k
    steps = max(math.ceil(num_ids / config.data.batch_p), num_records // batch, 1)
    cap = config.train.steps_per_epoch
    return min(steps, cap) if cap else steps


def build_train_data(config: Config, splits: Splits, rank: int = 0, world_size: int = 1) -> TrainData:
    records = checked_train_records(config, splits)
    labels, mapping = relabel(records)
    steps = steps_per_epoch(config, len(records), len(mapping))
    sampler = PKSampler(labels, config.data.batch_p, config.data.batch_k, seed=config.train.seed,
                        num_batches=steps, rank=rank, world_size=world_size)
    dataset = ImageDataset(records, train_transform(config), labels)
    loaders = EpochLoaders(dataset, sampler, seed=config.train.seed, workers=config.data.workers,
                           pin_memory=torch.cuda.is_available())
    return TrainData(splits, records, labels, sampler, loaders, len(mapping), steps)


def build_model(config: Config, num_classes: int) -> ReidModel:
    m = config.model
    trunk, feature_dim = build_backbone(m.backbone, last_stride=m.last_stride, pretrained=m.pretrained)
    return ReidModel(trunk, feature_dim, num_classes, embedding_dim=m.embedding_dim, bnneck=m.bnneck,
                     pooling=m.pooling)


def build_criterion(config: Config, num_classes: int, feature_dim: int) -> Criterion:
    """The weighted loss terms of the config (a weight of 0 leaves the term out)."""
    loss, terms = config.loss, []
    if loss.cross_entropy.weight > 0:
        module = CrossEntropyLoss(label_smoothing=loss.cross_entropy.label_smoothing)
        terms.append(LossTerm("cross_entropy", module, loss.cross_entropy.weight, "logits"))
    if loss.triplet.weight > 0:
        t = loss.triplet
        module = TripletLoss(selector=t.selector, margin=t.margin, metric=t.metric, soft=t.soft)
        terms.append(LossTerm("triplet", module, t.weight, "features"))
    if loss.center.weight > 0:
        terms.append(LossTerm("center", CenterLoss(num_classes, feature_dim), loss.center.weight, "features"))
    return Criterion(terms)


def parameter_groups(model: ReidModel, lr: float, head_lr_factor: float) -> list[dict]:
    """The trunk at ``lr``; the new layers after it (pooling, embedding, BNNeck, classifier) at
    ``lr * head_lr_factor``. Frozen parameters (BNNeck's bias) are left out."""
    trunk = {id(p) for p in model.trunk.parameters()}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) in trunk], "lr": lr},
              {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in trunk],
               "lr": lr * head_lr_factor}]
    return [g for g in groups if g["params"]]


def build_optimizer(config: Config, model: ReidModel) -> torch.optim.Optimizer:
    t = config.train
    params = parameter_groups(model, t.lr, t.head_lr_factor)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)


def build_center_optimizer(config: Config, criterion: Criterion) -> torch.optim.Optimizer | None:
    """BoT: the centers have their own SGD (lr 0.5); the loop rescales their grad by 1/weight."""
    params = [p for p in criterion.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=config.loss.center.lr) if params else None


def build_lr_scheduler(config: Config, optimizer: torch.optim.Optimizer, steps: int):
    """Warmup then multistep/cosine, stepped per iteration; the config's epochs become iterations here."""
    t = config.train
    return build_scheduler(optimizer, warmup_steps=t.warmup_epochs * steps, warmup_factor=t.warmup_factor,
                           schedule=t.schedule, milestones=[m * steps for m in t.milestones], gamma=t.gamma,
                           total_steps=t.epochs * steps)


def build_test_sets(config: Config, train_splits: Splits | None) -> list[tuple[str, Splits]]:
    """(label, splits) for each configured test set; none configured = the training dataset itself."""
    if not config.test.datasets:
        splits = train_splits or build_train_splits(config)
        return [(splits.name, splits)]
    return [(item.label or item.name, build_dataset(item.name, item.root)) for item in config.test.datasets]
