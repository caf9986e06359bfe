"""Crops below the minimum size (8 px a side, data/crop_size.py) are refused wherever pixels become an embedding:
verify, search, index, the HTTP API (422 with the reason) and the Embedder (embed: an error naming the input;
embed_boxes: an error naming the box, or NaN rows with on_small="nan")."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from trytry_reid.engine.checkpoint import load_checkpoint, save_checkpoint
from trytry_reid.jobs.cli import main as cli_main

from data_fixtures import write_image
from test_export import write_images, write_tiny_checkpoint

ENTRY = {"metric": "cosine", "target_fpr": 0.1, "threshold": 0.5, "fpr": 0.1, "tpr": 0.9, "dataset": "hand"}


def calibrated_checkpoint(path, threshold: float = 0.5):
    """A tiny checkpoint with a hand-written operating point (a generous threshold: everything close matches)."""
    write_tiny_checkpoint(path)
    state = load_checkpoint(path)
    state["calibration"] = {**ENTRY, "threshold": threshold}
    save_checkpoint(state, path, keep=0)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    checkpoint = calibrated_checkpoint(root / "tiny.pt", threshold=1.5)
    gallery = write_images(root / "gallery", 6, seed=2)
    tiny = write_image(root / "tiny" / "0000_c1s1_000001_00.png", (120, 60, 30), size=(1, 1))
    return checkpoint, gallery, tiny, root


def test_verify_refuses_a_one_pixel_crop_instead_of_matching_it(setup, capsys):
    checkpoint, gallery, tiny, _ = setup
    assert cli_main(["verify", "--checkpoint", str(checkpoint), str(gallery[0]), str(tiny)]) == 2
    err = capsys.readouterr().err
    assert f"cannot use image '{tiny}': 1x1 pixels is below the minimum crop size of 8x8" in err
    assert len(err.strip().splitlines()) == 2           # the error and the --verbose hint


def test_search_refuses_a_tiny_query_and_index_a_tiny_gallery_image(setup, capsys, tmp_path):
    checkpoint, gallery, tiny, root = setup
    index = tmp_path / "index"
    assert cli_main(["index", "--checkpoint", str(checkpoint), "--images", str(gallery[0].parent), "--out",
                     str(index), "--workers", "0"]) == 0
    capsys.readouterr()
    assert cli_main(["search", "--index", str(index), "--query", str(tiny)]) == 2
    assert "1x1 pixels is below the minimum crop size" in capsys.readouterr().err
    assert cli_main(["index", "--checkpoint", str(checkpoint), "--images", str(tiny.parent), "--out",
                     str(tmp_path / "tiny-index"), "--workers", "0"]) == 2
    assert f"{tiny}: 1x1 pixels is below the minimum crop size" in capsys.readouterr().err


def png_bytes(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 100, 50)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(1, 1), (7, 200), (200, 7)])
def test_the_api_answers_422_with_the_reason_for_a_tiny_upload(setup, size):
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from trytry_reid.serving.app import create_app
    from trytry_reid.serving.index import index_folder
    from trytry_reid.serving.inference import load_model

    checkpoint, gallery, _, root = setup
    index_dir = root / "api-index"
    if not (index_dir / "index.json").is_file():
        index_folder(load_model(checkpoint), gallery[0].parent, index_dir, checkpoint=checkpoint, progress=False)
    client = TestClient(create_app(index_dir, load_model(checkpoint)))
    response = client.post("/api/search", files={"image": ("q.png", png_bytes(size), "image/png")})
    assert response.status_code == 422
    assert f"{size[0]}x{size[1]} pixels is below the minimum crop size of 8x8" in response.json()["detail"]
    assert client.post("/api/search", files={"image": ("q.png", png_bytes((8, 8)), "image/png")}).status_code == 200


def test_the_embedder_names_the_tiny_input(setup):
    from trytry_reid.serving.embedder import Embedder

    embedder = Embedder.from_checkpoint(setup[0])
    ok = np.zeros((64, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="image 1: 1x1 pixels is below the minimum crop size of 8x8") as info:
        embedder.embed([ok, np.zeros((1, 1, 3), np.uint8)])
    assert type(info.value).__name__ == "CropTooSmallError"
    with pytest.raises(ValueError, match="image 0: 3x100 pixels"):
        embedder.embed(Image.new("RGB", (3, 100)))
    with pytest.raises(OSError, match="1x1 pixels is below the minimum"):
        embedder.embed(str(setup[2]))
    assert embedder.embed(np.zeros((8, 8, 3), np.uint8)).shape == (1, 32)


def test_embed_boxes_refuses_tiny_boxes_or_gives_them_nan_rows(setup):
    from trytry_reid.serving.embedder import Embedder

    embedder = Embedder.from_checkpoint(setup[0])
    frame = np.random.default_rng(1).integers(0, 256, size=(120, 200, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 100], [60, 60, 63, 62], [195, 0, 260, 80], [300, 10, 320, 40]])
    with pytest.raises(ValueError, match=r"box 1 \[60.0, 60.0, 63.0, 62.0\] is 3x2 pixels, below the "
                                                r"minimum crop size of 8x8, inside the 200x120 frame.*3 box"):
        embedder.embed_boxes(frame, boxes)
    features = embedder.embed_boxes(frame, boxes, on_small="nan")
    assert features.shape == (4, 32)
    np.testing.assert_array_equal(np.isnan(features[:, 0]), [False, True, True, True])
    assert np.isnan(features[1:]).all()
    np.testing.assert_allclose(features[0], embedder.embed(frame[10:100, 10:50])[0], atol=1e-6)
    assert not embedder.same_person(features[0], features[1], threshold=2.0)    # NaN never matches
    with pytest.raises(ValueError, match="on_small='skip': expected one of error, nan"):
        embedder.embed_boxes(frame, boxes, on_small="skip")
