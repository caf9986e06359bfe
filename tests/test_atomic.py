"""Files are written whole or not at all."""

from __future__ import annotations

import numpy as np
import pytest

from trytry_reid.atomic import atomic_file
from trytry_reid.serving.index import GalleryIndex, GalleryIndexError


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "features.npz"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["features.npz"]
    with atomic_file(target) as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new"


def test_an_index_save_that_fails_midway_is_refused_on_load_never_mixed(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 4)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    index = GalleryIndex(dim=4)
    index.add(features[:3], [f"a{i}.jpg" for i in range(3)])
    index.save(tmp_path / "idx")
    index.add(features[3:], [f"b{i}.jpg" for i in range(3)])
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("trytry_reid.serving.index.json.dump", disk_full)
    with pytest.raises(OSError):
        index.save(tmp_path / "idx")
    monkeypatch.undo()
    with pytest.raises(GalleryIndexError, match="features.npz has shape"):    # 6 vectors, index.json says 3
        GalleryIndex.load(tmp_path / "idx")
    assert not [p for p in (tmp_path / "idx").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_the_umask_gives_any_new_file(tmp_path, umask):
    import os

    previous = os.umask(umask)
    try:
        with atomic_file(tmp_path / "atomic.json", "w") as handle:
            handle.write("{}")
        (tmp_path / "plain.yml").write_text("a: 1\n")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"atomic.json": 0o666 & ~umask, "plain.yml": 0o666 & ~umask}
