"""Weights for a trunk: read a file (state dict, its usual wrappers, or a trytry-reid checkpoint) and load it
only when it fits.

Accepted layouts: a state dict at the top level or under ``state_dict`` / ``model``, keys with or without the
``module.`` prefix of (Distributed)DataParallel, and a trytry-reid checkpoint (a dict with ``model`` and
``config``, as ``train`` and ``import`` write it), whose trunk is taken (the ``trunk.`` keys of the ReidModel)
and whose head (embedding, BNNeck, classifier) is left behind. ``.safetensors`` files are read too.

Fit-or-refuse: every tensor of the trunk must come from the file with its shape, and every tensor of the file
must belong to the trunk. The only allowed differences are the documented partial cases: a classifier head
(the backbone's ``head_prefixes``, ``fc.`` / ``classifier.`` for torchvision's) in the file, and
``num_batches_tracked`` counters on either side (BatchNorm does not use them with its default momentum).
Anything else raises :class:`WeightsError` naming how many of the file's tensors matched and a few keys of
each kind; nothing is half-loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from trytry_reid.errors import ReidError

log = logging.getLogger("trytry_reid")

TRUNK_PREFIX = "trunk."  # a ReidModel keeps its backbone here
REID_HEAD_PREFIXES = ("pool.", "embedding.", "embedding_bn.", "bnneck.", "classifier.")  # the rest of a ReidModel
WRAPPER_KEYS = ("state_dict", "model")  # where training scripts nest a state dict
PARALLEL_PREFIX = "module."
COUNTER_SUFFIX = "num_batches_tracked"
SHOWN = 4  # keys named per kind in a refusal


class WeightsError(ReidError, ValueError):
    """A pretrained-weights file that cannot be read or does not fit the backbone (named in the message)."""


@dataclass
class Weights:
    """Tensors meant for a trunk and where they come from.

    ``what``: the source, as messages name it. ``state``: trunk key -> tensor. ``backbone``: the backbone a
    trytry-reid checkpoint was trained with (None otherwise). ``left_behind``: keys of the file that are not
    the trunk's by construction (a checkpoint's ReID head), named in the log.
    """

    what: str
    state: dict[str, torch.Tensor]
    backbone: str | None = None
    left_behind: list[str] = field(default_factory=list)


def read_weights_file(path: str | Path) -> Weights:
    """Read ``path`` into :class:`Weights`; WeightsError for anything that holds no state dict."""
    path = Path(path)
    content = _load(path)
    if not isinstance(content, dict):
        raise WeightsError(f"weights file '{path}' holds a {type(content).__name__}, expected a state dict "
                           "(a dict of parameter name -> tensor)")
    if is_reid_checkpoint(content):
        backbone = (content["config"].get("model") or {}).get("backbone")
        trunk, head = _split_reid_model(path, _tensors(path, content["model"], "'model'"))
        return Weights(f"trytry-reid checkpoint '{path}'", trunk, backbone=str(backbone) if backbone else None,
                       left_behind=head)
    state = _tensors(path, _unwrap(path, content), "")
    state = {key.removeprefix(PARALLEL_PREFIX): value for key, value in state.items()}
    if any(key.startswith(TRUNK_PREFIX) for key in state):      # a ReidModel's state dict on its own
        trunk, head = _split_reid_model(path, state)
        return Weights(f"weights file '{path}'", trunk, left_behind=head)
    return Weights(f"weights file '{path}'", state)


def is_reid_checkpoint(content: Any) -> bool:
    """A trytry-reid checkpoint: the model's state dict under "model" and the run config under "config"."""
    return isinstance(content, dict) and isinstance(content.get("model"), dict) \
        and isinstance(content.get("config"), dict)


def reid_checkpoint_config(path: str | Path) -> dict[str, Any] | None:
    """The run config a trytry-reid checkpoint at ``path`` stores; None for any other file, including one
    that cannot be read (loading it names the reason). Memory-mapped where it can be: only what is read of the
    file is loaded."""
    if Path(path).suffix == ".safetensors":   # tensors only, never a checkpoint
        return None
    try:
        content = _load(Path(path), mmap=True)
    except (WeightsError, OSError):
        return None
    return content["config"] if is_reid_checkpoint(content) else None


