"""extract_features with tiny models on generated images, and the feature file round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from trytry_reid.data.datasets import Record
from trytry_reid.evaluation.feature_file import FeatureFileError, FeatureSet, load_features, save_features
from trytry_reid.evaluation.features import extract_features

from conftest import MARKET_DEVSPLIT, require


class ChannelMean(torch.nn.Module):
    """embed = per-channel mean: invariant to a horizontal flip."""

    def embed(self, x):
        return x.mean(dim=(2, 3))


class LeftColumn(torch.nn.Module):
    """embed = the left-most pixel column of channel 0 (changes under a flip); records its mode."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def embed(self, x):
        self.modes.append((self.training, torch.is_inference_mode_enabled()))
        return x[:, 0, :, 0]


@pytest.fixture()
def records(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for i in range(7):
        path = tmp_path / f"{i:04d}_c{i % 2}.png"
        Image.fromarray(rng.integers(0, 256, (10, 8, 3), dtype=np.uint8)).save(path)   # >= 8 px a side
        out.append(Record(str(path), pid=i // 2 + 1, camid=i % 2))
    return out


def _manual(records, fn):
    to_tensor = T.ToTensor()
    return np.stack([fn(to_tensor(Image.open(r.path).convert("RGB"))[None])[0].numpy() for r in records])


def test_features_in_record_order_across_uneven_batches(records):
    feats = extract_features(LeftColumn(), records, T.ToTensor(), batch_size=3, progress=False)
    assert feats.dtype == np.float32 and feats.shape == (7, 10)
    np.testing.assert_allclose(feats, _manual(records, lambda x: x[:, 0, :, 0]), atol=1e-6)


def test_flip_fusion(records):
    mean = extract_features(ChannelMean(), records, T.ToTensor(), batch_size=4, progress=False)
    fused = extract_features(ChannelMean(), records, T.ToTensor(), batch_size=4, flip=True, progress=False)
    np.testing.assert_allclose(fused, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-6)
    left = extract_features(LeftColumn(), records, T.ToTensor(), flip=True, progress=False)
    expected = _manual(records, lambda x: x[:, 0, :, 0] + x[:, 0, :, -1])
    np.testing.assert_allclose(left, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_inference_mode_and_mode_restored(records, training):
    model = LeftColumn().train(training)
    extract_features(model, records, T.ToTensor(), batch_size=4, progress=False)
    assert model.modes == [(False, True), (False, True)]
    assert model.training is training


def test_mode_restored_on_error_and_empty_records_rejected(records, tmp_path):
    model = LeftColumn().train(True)
    broken = records + [Record(str(tmp_path / "missing.png"), 9, 0)]
    with pytest.raises(OSError, match="missing.png"):
        extract_features(model, broken, T.ToTensor(), batch_size=100, progress=False)
    assert model.training
    with pytest.raises(ValueError, match="no records"):
        extract_features(model, [], T.ToTensor())


def test_real_market_images_with_a_tiny_cnn():
    root = require(MARKET_DEVSPLIT)
    paths = sorted((root / "query").glob("*.jpg"))[:5]
    recs = [Record(str(p), int(p.name.split("_")[0]), int(p.name.split("_")[1][1]) - 1) for p in paths]
    conv = torch.nn.Conv2d(3, 4, 3)
    model = torch.nn.Module()
    model.embed = lambda x: torch.nn.functional.normalize(conv(x).mean(dim=(2, 3)), dim=1)
    transform = T.Compose([T.Resize((32, 16)), T.ToTensor()])
    feats = extract_features(model, recs, transform, batch_size=2, progress=False)
    with torch.no_grad():
        expected = model.embed(torch.stack([transform(Image.open(r.path).convert("RGB")) for r in recs]))
    np.testing.assert_allclose(feats, expected.numpy(), atol=1e-5)


def _arrays(rng):
    return dict(query_features=rng.normal(size=(3, 4)), gallery_features=rng.normal(size=(5, 4)),
                query_pids=[1, 2, 3], gallery_pids=[1, 2, 3, 0, 0], query_camids=[0, 0, 1],
                gallery_camids=[1, 1, 0, 0, 1])


def test_feature_file_round_trip(tmp_path):
    a = _arrays(np.random.default_rng(0))
    sets = {"query": FeatureSet(a["query_features"], ["a.jpg", "b.jpg", "c.jpg"], a["query_pids"], a["query_camids"]),
            "gallery": FeatureSet(a["gallery_features"], [], a["gallery_pids"], a["gallery_camids"])}
    path = save_features(tmp_path / "f.npz", sets)
    with np.load(path) as raw:  # the documented keys, as any toolkit would write them
        assert sorted(raw.files) == sorted(list(a) + ["query_paths"])
    data = load_features(path, ("query", "gallery"))
    np.testing.assert_allclose(data["query"].features, a["query_features"], atol=1e-6)
    np.testing.assert_array_equal(data["gallery"].pids, a["gallery_pids"])
    assert data["query"].paths == ["a.jpg", "b.jpg", "c.jpg"] and data["gallery"].paths == []


def test_feature_file_errors_name_file_and_key(tmp_path):
    arrays = {k: np.asarray(v) for k, v in _arrays(np.random.default_rng(0)).items()}
    missing = dict(arrays)
    del missing["gallery_camids"]
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(FeatureFileError, match=r"missing\.npz.*gallery_camids"):
        load_features(tmp_path / "missing.npz", ("query", "gallery"))
    np.savez(tmp_path / "shape.npz", **{**arrays, "query_pids": np.array([1, 2])})
    with pytest.raises(FeatureFileError, match=r"shape\.npz.*'query_pids'.*length 3"):
        load_features(tmp_path / "shape.npz", ("query", "gallery"))
    np.savez(tmp_path / "pickled.npz", **{**arrays, "query_paths": np.array([object()] * 3)})
    with pytest.raises(FeatureFileError, match="pickled"):
        load_features(tmp_path / "pickled.npz", ("query", "gallery"))
    with pytest.raises(FeatureFileError, match="not found"):
        load_features(tmp_path / "nope.npz", ("query", "gallery"))
