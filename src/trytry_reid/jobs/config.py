"""The typed config schema: the only description of what a YAML config may say.

`load_config(path, overrides)` reads a YAML file (over the `_base_` file it names, if any), applies trailing
`dotted.key=value` overrides, checks every key and type against the dataclasses below (an unknown key names the
closest valid one), then checks values that cannot work (negative lr, P*K not matching the batch size, a
missing dataset root), all before any training starts. Only the jobs (jobs/) read the result.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trytry_reid.catalog import did_you_mean
from trytry_reid.errors import ConfigError
from trytry_reid.jobs.config_checks import check_values

FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass
class DataConfig:
    name: str = "market1501"
    root: str | None = None
    height: int = 256
    width: int = 128
    batch_p: int = 16
    batch_k: int = 4
    batch_size: int | None = None  # optional; when given it must equal batch_p * batch_k
    balance: str = "identity"  # data/sampler.BALANCES: identity (every id equally often) | image (torchreid's)
    workers: int = 2
    flip_p: float = 0.5
    pad: int = 10
    random_erasing: float = 0.0
    color_jitter: float = 0.0
    interpolation: str | None = None  # data/transforms.INTERPOLATIONS; None: a pretrained checkpoint's, else bilinear
    grayscale: float = 0.0  # probability of a training image turned grey (data/batch_augment.py)
    augmix: float = 0.0  # probability of a training image mixed with tone/colour-changed copies (data/augmix.py)
    mean: list[float] | None = None  # None: what the backbone's pretrained weights expect (models/backbones.py)
    std: list[float] | None = None
    on_bad_image: str = "error"  # data/validate.POLICIES: error | skip
    max_bad_images: int = 100  # with skip: abort when more images than this are bad
    validation_ids: int = 0  # > 0: hold out this many training ids as query/gallery (data/holdout.py)
    validation_cameras: list[int] = field(default_factory=list)  # e.g. [5, 6]: train without these cameras,
    # rank the held-out ids within them too (a camera shift; needs validation_ids; data/holdout.py)


@dataclass
class ModelConfig:
    backbone: str = "resnet50"  # a name in models/backbones.BACKBONES, or timm/<name> (a timm CNN)
    pretrained: str = "imagenet"  # imagenet (downloaded once) | none | a weights file or trytry-reid checkpoint
    last_stride: int = 1
    embedding_dim: int = 0  # 0: no embedding layer
    embedding_bn_relu: bool = False  # the embedding is Linear + BatchNorm1d + ReLU (torchreid's fc block)
    bnneck: bool = True
    pooling: str = "avg"  # a name in models/pooling.POOLINGS
    retrieval_feature: str = "bn_features"  # what retrieval uses: bn_features (after BNNeck) or features (before)
    classifier_std: float = 0.001  # std of the classifier's normal init (BoT 0.001, torchreid 0.01)
    classifier_bias: bool = False  # a zero-init classifier bias (torchreid) or none (BoT)
    frozen_layers: list[str] = field(default_factory=list)  # trunk modules kept as loaded, e.g. [features.0, layer1]
    frozen_batchnorm: bool = True  # the frozen layers' BatchNorm statistics fixed too (False: they adapt)


@dataclass
class CrossEntropyConfig:
    weight: float = 1.0  # 0 disables the term
    label_smoothing: float = 0.1


@dataclass
class TripletConfig:
    weight: float = 1.0
    margin: float = 0.3
    selector: str = "hardest"  # a name in losses/selectors.SELECTORS
    metric: str = "euclidean"  # a name in evaluation/distance.DISTANCES
    soft: bool = False


@dataclass
class CenterConfig:
    weight: float = 0.0  # BoT uses 5e-4
    lr: float = 0.5  # the centers' own SGD learning rate


@dataclass
class CosFaceConfig:
    weight: float = 0.0  # a margin softmax over learnable class directions (losses/cosface.py)
    scale: float = 30.0
    margin: float = 0.25


@dataclass
class LossConfig:
    cross_entropy: CrossEntropyConfig = field(default_factory=CrossEntropyConfig)
    triplet: TripletConfig = field(default_factory=TripletConfig)
    center: CenterConfig = field(default_factory=CenterConfig)
    cosface: CosFaceConfig = field(default_factory=CosFaceConfig)


@dataclass
class TrainConfig:
    epochs: int = 120
    optimizer: str = "adam"  # a name in engine/optimizers.OPTIMIZERS
    lr: float = 3.5e-4
    head_lr_factor: float = 1.0  # lr multiplier for the layers after the trunk (pooling, embedding, BNNeck, classifier)
    weight_decay: float = 5e-4
    momentum: float = 0.9  # SGD's
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam's and AdamW's (beta1, beta2)
    warmup_epochs: int = 10
    warmup_factor: float = 0.1
    schedule: str = "multistep"  # a name in engine/schedule.SCHEDULES
    milestones: list[int] = field(default_factory=lambda: [40, 70])  # in epochs
    gamma: float = 0.1
    eval_every: int = 10
    seed: int = 0
    steps_per_epoch: int | None = None  # optional cap, for quick runs
    device: str = "auto"  # engine/distributed.DEVICES: auto | cpu | cuda
    amp: str = "off"  # engine/train.AMP_MODES: off | bf16 | fp16
    fp32_precision: str = "none"  # engine/precision.FP32_PRECISIONS: none | bf16 | tf32 (oneDNN, CPU training)
    channels_last: bool = False
    ema_decay: float = 0.0  # engine/averaging.py: evaluate and keep an EMA of the weights (0: off; e.g. 0.998)
    average_epochs: int = 0  # engine/averaging.py: evaluate and keep the mean of the last N epoch-end weights (0: off)
    log_every: int = 10
    checkpoint_keep: int = 3
    checkpoint_every_steps: int = 0  # 0: once per epoch


@dataclass
class TestDatasetConfig:
    name: str = ""
    root: str | None = None
    label: str | None = None  # how metrics.json and TensorBoard name it; default: the dataset name


@dataclass
class TestConfig:
    datasets: list[TestDatasetConfig] = field(default_factory=list)  # empty: the training dataset
    batch_size: int = 128
    metric: str = "cosine"  # a name in evaluation/distance.DISTANCES
    flip: bool = False
    rerank: bool = False  # k-reciprocal re-ranking (evaluation/rerank.py)
    aqe: int = 0  # > 0: average query expansion over this many gallery neighbours (evaluation/distance.py)
    max_rank: int = 50
    ranking_queries: int = 8  # rows of the ranking figure (0: none)
    ranking_top_k: int = 10
    tsne_max_ids: int = 20
    figures: bool = True  # ranking PNG, t-SNE PNG and curves.png at the end of a run
    calibration_fpr: float = 1e-3  # the false-positive rate of the "same person" threshold stored with the model


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    output_dir: str | None = None  # default: runs/<config name>-<timestamp>
    name: str = "run"  # used in the default output folder; defaults to the config file's stem


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when `path` is None), apply `key=value` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
        raw.setdefault("name", Path(path).stem)
    return resolve_config(raw, overrides)


def resolve_config(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A config mapping (a YAML file's, or the resolved one a checkpoint stores) with `key=value` overrides
    applied, typed and validated. `raw` itself is not changed."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    config = from_dict(Config, raw, prefix="")
    check_values(config)
    resolve_normalisation(config)
    return config


def resolve_normalisation(config: Config) -> None:
    """Fill ``data.mean`` / ``data.std`` / ``data.interpolation`` left unset with what the starting weights
    expect: those a trytry-reid checkpoint in ``model.pretrained`` was trained with (an imported fast-reid
    model: bicubic), else the backbone's own and bilinear (checkpoints store the values)."""
    from trytry_reid.models.backbones import backbone_entry
    from trytry_reid.models.weights_file import reid_checkpoint_config

    backbone = backbone_entry(config.model.backbone)
    mean, std, interpolation = backbone.mean, backbone.std, "bilinear"
    unset = None in (config.data.mean, config.data.std, config.data.interpolation)
    if unset and config.model.pretrained not in ("imagenet", "none"):
        trained = (reid_checkpoint_config(Path(config.model.pretrained).expanduser()) or {}).get("data") or {}
        mean, std = trained.get("mean", mean), trained.get("std", std)
        interpolation = trained.get("interpolation", interpolation)
    config.data.mean = list(config.data.mean if config.data.mean is not None else mean)
    config.data.std = list(config.data.std if config.data.std is not None else std)
    config.data.interpolation = config.data.interpolation or interpolation


