"""Atomic saves, rotation, safe loading: each promise with a case that breaks it."""

from __future__ import annotations

import errno
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from trytry_reid.engine import checkpoint as ckpt
from trytry_reid.engine.checkpoint import (
    CheckpointError,
    check_writable,
    load_checkpoint,
    save_checkpoint,
)


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((3, 4), value)}, "epoch": int(value), "name": "run", "lr": [0.1, 0.2]}


def test_roundtrip_plain_state(tmp_path: Path) -> None:
    save_checkpoint(_state(2.0), tmp_path / "last.pt")
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(loaded["model"]["w"], torch.full((3, 4), 2.0))
    assert loaded["epoch"] == 2 and loaded["name"] == "run" and loaded["lr"] == [0.1, 0.2]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_disk_full_during_save_keeps_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), target)
    real_save = torch.save

    def half_written_then_enospc(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(10)  # the bytes that made it before the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", half_written_then_enospc)
    with pytest.raises(CheckpointError, match=r"last\.pt: the disk is full; the previous checkpoint"):
        save_checkpoint(_state(9.0), target)
    monkeypatch.undo()
    assert load_checkpoint(target)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_crash_before_rename_keeps_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint(_state(1.0), target)

    def power_cut(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ckpt.os, "replace", power_cut)
    with pytest.raises(CheckpointError, match="could not write checkpoint"):
        save_checkpoint(_state(5.0), target)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(target)["model"]["w"], torch.full((3, 4), 1.0))


def test_rotation_keeps_newest_numbered_copies_only(tmp_path: Path) -> None:
    save_checkpoint(_state(0.0), tmp_path / "last.pt", keep=2)
    for epoch in (1, 2, 10, 3):
        save_checkpoint(_state(float(epoch)), tmp_path / f"epoch_{epoch:04d}.pt", keep=2)
    save_checkpoint(_state(0.0), tmp_path / "other_0001.pt", keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["epoch_0003.pt", "epoch_0010.pt", "last.pt", "other_0001.pt"]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not found: .*nope\.pt"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("keep_bytes", [0, 100, -50])
def test_truncated_file_names_the_file(tmp_path: Path, keep_bytes: int) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint(_state(3.0), target)
    data = target.read_bytes()
    target.write_bytes(data[: keep_bytes if keep_bytes >= 0 else len(data) + keep_bytes])
    with pytest.raises(CheckpointError, match=r"last\.pt is truncated or corrupt"):
        load_checkpoint(target)


def test_garbage_file_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "junk.pt"
    target.write_bytes(bytes(range(1, 200)) * 3)
    with pytest.raises(CheckpointError, match=r"junk\.pt is not a torch checkpoint: it is neither a zip archive"):
        load_checkpoint(target)


@pytest.mark.parametrize("name, data, what", [
    ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(300), "a JPEG image"),
    ("crop.pt", b"\x89PNG\r\n\x1a\n" + bytes(300), "a PNG image"),
    ("config.yml", b"model:\n  backbone: resnet50\ntrain: {epochs: 3}\n", "a text file"),
])
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(tmp_path: Path, name: str, data: bytes, what: str) -> None:
    target = tmp_path / name
    target.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(target)
    assert f"{target} is not a torch checkpoint: it is {what}" in str(info.value)
    assert "pickled code" not in str(info.value)


def test_a_folder_is_not_reported_missing(tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"run is a folder, not a checkpoint file; e\.g\. .*last\.pt"):
        load_checkpoint(tmp_path / "run")


class _Payload:
    """Pickles as a call to Path.touch(marker): loading it unsafely would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"hook": _Payload(marker), "model": {"w": torch.zeros(2)}}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"refused to load checkpoint .*evil\.pt"):
        load_checkpoint(evil)
    assert not marker.exists()
    # The crafted file really is dangerous: a plain unpickle of its data record creates the marker.
    with zipfile.ZipFile(evil) as archive:
        data_pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        payload = archive.read(data_pkl)

    class _Loader(pickle.Unpickler):
        def persistent_load(self, pid):  # tensor storages: not needed to show the danger
            return None

    try:
        _Loader(io.BytesIO(payload)).load()
    except Exception:
        pass  # the tensor record after the payload fails without storages; the payload already ran
    assert marker.exists()


def test_check_writable_creates_folder_and_leaves_nothing(tmp_path: Path) -> None:
    folder = check_writable(tmp_path / "a" / "b")
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_check_writable_refuses_unusable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match=r"checkpoint folder .*file/ckpt is not writable"):
        check_writable(blocker / "ckpt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_check_writable_refuses_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="is not writable"):
            check_writable(ro)
    finally:
        ro.chmod(0o700)


def test_check_writable_refuses_when_space_is_short(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="MiB free, need at least"):
        check_writable(tmp_path, need_bytes=2**62)


def test_estimate_counts_tensor_bytes() -> None:
    model = torch.nn.Linear(10, 5)  # 55 float32 values
    assert ckpt.estimate_checkpoint_bytes(model, {"x": [torch.zeros(4, dtype=torch.float64)]}) == 55 * 4 + 32
