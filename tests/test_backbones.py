"""Backbone trunks: output sizes with last stride 1 and 2, and pretrained weight files (downloads:
test_weight_downloads.py; fit-or-refuse: test_pretrained_fit.py)."""

from __future__ import annotations

import logging

import pytest
import torch

from trytry_reid.catalog import UnknownNameError
from trytry_reid.models.backbones import BACKBONES, build_backbone

from conftest import MOBILENET_WEIGHTS, require

# name -> (feature channels, total stride with last_stride 2)
EXPECTED = {"resnet18": (512, 32), "resnet34": (512, 32), "resnet50": (2048, 32), "resnet101": (2048, 32),
            "mobilenet_v2": (1280, 32), "mobilenet_v2_ibn": (1280, 32), "small_cnn": (128, 4)}
# OSNet (stride 16: its last stage keeps its input size), the IBN-a ResNets and fast-reid's ResNets
EXPECTED |= {name: ({"x1_0": 512, "x0_75": 384, "x0_5": 256, "x0_25": 128}[name[-5:].lstrip("_")], 16)
             for name in BACKBONES if name.startswith("osnet_")}
EXPECTED |= {name: (2048, 32) for name in BACKBONES if name.endswith("_ibn_a") or name.startswith("fastreid_")}


@pytest.fixture
def zero_init(monkeypatch):
    """Make torch's initialisers fill zeros: shape tests then skip the costly random init of deep nets."""

    def fill_zeros(tensor, *args, **kwargs):
        with torch.no_grad():
            return tensor.zero_()

    for name in ("kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_", "constant_", "ones_", "zeros_"):
        monkeypatch.setattr(torch.nn.init, name, fill_zeros)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_last_stride_one_doubles_the_feature_map(name, zero_init):
    assert set(BACKBONES) == set(EXPECTED)
    channels, stride = EXPECTED[name]
    shapes = {}
    for last_stride in (1, 2):
        trunk, dim = BACKBONES[name].build(last_stride)
        with torch.no_grad():
            shapes[last_stride] = tuple(trunk.eval()(torch.zeros(1, 3, 64, 32)).shape)
        assert dim == channels
    assert shapes[2] == (1, channels, 64 // stride, 32 // stride)
    assert shapes[1] == (1, channels, 2 * 64 // stride, 2 * 32 // stride)


def test_trunk_runs_for_real_and_has_no_classifier():
    trunk, dim = build_backbone("resnet18", last_stride=1)
    with torch.no_grad():
        out = trunk.eval()(torch.randn(1, 3, 64, 32))
    assert out.shape == (1, dim, 4, 2) and torch.isfinite(out).all()
    assert not any(key.startswith(("fc.", "avgpool")) for key in trunk.state_dict())
    assert trunk.layer4[0].downsample[0].stride == (1, 1)


def test_bad_names_and_strides_are_refused():
    with pytest.raises(UnknownNameError, match="resnet50"):
        build_backbone("resnet5")
    with pytest.raises(ValueError, match="last_stride"):
        build_backbone("resnet18", last_stride=3)


def test_shared_mobilenet_weights_load(caplog, tmp_path):
    path = require(MOBILENET_WEIGHTS)
    with caplog.at_level(logging.WARNING):
        trunk, dim = build_backbone("mobilenet_v2", last_stride=1, pretrained=str(path))
    assert dim == 1280
    assert not caplog.records  # only the classifier is absent from the file, and that is expected
    state = torch.load(path, weights_only=True)
    own = trunk.state_dict()
    for key in ("features.0.0.weight", "features.18.1.running_mean", "features.14.conv.1.0.weight"):
        assert torch.equal(own[key], state[key])


def mobilenet_state_file(tmp_path, name="weights.pth", prefix="", edit=None):
    """Save a random mobilenet_v2 trunk's state dict (+ an ImageNet classifier) and return (path, state)."""
    trunk, _ = BACKBONES["mobilenet_v2"].build(2)
    state = {prefix + key: value for key, value in trunk.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(1000, 1280)
    if edit:
        edit(state)
    path = tmp_path / name
    torch.save(state, path)
    return path, state


def test_trunk_prefixed_keys_load_and_overwrite_the_weights(tmp_path, caplog):
    path, state = mobilenet_state_file(tmp_path, prefix="trunk.")
    with caplog.at_level(logging.WARNING):
        trunk, _ = build_backbone("mobilenet_v2", pretrained=str(path))
    assert not caplog.records
    assert torch.equal(trunk.state_dict()["features.3.conv.0.0.weight"], state["trunk.features.3.conv.0.0.weight"])


def test_missing_and_unexpected_keys_are_refused(tmp_path):
    def edit(state):
        del state["features.1.conv.1.weight"]
        state["extra.weight"] = torch.zeros(3)

    path, state = mobilenet_state_file(tmp_path, edit=edit)
    with pytest.raises(ValueError, match="does not fit") as error:
        build_backbone("mobilenet_v2", pretrained=str(path))
    message = str(error.value)
    assert "features.1.conv.1.weight" in message and "extra.weight" in message
    assert "classifier.1.weight" not in message


def test_shape_mismatch_is_refused_with_key_and_shapes(tmp_path):
    path, _ = mobilenet_state_file(tmp_path, edit=lambda s: s.update({"features.0.0.weight": torch.zeros(32, 3, 5, 5)}))
    with pytest.raises(ValueError, match=r"features\.0\.0\.weight.*\(32, 3, 5, 5\).*\(32, 3, 3, 3\)"):
        build_backbone("mobilenet_v2", pretrained=str(path))


def test_unreadable_or_wrong_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="'none', 'imagenet'"):
        build_backbone("mobilenet_v2", pretrained=str(tmp_path / "absent.pth"))
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list"):
        build_backbone("mobilenet_v2", pretrained=str(tmp_path / "list.pth"))
    torch.save({"model": {"a": torch.zeros(1)}, "epoch": 3}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match=r"does not fit.*0 of its 1 tensors.*unexpected 1: a\b"):
        build_backbone("mobilenet_v2", pretrained=str(tmp_path / "ckpt.pth"))
    torch.save({"weights": [torch.zeros(1)], "epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="key 'weights' holds a list.*'state_dict' / 'model'"):
        build_backbone("mobilenet_v2", pretrained=str(tmp_path / "other.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        build_backbone("mobilenet_v2", pretrained=str(tmp_path / "junk.pth"))


def test_a_toy_backbone_joins_through_its_catalog_entry_alone(monkeypatch):
    """One BACKBONES entry is all a new trunk needs: the config accepts it, takes its normalisation as the
    default, the model builds from it, and asking for ImageNet weights it does not have is a clear error."""
    from trytry_reid.errors import ConfigError
    from trytry_reid.jobs import builders
    from trytry_reid.jobs.config import load_config
    from trytry_reid.models.backbones import Backbone

    def toy_trunk(last_stride: int = 2):
        return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=last_stride, padding=1), torch.nn.ReLU()), 6

    monkeypatch.setitem(BACKBONES, "toy", Backbone(toy_trunk, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2)))
    config = load_config(None, ["data.name=digits", "model.backbone=toy", "model.pretrained=none"])
    assert (config.data.mean, config.data.std) == ([0.5, 0.4, 0.3], [0.2, 0.2, 0.2])
    model = builders.build_model(config, num_classes=3)
    assert model.output_dim == 6 and model(torch.zeros(2, 3, 16, 8)).logits.shape == (2, 3)
    with pytest.raises(ConfigError, match="model.backbone.*toy"):
        load_config(None, ["data.name=digits", "model.backbone=tyo"])
    with pytest.raises(ValueError, match="'toy' has no ImageNet weights"):
        build_backbone("toy", pretrained="imagenet")
