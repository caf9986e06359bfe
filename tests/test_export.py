"""ONNX export: a real (tiny) checkpoint exported, run with onnxruntime, compared with PyTorch."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trytry_reid.models.reid_model import ReidModel
from trytry_reid.serving.export import OnnxParityError, check_onnx, export_onnx, ranking_agreement, read_preprocessing
from trytry_reid.serving.inference import load_model

from conftest import MARKET_DEVSPLIT, require

HEIGHT, WIDTH = 64, 32
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_tiny_checkpoint(path: Path, embedding_dim: int = 32, seed: int = 0, backbone: str = "resnet18") -> Path:
    """A checkpoint as `train` writes it (contract in docs/ARCHITECTURE.md), with a resnet18 trunk (or
    ``backbone``: small_cnn makes a checkpoint of a few hundred KB, quick to load and write in child processes).

    BN running statistics are randomised so the BNNeck is not an identity and eval mode matters.
    """
    from trytry_reid.models import build_reid_model

    config = {"model": {"backbone": backbone, "last_stride": 2, "embedding_dim": embedding_dim,
                        "bnneck": True, "pooling": "avg"},
              "data": {"height": HEIGHT, "width": WIDTH, "mean": list(MEAN), "std": list(STD)}}
    torch.manual_seed(seed)
    model: ReidModel = build_reid_model(num_classes=5, **config["model"])
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = {"model": model.state_dict(), "config": config, "num_classes": 5, "epoch": 1, "step": 10,
             "metrics": {}}
    torch.save(state, path)
    return path


def write_images(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (48, 96)) -> list[Path]:
    """Random-texture RGB crops with Market-style names (pid = i // 2, camera = i % 3 + 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = rng.integers(0, 256, size=(6, 3, 3), dtype=np.uint8)
        pixels = np.kron(base, np.ones((size[1] // 6, size[0] // 3, 1), dtype=np.uint8))
        path = folder / f"{i // 2:04d}_c{i % 3 + 1}s1_{i:06d}_00.jpg"
        Image.fromarray(pixels).save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    # Skipped here, not at import: test_app and test_browser import this module's helpers without onnx.
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("export")
    loaded = load_model(write_tiny_checkpoint(root / "tiny.pt"))
    return loaded, export_onnx(loaded, root / "model.onnx"), write_images(root / "images", 12)


def test_onnx_matches_pytorch_on_images_and_has_dynamic_batch(exported):
    loaded, onnx_path, images = exported
    assert not loaded.model.training, "export must leave the model in eval mode"
    report = check_onnx(onnx_path, loaded, images)
    assert report["max_abs_diff"] <= 1e-4
    assert report["num_queries"] == 12 and report["top10_equivalent"] == 1.0
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 3, HEIGHT, WIDTH)
        out = session.run(None, {"images": x.numpy()})[0]
        with torch.inference_mode():
            expected = loaded.model.embed(x).numpy()
        assert out.shape == (batch, 32)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(out, expected, atol=1e-4)


def test_preprocessing_is_written_into_the_onnx_metadata(exported):
    loaded, onnx_path, _ = exported
    meta = read_preprocessing(onnx_path)
    assert (meta["height"], meta["width"]) == (str(HEIGHT), str(WIDTH))
    assert json.loads(meta["mean"]) == list(MEAN) and json.loads(meta["std"]) == list(STD)
    assert meta["layout"] == "NCHW" and meta["color"] == "RGB"


def test_a_model_that_differs_from_the_file_is_reported(exported):
    loaded, onnx_path, images = exported
    other = copy.deepcopy(loaded)
    with torch.no_grad():
        other.model.embedding.weight.add_(0.05 * torch.randn_like(other.model.embedding.weight))
    with pytest.raises(OnnxParityError, match="exceeds the tolerance"):
        check_onnx(onnx_path, other, images)


def test_metadata_mismatch_is_reported(exported):
    loaded, onnx_path, images = exported
    loaded_wrong = dataclasses.replace(loaded, height=HEIGHT * 2)
    with pytest.raises(OnnxParityError, match="height"):
        check_onnx(onnx_path, loaded_wrong, images)


def test_ranking_agreement_tolerates_near_ties_only():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(4, 8))
    g = rng.normal(size=(30, 8))
    same = ranking_agreement(q, g, q, g, 10, 1e-6, same_set=False)
    assert same == {"k": 10, "identical": 1.0, "equivalent": 1.0}
    scrambled = ranking_agreement(q, g, q, g[::-1].copy(), 10, 1e-6, same_set=False)
    assert scrambled["equivalent"] < 1.0
    g_tied = np.concatenate([g, g[:1]])            # an exact duplicate: swapping it is a tie, not an error
    swapped = np.concatenate([g[:1], g[1:], g[:1]])
    result = ranking_agreement(q, g_tied, q, swapped, 10, 1e-9, same_set=False)
    assert result["equivalent"] == 1.0


def test_devsplit_query_images_match(exported):
    query_dir = require(MARKET_DEVSPLIT / "query")
    loaded, onnx_path, _ = exported
    paths = sorted(query_dir.glob("*.jpg"))[:24]
    gallery = sorted((MARKET_DEVSPLIT / "bounding_box_test").glob("*.jpg"))[:36]
    report = check_onnx(onnx_path, loaded, paths, gallery_paths=gallery)
    assert report["num_queries"] == 24 and report["num_gallery"] == 36
    assert report["max_abs_diff"] <= 1e-4 and report["top10_equivalent"] == 1.0


def test_a_failed_export_check_leaves_no_unchecked_file(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from trytry_reid.jobs.cli import main as cli_main

    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt")
    images = write_images(tmp_path / "images", 4)
    images[2].write_bytes(images[2].read_bytes()[:200])               # a truncated JPEG
    out = tmp_path / "out" / "m.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--check-images", str(tmp_path / "images")]
    assert cli_main(args) == 2
    assert str(images[2]) in capsys.readouterr().err
    assert not out.exists() and list(out.parent.iterdir()) == []      # nothing unchecked, no temporary file
    out.write_bytes(b"an earlier, checked export")
    assert cli_main(args) == 2
    assert out.read_bytes() == b"an earlier, checked export"          # not replaced by an unchecked one
    images[2].unlink()
    assert cli_main(args) == 0
    assert read_preprocessing(out)["height"] == str(HEIGHT)
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]
