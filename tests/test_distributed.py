"""DDP on CPU (gloo, 2 processes) against single-process runs on the same global batches.

What is equal, precisely (see engine/distributed.py): with per-sample losses (cross-entropy, center) the
DDP update equals the single-process update on the global batch; with triplet loss, mining is per rank, so
DDP equals a single process averaging triplet losses over rank-sized chunks of the global batch. Equality
is up to float32 summation order (gradients are averaged across processes), hence allclose.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from engine_scripts.ddp_run import OBJECTIVES, train, worker

from trytry_reid.engine import load_checkpoint
from trytry_reid.engine.distributed import DistInfo, any_rank, init_distributed, mean_over_ranks

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("ddp")
    # fork: the children reuse this process's imports (spawn would re-import torch in each, slowly)
    mp.start_processes(worker, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True,
                       start_method="fork")
    return load_checkpoint(out / "ddp.pt"), out


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_ddp_step_matches_single_process_on_global_batch(ddp_results, objective: str) -> None:
    results, _ = ddp_results
    got = results[objective]
    want = train(objective, rank=0, world_size=1, chunks=WORLD)
    assert len(got["loss"]) == 2
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6)
    for part in ("model", "criterion"):
        assert got[part].keys() == want[part].keys()
        for name in want[part]:
            assert torch.allclose(got[part][name], want[part][name], atol=1e-5, rtol=1e-4), f"{part}.{name}"
    for name, value in want["initial"].items():  # the steps really moved every weight
        assert not torch.allclose(value, want["model"][name]), name


def test_local_triplet_mining_differs_from_global_mining(ddp_results) -> None:
    """Why the reference chunks the batch: mining over the whole global batch is a different objective."""
    results, _ = ddp_results
    global_mining = train("triplet", rank=0, world_size=1, chunks=1)
    assert global_mining["loss"][0] != pytest.approx(results["triplet"]["loss"][0], rel=1e-4)


def test_ddp_rank_zero_alone_writes_checkpoints(ddp_results) -> None:
    _, out = ddp_results
    assert (out / "ckpt_rank0" / "last.pt").is_file()
    assert not (out / "ckpt_rank1").exists()


def test_world_of_one_needs_no_process_group(monkeypatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert init_distributed() == DistInfo(0, 1, 0)
    assert mean_over_ranks([1.0, 3.0]) == [1.0, 3.0] and any_rank([False, True]) == [False, True]


def test_bad_environment_is_named(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two' is not an integer"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR.* unset: launch with torchrun"):
        init_distributed()
