"""One threshold source: search and serve decide with the checkpoint's current operating point, the one verify
and the Embedder read, even when calibrate rewrote it after the index was built (the index's copy is only
provenance, and a note says it differs)."""

from __future__ import annotations

import json

import pytest

from trytry_reid.engine.checkpoint import load_checkpoint, save_checkpoint
from trytry_reid.jobs.cli import main as cli_main
from trytry_reid.serving.embedder import Embedder

from test_export import write_images, write_tiny_checkpoint

ENTRY = {"metric": "cosine", "target_fpr": 0.1, "fpr": 0.1, "tpr": 0.9, "dataset": "hand"}


def store_threshold(checkpoint, threshold: float, date: str) -> None:
    state = load_checkpoint(checkpoint)
    state["calibration"] = {**ENTRY, "threshold": threshold, "date": date}
    save_checkpoint(state, checkpoint, keep=0)


@pytest.fixture(scope="module")
def recalibrated(tmp_path_factory):
    """An index built while the checkpoint's threshold sat just below the distance of a query to its nearest
    gallery image; then the checkpoint is re-calibrated to a threshold just above it."""
    root = tmp_path_factory.mktemp("source")
    checkpoint = write_tiny_checkpoint(root / "best.pt")
    gallery = write_images(root / "gallery", 4, seed=6)
    query = write_images(root / "query", 1, seed=7)[0]
    embedder = Embedder.from_checkpoint(checkpoint)
    distances = embedder.distance(embedder.embed(str(query))[0], embedder.embed([str(p) for p in gallery]))
    nearest = float(distances.min())
    old, new = nearest - 0.01, nearest + 0.01
    store_threshold(checkpoint, old, "2026-01-01T00:00:00+00:00")
    assert cli_main(["index", "--checkpoint", str(checkpoint), "--images", str(root / "gallery"), "--out",
                     str(root / "index"), "--workers", "0"]) == 0
    store_threshold(checkpoint, new, "2026-02-01T00:00:00+00:00")       # `calibrate` after `index`
    return checkpoint, query, gallery[int(distances.argmin())], root / "index", old, new


