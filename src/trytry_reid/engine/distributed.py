"""DistributedDataParallel plumbing for runs launched by ``torchrun``.

One process per device. ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_distributed` reads them (a plain ``python`` launch is a world of one and
initialises nothing). Rank 0 writes checkpoints, TensorBoard and the progress bar; every rank trains on
its share of each P x K batch (``PKSampler(rank=, world_size=)``).

What DDP computes, honestly: gradients are averaged over ranks, so the update equals a single-process step
on the global batch exactly for losses that are a mean over samples with per-sample terms (cross-entropy,
center loss). Two things only see the LOCAL batch: triplet mining (each rank picks positives and negatives
among its own ``p / world_size`` identities, so the loss is the mean over ranks of per-rank triplet losses,
not the triplet loss of the global batch) and BatchNorm statistics (per-rank, unless the model is converted
with :func:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`, which needs GPUs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment; a world of one does nothing.

    ``backend`` defaults to ``nccl`` when CUDA is available and ``gloo`` otherwise. On CUDA the process's
    device becomes ``cuda:LOCAL_RANK``.
    """
    info = DistInfo(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if not info.enabled or dist.is_initialized():
        return info
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={info.world_size} but {', '.join(missing)} unset: launch with torchrun")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info


def current() -> DistInfo:
    """The running process group's rank and size (a world of one when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))


DEVICES = ("auto", "cpu", "cuda")  # auto: cuda when available


def device_for(info: DistInfo, requested: str = "auto") -> torch.device:
    """``cuda:LOCAL_RANK`` under DDP with CUDA, else ``requested`` (``auto`` = cuda if available)."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{requested}' was asked for but no CUDA device is available; "
                           "use train.device=cpu or auto")
    if requested.startswith("cuda") and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(requested)


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP-wrap ``model`` when the world has more than one process; otherwise return it unchanged."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (what checkpoints and evaluation use)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """All-reduce and average the gradients of parameters DDP does not manage (the loss terms' own, e.g.
    center-loss centers)."""
    if not current().enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_ranks(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """The element-wise mean of ``values`` across ranks (unchanged in a world of one)."""
    if not current().enabled:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / dist.get_world_size()).tolist()


def any_rank(flags: Sequence[bool], device: torch.device | str = "cpu") -> list[bool]:
    """Element-wise OR of ``flags`` across ranks, so every rank takes the same stop/abort decision."""
    if not current().enabled:
        return list(flags)
    tensor = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (safe to call when none exists)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
