"""model.pretrained files fit the backbone or are refused: nothing is half-loaded, only a classifier head and
num_batches_tracked may differ (and the log says so); the usual wrappers and trytry-reid checkpoints load."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision

from trytry_reid.errors import ReidError
from trytry_reid.models.backbones import BACKBONES, build_backbone
from trytry_reid.models.reid_model import build_reid_model


def save(tmp_path, obj, name="weights.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def mobilenet_state(seed=0):
    """A random mobilenet_v2 trunk's state dict, as torchvision names it, plus its ImageNet classifier."""
    torch.manual_seed(seed)
    trunk, _ = BACKBONES["mobilenet_v2"].build(2)
    state = dict(trunk.state_dict())
    state["classifier.1.weight"] = torch.zeros(1000, 1280)
    state["classifier.1.bias"] = torch.zeros(1000)
    return state


def assert_loaded(trunk, state, prefix=""):
    own = trunk.state_dict()
    for key in ("features.0.0.weight", "features.18.1.running_var", "features.14.conv.1.0.weight"):
        assert torch.equal(own[key], state[prefix + key]), key


def test_another_backbones_weights_are_refused_naming_how_much_matched(tmp_path):
    """A ResNet-18 file given to mobilenet_v2 loaded nothing and training went on from random init."""
    path = save(tmp_path, torchvision.models.resnet18(weights=None).state_dict())
    with pytest.raises(ReidError) as error:
        build_backbone("mobilenet_v2", pretrained=str(path))
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "mobilenet_v2" in message
    assert "0 of its 122 tensors" in message
    assert "features.0.0.weight" in message      # a missing key
    assert "conv1.weight" in message             # an unexpected key
    assert "fc.weight" not in message            # the classifier head is an allowed difference, not a reason


def test_a_file_missing_one_tensor_is_refused(tmp_path):
    state = mobilenet_state()
    del state["features.1.conv.1.weight"]
    with pytest.raises(ReidError, match=r"features\.1\.conv\.1\.weight"):
        build_backbone("mobilenet_v2", pretrained=str(save(tmp_path, state)))


def test_a_file_with_an_unexpected_tensor_is_refused(tmp_path):
    state = mobilenet_state()
    state["features.19.0.weight"] = torch.zeros(3)
    with pytest.raises(ReidError, match=r"features\.19\.0\.weight"):
        build_backbone("mobilenet_v2", pretrained=str(save(tmp_path, state)))


def test_shape_mismatches_are_named_with_both_shapes(tmp_path):
    state = mobilenet_state()
    state["features.0.0.weight"] = torch.zeros(32, 3, 5, 5)
    with pytest.raises(ReidError, match=r"features\.0\.0\.weight.*\(32, 3, 5, 5\).*\(32, 3, 3, 3\)"):
        build_backbone("mobilenet_v2", pretrained=str(save(tmp_path, state)))


def test_classifier_head_and_batch_counters_are_skipped_and_logged(tmp_path, caplog):
    state = mobilenet_state()
    for key in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[key]
    with caplog.at_level(logging.INFO, logger="trytry_reid"):
        trunk, _ = build_backbone("mobilenet_v2", pretrained=str(save(tmp_path, state)))
    assert_loaded(trunk, state)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "classifier.1.weight" in caplog.text and "num_batches_tracked" in caplog.text
    loaded = sum(not key.endswith("num_batches_tracked") for key in trunk.state_dict())
    assert f"{loaded} tensors" in caplog.text


@pytest.mark.parametrize("wrap", [
    lambda s: {"state_dict": s, "epoch": 3, "optimizer": {}},
    lambda s: {"model": s, "iteration": 9},
    lambda s: {f"module.{k}": v for k, v in s.items()},
    lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}},
], ids=["state_dict", "model", "module-prefix", "state_dict+module"])
def test_the_usual_wrappers_load(tmp_path, wrap):
    state = mobilenet_state()
    trunk, _ = build_backbone("mobilenet_v2", pretrained=str(save(tmp_path, wrap(state))))
    assert_loaded(trunk, state)


def reid_checkpoint(tmp_path, backbone="mobilenet_v2", name="best.pt", seed=1):
    """A checkpoint as `train` writes it: the ReidModel's state dict under "model", the run config."""
    torch.manual_seed(seed)
    model = build_reid_model(backbone, num_classes=7, embedding_dim=16, last_stride=2)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
    config = {"model": {"backbone": backbone, "last_stride": 2, "embedding_dim": 16, "pretrained": "imagenet"},
              "data": {"height": 64, "width": 32, "mean": [0.5] * 3, "std": [0.25] * 3}}
    state = {"model": model.state_dict(), "config": config, "num_classes": 7, "epoch": 4, "step": 40,
             "metrics": {}, "rng": {"torch": torch.get_rng_state()}}
    return save(tmp_path, state, name), model


def test_a_trytry_reid_checkpoint_gives_its_trunk(tmp_path, caplog):
    path, model = reid_checkpoint(tmp_path)
    with caplog.at_level(logging.INFO, logger="trytry_reid"):
        trunk, _ = build_backbone("mobilenet_v2", last_stride=1, pretrained=str(path))
    for key, value in model.trunk.state_dict().items():
        assert torch.equal(trunk.state_dict()[key], value), key
    assert "checkpoint" in caplog.text and "embedding" in caplog.text   # the head it leaves behind is named


def test_a_checkpoint_of_another_backbone_is_refused_naming_both(tmp_path):
    path, _ = reid_checkpoint(tmp_path, backbone="resnet18")
    with pytest.raises(ReidError, match=r"resnet18.*mobilenet_v2|mobilenet_v2.*resnet18"):
        build_backbone("mobilenet_v2", pretrained=str(path))


def test_the_config_check_refuses_a_checkpoint_of_another_backbone(tmp_path):
    from trytry_reid.errors import ConfigError
    from trytry_reid.jobs.config import load_config

    path, _ = reid_checkpoint(tmp_path, backbone="resnet18")
    with pytest.raises(ConfigError, match=r"model\.pretrained") as error:
        load_config(None, ["data.name=digits", "model.backbone=mobilenet_v2", f"model.pretrained={path}"])
    assert "'resnet18'" in str(error.value) and "'mobilenet_v2'" in str(error.value)


def test_fine_tuning_a_checkpoint_takes_its_normalisation(tmp_path):
    from trytry_reid.jobs.config import load_config

    path, _ = reid_checkpoint(tmp_path)
    config = load_config(None, ["data.name=digits", "model.backbone=mobilenet_v2", f"model.pretrained={path}"])
    assert (config.data.mean, config.data.std) == ([0.5] * 3, [0.25] * 3)
    explicit = load_config(None, ["data.name=digits", "model.backbone=mobilenet_v2", f"model.pretrained={path}",
                                  "data.mean=[0.4,0.4,0.4]"])
    assert explicit.data.mean == [0.4] * 3