def _load(path: Path, mmap: bool = False) -> Any:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if mmap and _is_zip(path):   # torch.save's format; older pickles cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except ImportError as error:
        raise WeightsError(f"reading '{path}' needs the safetensors package (pip install safetensors)") from error
    except Exception as error:  # pickle/zip/safetensors errors carry no file name; add it
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"cannot read weights file '{path}' as a state dict (weights_only): {reason}") from error


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _unwrap(path: Path, content: dict) -> dict:
    """The state dict itself: ``content`` when it holds tensors, else its ``state_dict`` / ``model`` entry."""
    if all(isinstance(value, torch.Tensor) for value in content.values()):
        return content
    for key in WRAPPER_KEYS:
        if isinstance(content.get(key), dict):
            return _unwrap(path, content[key])
    bad = next(key for key, value in content.items() if not isinstance(value, torch.Tensor))
    raise WeightsError(
        f"weights file '{path}': key '{bad}' holds a {type(content[bad]).__name__}, expected a tensor (a state "
        f"dict of parameter name -> tensor, at the top or under {' / '.join(map(repr, WRAPPER_KEYS))})")


def _tensors(path: Path, state: dict, where: str) -> dict[str, torch.Tensor]:
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"weights file '{path}': {where + ' ' if where else ''}key '{key}' holds a "
                               f"{type(value).__name__}, expected a tensor")
    return state


def _split_reid_model(path: Path, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the trunk's tensors without their prefix, the ReID head's keys); other keys stay (and are refused)."""
    trunk = {key.removeprefix(TRUNK_PREFIX): value for key, value in state.items()
             if key.startswith(TRUNK_PREFIX) or not key.startswith(REID_HEAD_PREFIXES)}
    head = sorted(key for key in state if key.startswith(REID_HEAD_PREFIXES))
    if not any(key.startswith(TRUNK_PREFIX) for key in state):
        raise WeightsError(f"'{path}' holds a ReID model without a trunk (no '{TRUNK_PREFIX}*' keys)")
    return trunk, head


def load_fitting(trunk: nn.Module, weights: Weights, backbone: str, head_prefixes: Sequence[str]) -> None:
    """Load ``weights`` into ``trunk`` when they fit (see the module docstring), else raise WeightsError."""
    own = trunk.state_dict()
    fit = match_keys(own, weights.state, tuple(head_prefixes))
    if fit.refused:
        heads = ", ".join(prefix + "*" for prefix in head_prefixes) or "none for this backbone"
        raise WeightsError(f"{weights.what} does not fit backbone '{backbone}': "
                           f"{fit.describe(len(weights.state), len(own))}; allowed to differ: a classifier head "
                           f"({heads}) and {COUNTER_SUFFIX}")
    trunk.load_state_dict(fit.matched, strict=False)
    skipped = fit.head + weights.left_behind
    if fit.counters:
        skipped.append(f"{len(fit.counters)} {COUNTER_SUFFIX} counters present on one side only")
    log.info("loaded %d tensors from %s into backbone '%s'%s", len(fit.matched), weights.what, backbone,
             f"; skipped: {', '.join(skipped)}" if skipped else "")


@dataclass
class KeyMatch:
    """How a file's keys meet a trunk's: loadable, allowed differences, and the reasons to refuse."""

    matched: dict[str, torch.Tensor] = field(default_factory=dict)
    head: list[str] = field(default_factory=list)         # the file's classifier head
    counters: list[str] = field(default_factory=list)     # num_batches_tracked on one side only
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)   # "key: file (shape) vs model (shape)"

    @property
    def refused(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def describe(self, file_count: int, own_count: int) -> str:
        parts = [f"{len(self.matched)} of its {file_count} tensors match the trunk's {own_count}"]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                           ("shape mismatch", self.mismatched)):
            if keys:
                more = f", ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
                parts.append(f"{name} {len(keys)}: {', '.join(keys[:SHOWN])}{more}")
        return "; ".join(parts)


def match_keys(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], head: tuple[str, ...]) -> KeyMatch:
    """Sort the file's keys (``state``) against the trunk's (``own``); ``head``: the allowed head prefixes."""
    fit = KeyMatch()
    for key, value in state.items():
        if key in own and tuple(value.shape) == tuple(own[key].shape):
            fit.matched[key] = value
        elif key in own:
            fit.mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        elif key.endswith(COUNTER_SUFFIX):
            fit.counters.append(key)
        elif key.startswith(head):
            fit.head.append(key)
        else:
            fit.unexpected.append(key)
    for key in own:
        if key not in state:
            (fit.counters if key.endswith(COUNTER_SUFFIX) else fit.missing).append(key)
    return fit