def test_search_and_verify_agree_after_calibrate_rewrote_the_threshold(recalibrated, capsys):
    checkpoint, query, nearest, index, old, new = recalibrated
    capsys.readouterr()
    assert cli_main(["verify", "--checkpoint", str(checkpoint), str(query), str(nearest), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["same"] and verdict["threshold"] == new
    assert cli_main(["search", "--index", str(index), "--query", str(query), "--top-k", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"known: 1 of 2 results within the threshold {new:.4f}")
    assert cli_main(["search", "--index", str(index), "--query", str(query), "--top-k", "2", "--json"]) == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert set(answer) == {"query", "threshold", "unknown", "results"}            # the API's fields
    assert set(answer["results"][0]) == {"rank", "id", "path", "name", "distance", "within"}   # (less its url)
    assert answer["threshold"]["threshold"] == new and answer["unknown"] is False
    assert answer["results"][0]["path"] == str(nearest.resolve()) and answer["results"][0]["within"] is True
    assert f"the index recorded threshold {old:.4f} when it was built; checkpoint {checkpoint} now stores " \
           f"threshold {new:.4f}" in captured.err and "using the checkpoint's" in captured.err


def test_serve_decides_with_the_checkpoints_current_threshold(recalibrated):
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from trytry_reid.serving.app import create_app
    from trytry_reid.serving.inference import load_model

    checkpoint, query, _, index, _, new = recalibrated
    client = TestClient(create_app(index, load_model(checkpoint)))
    assert client.get("/api/health").json()["threshold"]["threshold"] == new
    answer = client.post("/api/search", files={"image": ("q.jpg", query.read_bytes(), "image/jpeg")}).json()
    assert answer["threshold"]["threshold"] == new and answer["unknown"] is False


def test_a_running_server_takes_the_threshold_calibrate_writes_and_refuses_other_weights(tmp_path):
    """`calibrate` rewrites the served checkpoint while `serve` runs: the next answer uses the new threshold.
    A file that now holds other weights, or a damaged one, stops the answers (409 / 503) instead of deciding
    with a threshold of another model; ranking with the served model goes on once the file is right again."""
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from trytry_reid.serving.app import create_app
    from trytry_reid.serving.runtimes import open_model

    checkpoint = write_tiny_checkpoint(tmp_path / "best.pt")
    write_images(tmp_path / "gallery", 3, seed=1)
    query = write_images(tmp_path / "query", 1, seed=2)[0]
    store_threshold(checkpoint, 0.2, "2026-01-01T00:00:00+00:00")
    assert cli_main(["index", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "gallery"), "--out",
                     str(tmp_path / "index"), "--workers", "0"]) == 0
    client = TestClient(create_app(tmp_path / "index", open_model("torch", checkpoint)))
    upload = {"image": ("q.jpg", query.read_bytes(), "image/jpeg")}
    assert client.post("/api/search", files=upload).json()["threshold"]["threshold"] == 0.2

    store_threshold(checkpoint, 0.3, "2026-02-01T00:00:00+00:00")          # `calibrate` while serving
    assert client.post("/api/search", files=upload).json()["threshold"]["threshold"] == 0.3
    assert client.get("/api/health").json()["threshold"]["threshold"] == 0.3

    saved = checkpoint.read_bytes()
    checkpoint.write_bytes(saved[: len(saved) // 2])                         # half-written
    damaged = client.post("/api/search", files=upload)
    assert damaged.status_code == 503 and str(checkpoint) in damaged.json()["detail"]

    other = write_tiny_checkpoint(tmp_path / "other.pt", seed=5)
    checkpoint.write_bytes(other.read_bytes())                               # other weights under the same name
    refused = client.post("/api/search", files=upload)
    assert refused.status_code == 409 and "another model" in refused.json()["detail"]
    assert client.get("/api/health").status_code == 409
    ranked = client.post("/api/search", files=upload, data={"threshold": "none"})    # ranking needs no threshold
    assert ranked.status_code == 200 and ranked.json()["unknown"] is None

    checkpoint.write_bytes(saved)                                            # the served weights again
    assert client.post("/api/search", files=upload).json()["threshold"]["threshold"] == 0.3


class FakeModel:
    """What LiveCalibration reads of an opened model: its engine, file, operating point and weights' hash."""

    def __init__(self, path, threshold: float, weights: str = "w1") -> None:
        self.engine, self.path, self.loaded = "torch", path, None
        self.contract = type("Contract", (), {"calibration": {**ENTRY, "threshold": threshold},
                                              "precision": "fp32", "weights_sha256": weights})()


def test_the_live_operating_point_reads_a_file_changed_while_starting_and_does_not_rehash_a_refused_one(tmp_path):
    from trytry_reid.serving.live_calibration import LiveCalibration, ModelFileChanged

    path = tmp_path / "best.pt"
    path.write_text("threshold 0.2")
    opened = []

    def opener(engine, file):
        opened.append(file)
        text = file.read_text()
        return FakeModel(file, float(text.split()[1]), weights="w2" if "other" in text else "w1")

    live = LiveCalibration(FakeModel(path, 0.2), opener)
    path.write_text("threshold 0.25")          # calibrate finished after the model was opened, before serving
    assert live.current()["threshold"] == 0.25 and len(opened) == 1
    assert live.current()["threshold"] == 0.25 and len(opened) == 1      # unchanged file: not read again
    path.write_text("threshold 0.3 other")
    for _ in range(3):
        with pytest.raises(ModelFileChanged, match="another model") as refused:
            live.current()
        assert refused.value.status == 409
    assert len(opened) == 2                    # the refused file was opened once, not once per request
    path.write_text("threshold 0.35")
    assert live.current()["threshold"] == 0.35 and len(opened) == 3