BASE_KEY = "_base_"


def read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config as a mapping, with its ``_base_`` (a config file, relative to this one's folder) read
    first and this file's keys merged over it: sections merge key by key, values and lists replace."""
    path = Path(path)
    if not path.is_file():
        where = f" (the _base_ of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, got {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"config file {path}: {BASE_KEY} must be the path of another config file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve(), base_path))
        raise ConfigError(f"config file {path}: {BASE_KEY} makes a circle: {cycle}")
    return merge_config(read_yaml(base_path, (*chain, path.resolve())), data)


def merge_config(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: mappings are merged recursively, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(item: str) -> tuple[str, Any]:
    """`train.lr=0.01` -> ("train.lr", 0.01); the value is parsed as YAML (numbers, lists, null)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' must look like dotted.key=value, e.g. train.epochs=2")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{item}': the value is not valid YAML ({err})") from err
    return key.strip(), value


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override '{key}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types."""
    where = prefix.rstrip(".") or "the config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(unknown_key_message(prefix + str(key), [prefix + n for n in names]))
    values = {name: convert(hints[name], raw[name], prefix + name) for name in names if name in raw}
    return cls(**values)


def unknown_key_message(key: str, valid: list[str]) -> str:
    return f"unknown config key '{key}'.{did_you_mean(key, valid, cutoff=0.5)} Valid keys here: {', '.join(valid)}"


def convert(hint: Any, value: Any, key: str) -> Any:
    """Check `value` against the type hint `hint`; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [opt for opt in options if opt is not type(None)]
        return convert(inner, value, key)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key + ".")
    if origin is list:
        (inner,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [convert(inner, item, f"{key}[{i}]") for i, item in enumerate(value)]
    return convert_scalar(hint, value, key)


def convert_scalar(hint: type, value: Any, key: str) -> Any:
    if hint is float and isinstance(value, str) and FLOAT_TEXT.fullmatch(value.strip()):
        return finite(float(value), key)  # YAML 1.1 reads `1e-3` (no dot) as a string; it is plainly a number
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return finite(float(value), key)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    quote = " (YAML reads an unquoted off / no as false and on / yes as true: quote it, e.g. \"off\")" \
        if hint is str and isinstance(value, bool) else ""
    raise ConfigError(f"config key '{key}' must be {hint.__name__}, got {value!r} ({type(value).__name__}){quote}")


def finite(value: float, key: str) -> float:
    """Every float key is a finite number: `.inf`, `.nan` and overflowing text such as `1e400` are refused."""
    if not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value}")
    return value


def to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain nested dicts/lists (what `config.yml` and checkpoints store)."""
    return dataclasses.asdict(config)


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
