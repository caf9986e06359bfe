"""Reading another toolkit's model file (torchreid, fast-reid) as a flat state dict, and fitting a renamed
state dict onto a model all or nothing.

The files come in several shapes: the state dict at the top, or under ``state_dict`` (torchreid's training
checkpoints) or ``model`` (fast-reid's Checkpointer); keys prefixed with ``module.`` (saved from DataParallel);
beside the weights, epochs, optimiser states and numbers, sometimes NumPy scalars (torchreid stores its rank-1
as one). They are read with ``torch.load(weights_only=True)``: only tensors, containers, numbers, strings and
NumPy's scalar and dtype records are accepted, never pickled code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trytry_reid.errors import ReidError

STATE_DICT_KEYS = ("state_dict", "model")
PARALLEL_PREFIX = "module."
# What torchreid's and fast-reid's training loops store beside the weights: NumPy scalars and their dtypes
# (NumPy 1.x pickles the scalar's reconstructor as numpy.core.multiarray.scalar, 2.x as numpy._core...).
_SCALAR = np.float64(0.0).__reduce__()[0]
NUMPY_GLOBALS = [(_SCALAR, "numpy.core.multiarray.scalar"), (_SCALAR, "numpy._core.multiarray.scalar"), np.dtype,
                 *(type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32"))]
# Keys that a model may lack in old files and that are filled in: BatchNorm's step counter (torch >= 0.4.1).
FILLABLE_SUFFIX = "num_batches_tracked"


class ZooImportError(ReidError, ValueError):
    """A model file that cannot be imported; the message names the file and the keys or values at fault."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's weights as a flat ``{name: tensor}``, ``module.`` prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise ZooImportError(f"model file not found: {path}")
    try:
        with torch.serialization.safe_globals(NUMPY_GLOBALS):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle and zip errors carry no file name; add it
        raise ZooImportError(f"cannot read '{path}' with torch.load(weights_only=True) (tensors, numbers and "
                             f"containers only, no pickled code): {str(error).strip().splitlines()[-1]}") from error
    state = find_state_dict(content, path)
    stripped = {key[len(PARALLEL_PREFIX):] if key.startswith(PARALLEL_PREFIX) else key: value
                for key, value in state.items()}
    if len(stripped) != len(state):
        raise ZooImportError(f"'{path}': keys with and without the '{PARALLEL_PREFIX}' prefix name the same weight")
    return stripped


def find_state_dict(content: object, path: Path) -> dict[str, torch.Tensor]:
    """The dict of tensors at the top of ``content`` or under one of STATE_DICT_KEYS."""
    if isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        return content
    if isinstance(content, dict):
        for key in STATE_DICT_KEYS:
            inner = content.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return inner
        found = ", ".join(f"'{k}'" for k in list(content)[:12])
        raise ZooImportError(f"'{path}' holds no state dict at the top or under {' / '.join(STATE_DICT_KEYS)} "
                             f"(a dict of name -> tensor); its keys: {found}")
    raise ZooImportError(f"'{path}' holds a {type(content).__name__}, expected a state dict or a checkpoint dict")


@dataclass
class Renamed:
    """A file's weights under the model's names: ``ours -> (their key, tensor)``; ``dropped`` are the file's
    keys left out on purpose (identity classifiers, preprocessing buffers)."""

    weights: dict[str, tuple[str, torch.Tensor]]
    dropped: list[str]


@dataclass(frozen=True)
class ImportOptions:
    """What the user says about a file that its weights cannot tell (None: the peer's usual value)."""

    arch: str | None = None
    height: int | None = None
    width: int | None = None
    pooling: str | None = None
    last_stride: int | None = None


@dataclass
class ImportPlan:
    """How a peer's file becomes a ReidModel: ``model`` is a config's model section (build_reid_model's
    keyword arguments), ``filled`` the weights the importer sets itself, ``preprocessing`` the peer's input
    (height, width, mean, std, interpolation), ``notes`` the choices made by convention (shown to the user)."""

    arch: str
    model: dict[str, Any]
    renamed: Renamed
    preprocessing: dict[str, Any]
    filled: dict[str, torch.Tensor] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def fit_state_dict(model: torch.nn.Module, renamed: Renamed, path: Path, arch: str,
                   filled: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The complete state dict for ``model`` from ``renamed`` (plus ``filled``, values set by the importer),
    or ZooImportError naming every file key that has no place in the model, every shape that differs and
    every model key the file does not provide. Nothing is loaded into ``model``."""
    own = model.state_dict()
    filled = dict(filled or {})
    unmatched = sorted(theirs for ours, (theirs, _) in renamed.weights.items() if ours not in own)
    shapes = [f"'{theirs}' {tuple(value.shape)} -> '{ours}' {tuple(own[ours].shape)}"
              for ours, (theirs, value) in renamed.weights.items() if ours in own and value.shape != own[ours].shape]
    for key in own:
        if key.endswith(FILLABLE_SUFFIX) and key not in renamed.weights and key not in filled:
            filled[key] = torch.zeros_like(own[key])
    missing = sorted(key for key in own if key not in renamed.weights and key not in filled)
    problems = []
    if unmatched:
        problems.append(f"{len(unmatched)} keys of the file have no place in {arch}: {_listed(unmatched)}")
    if shapes:
        problems.append(f"{len(shapes)} shapes differ: {_listed(shapes)}")
    if missing:
        problems.append(f"{len(missing)} weights of {arch} are not in the file: {_listed(missing)}")
    if problems:
        raise ZooImportError(f"'{path}' does not fit {arch}; nothing was imported. " + "; ".join(problems))
    state = {ours: value.detach().clone().to(own[ours].dtype) for ours, (_, value) in renamed.weights.items()}
    state.update(filled)
    return state


def _listed(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items) - limit} more)" if len(items) > limit else "")


def block_indices(keys: list[str], prefix: str) -> int:
    """How many numbered children ``<prefix>.<i>.`` the keys name (``layer3`` -> 6 for a ResNet-50)."""
    found = {key[len(prefix) + 1:].split(".", 1)[0] for key in keys if key.startswith(prefix + ".")}
    return len({item for item in found if item.isdigit()})
