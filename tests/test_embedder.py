"""trytry_reid.Embedder: the three back-ends (extract, checkpoint, ONNX) agree; every input form, boxes,
distances and the stored threshold; the operating point written into a checkpoint changes nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trytry_reid.engine.checkpoint import load_checkpoint, save_checkpoint
from trytry_reid.evaluation.calibration import calibrate
from trytry_reid.evaluation.operating_point import make_entry
from trytry_reid.evaluation.pair_histograms import pair_histograms_from_features
from trytry_reid.jobs.calibrate import store_in_checkpoint
from trytry_reid.serving.embedder import Embedder
from trytry_reid.serving.folder_images import extract_folder, folder_records
from trytry_reid.serving.inference import load_model

from conftest import MARKET_DEVSPLIT, REPO, require
from test_export import write_images, write_tiny_checkpoint

PARITY = 1e-4


def calibrate_on_images(checkpoint: Path, images: list[Path]) -> dict:
    """A real operating point of the tiny model: every pair of the images' features (Market-style names)."""
    records = folder_records(images[0].parent)
    features = extract_folder(load_model(checkpoint), images[0].parent, progress=False).features
    ids = [np.array([getattr(r, key) for r in records]) for key in ("pid", "pid", "camid", "camid")]
    calibration = calibrate(pair_histograms_from_features(features, features, *ids))
    return make_entry(calibration, 0.1, "tiny-images")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedder")
    checkpoint = write_tiny_checkpoint(root / "tiny.pt")
    images = write_images(root / "images", 18, seed=4)
    store_in_checkpoint(checkpoint, calibrate_on_images(checkpoint, images))
    return checkpoint, images, Embedder.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def onnx_file(calibrated, tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from trytry_reid.serving.export import export_onnx

    return export_onnx(load_model(calibrated[0]), tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_extract_checkpoint_and_onnx_embedders_agree(calibrated, onnx_file):
    checkpoint, images, embedder = calibrated
    extracted = extract_folder(load_model(checkpoint), images[0].parent, batch_size=5, progress=False)
    assert sorted(extracted.paths) == sorted(str(p.resolve()) for p in images)
    images = extracted.paths                                       # the folder's (sorted) order
    from_checkpoint = embedder.embed(images)
    from_onnx = Embedder.from_onnx(onnx_file, batch_size=4).embed(images)
    for features in (from_checkpoint, from_onnx):
        assert features.dtype == np.float32 and features.shape == (18, 32)
        np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    assert np.abs(from_checkpoint - extracted.features).max() <= PARITY
    assert np.abs(from_onnx - extracted.features).max() <= PARITY
    assert np.abs(from_onnx - from_checkpoint).max() <= PARITY


def test_the_backends_agree_on_real_devsplit_crops(calibrated, onnx_file, tmp_path):
    query = require(MARKET_DEVSPLIT / "query")
    crops = sorted(query.glob("*.jpg"))[:24]
    folder = tmp_path / "crops"
    folder.mkdir()
    for path in crops:
        (folder / path.name).symlink_to(path)
    extracted = extract_folder(load_model(calibrated[0]), folder, progress=False).features
    assert np.abs(calibrated[2].embed(crops) - extracted).max() <= PARITY
    assert np.abs(Embedder.from_onnx(onnx_file).embed(crops) - extracted).max() <= PARITY


def test_every_input_form_gives_the_same_features(calibrated):
    _, images, embedder = calibrated
    reference = embedder.embed(images[:4])
    pil = [Image.open(p).convert("RGB") for p in images[:4]]
    rgb = [np.asarray(image) for image in pil]
    bgr = [np.ascontiguousarray(array[..., ::-1]) for array in rgb]
    for features in (embedder.embed(pil), embedder.embed(rgb), embedder.embed(bgr, bgr=True),
                     embedder.embed(np.stack(rgb)), embedder.embed([str(images[0]), pil[1], rgb[2], images[3]])):
        np.testing.assert_allclose(features, reference, atol=1e-6)
    np.testing.assert_allclose(embedder.embed(images[2]), reference[2:3], atol=1e-6)   # one image -> [1, D]
    assert np.abs(embedder.embed(bgr) - reference).max() > 1e-3     # BGR read as RGB is another image
    assert embedder.embed([]).shape == (0, 32)


def test_batches_do_not_change_the_features(calibrated):
    checkpoint, images, embedder = calibrated
    np.testing.assert_allclose(Embedder.from_checkpoint(checkpoint, batch_size=4).embed(images),
                               embedder.embed(images), atol=1e-6)


def test_embed_boxes_crops_clips_and_refuses_empty_boxes(calibrated):
    _, images, embedder = calibrated
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(120, 200, 3), dtype=np.uint8)
    boxes = np.array([[10.2, 5.0, 40.7, 90.0], [150, 20, 260, 140], [-30, -10, 20, 60]])
    crops = [frame[5:90, 10:41], frame[20:120, 150:200], frame[0:60, 0:20]]   # outward to whole pixels, clipped
    np.testing.assert_allclose(embedder.embed_boxes(frame, boxes), embedder.embed(crops), atol=1e-6)
    np.testing.assert_allclose(embedder.embed_boxes(frame[..., ::-1], boxes, bgr=True), embedder.embed(crops),
                               atol=1e-6)
    assert embedder.embed_boxes(frame, np.zeros((0, 4))).shape == (0, 32)
    with pytest.raises(ValueError, match=r"box 1 \[250.0, 10.0, 300.0, 50.0\] is empty inside the 200x120 frame"):
        embedder.embed_boxes(frame, [[0, 0, 10, 10], [250, 10, 300, 50]])
    with pytest.raises(ValueError, match="box 0 .* is empty"):
        embedder.embed_boxes(frame, [[30, 30, 30, 80]])
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        embedder.embed_boxes(frame, [1, 2, 3])


def test_distance_and_same_person_use_the_stored_threshold(calibrated):
    checkpoint, images, embedder = calibrated
    stored = load_checkpoint(checkpoint)["calibration"]["threshold"]
    assert embedder.threshold == stored
    f = embedder.embed(images)
    dot = f @ f.T
    assert embedder.distance(f[0], f[1]) == pytest.approx(1 - dot[0, 1], abs=1e-6)
    np.testing.assert_allclose(embedder.distance(f[:3], f), 1 - dot[:3], atol=1e-6)
    np.testing.assert_allclose(embedder.distance(f[:3], f[5]), 1 - dot[:3, 5], atol=1e-6)
    np.testing.assert_array_equal(embedder.same_person(f[:3], f), embedder.distance(f[:3], f) <= stored)
    assert embedder.same_person(f[0], f[0]) is True
    assert embedder.same_person(f[0], f[1], threshold=2.0) is True
    assert embedder.same_person(f[0], f[1], threshold=0.0) is False


def test_an_uncalibrated_model_says_how_to_get_a_threshold(tmp_path):
    embedder = Embedder.from_checkpoint(write_tiny_checkpoint(tmp_path / "plain.pt"))
    assert embedder.threshold is None
    f = np.eye(32, dtype=np.float32)[:2]
    with pytest.raises(ValueError, match="has no calibration: run `trytry-reid calibrate"):
        embedder.same_person(f[0], f[1])
    assert embedder.same_person(f[0], f[1], threshold=1.0)


def test_bad_images_name_their_position_and_form(calibrated):
    embedder = calibrated[2]
    with pytest.raises(ValueError, match=r"image 1: a numpy image must be a non-empty H x W x 3 uint8"):
        embedder.embed([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        embedder.embed([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(TypeError, match="image 0: expected a file path"):
        embedder.embed([42])
    with pytest.raises(OSError, match="cannot read image"):
        embedder.embed(["/nonexistent/crop.jpg"])


def test_onnx_metadata_carries_the_contract_and_the_threshold(calibrated, onnx_file):
    from trytry_reid.serving.export import read_preprocessing

    meta = read_preprocessing(onnx_file)
    entry = load_checkpoint(calibrated[0])["calibration"]
    assert meta["feature_dim"] == "32" and meta["color"] == "RGB" and (meta["height"], meta["width"]) == ("64", "32")
    assert float(meta["threshold"]) == entry["threshold"] and meta["threshold_metric"] == "cosine"
    assert json.loads(meta["calibration"]) == entry
    assert Embedder.from_onnx(onnx_file).threshold == entry["threshold"]


def test_an_onnx_file_without_the_metadata_is_refused(onnx_file, tmp_path):
    import onnx

    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match=r"lacks metadata \['input_name'"):
        Embedder.from_onnx(tmp_path / "bare.onnx")


def test_storing_the_operating_point_changes_no_other_key(calibrated, tmp_path):
    checkpoint = write_tiny_checkpoint(tmp_path / "epoch_0002.pt")
    sibling = write_tiny_checkpoint(tmp_path / "epoch_0001.pt")    # rotation must not delete it
    before = load_checkpoint(checkpoint)
    entry = load_checkpoint(calibrated[0])["calibration"]
    store_in_checkpoint(checkpoint, entry)
    after = load_checkpoint(checkpoint)
    assert set(after) == set(before) | {"calibration"} and after["calibration"] == entry
    for key, value in before.items():
        if key == "model":
            assert all(torch.equal(value[name], after[key][name]) for name in value)
        else:
            assert after[key] == value, key
    assert sibling.is_file()
    save_checkpoint({**after, "calibration": {"metric": "euclidean", "target_fpr": 0.1, "threshold": 0.3,
                                              "fpr": 0.1, "tpr": 0.5}}, tmp_path / "other.pt", keep=0)
    with pytest.raises(ValueError, match="'euclidean' distance but verify and search use 'cosine'"):
        load_model(tmp_path / "other.pt")


def test_import_stays_light_and_the_embedder_is_exported():
    code = ("import sys, trytry_reid; assert 'torch' not in sys.modules; "
            "from trytry_reid import Embedder; print(Embedder.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "trytry_reid.serving.embedder"


def test_the_documented_tracker_loop_runs_and_keeps_a_person_on_one_track(calibrated):
    """docs/DEPLOY.md's ten-line tracker example, executed as written on three frames of two fixed 'people'."""
    page = (REPO / "docs" / "DEPLOY.md").read_text()
    start = page.index("tracks = {}")
    loop = page[start:page.index("```", start)]
    _, images, embedder = calibrated
    two = [images[0], images[3]]                                   # pids 0 and 1 (write_images: pid = i // 2)
    people = [np.asarray(Image.open(p).convert("RGB"))[..., ::-1] for p in two]   # BGR, as OpenCV gives
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    frame[10:106, 5:53], frame[10:106, 100:148] = people[0], people[1]
    boxes = np.array([[5, 10, 53, 106], [100, 10, 148, 106]])
    assert embedder.embed_boxes(frame, boxes, bgr=True).shape == (2, 32)
    assert embedder.distance(*embedder.embed(two)) > embedder.threshold       # the model tells them apart
    scope = {"np": np, "embedder": embedder, "detections": [(frame, boxes)] * 3}
    exec(compile(loop, "DEPLOY.md tracker loop", "exec"), scope)
    assert sorted(scope["tracks"]) == [0, 1]                     # two people, two tracks, over three frames
