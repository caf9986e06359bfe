"""model.backbone: timm/<name>: timm CNNs as trunks (last feature map, last stride 1 through timm's dilated
output_stride), refused names, timm's own weights cache (offline here: the Hub is switched to offline mode),
and a timm trunk through train -> checkpoint -> load -> ONNX."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from trytry_reid.errors import ConfigError, ReidError
from trytry_reid.jobs.config import load_config
from trytry_reid.models.backbones import build_backbone

timm = pytest.importorskip("timm", reason="the timm extra is not installed (pip install 'trytry-reid[timm]')")

REPO = Path(__file__).resolve().parents[1]
DIGITS = ["data.name=digits", "model.pretrained=none"]


def test_the_trunk_is_timms_last_feature_map_and_last_stride_one_dilates():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 32)
    for last_stride, reduction in ((2, 32), (1, 16)):
        trunk, dim = build_backbone("timm/resnet18", last_stride=last_stride)
        reference = timm.create_model("resnet18", features_only=True, out_indices=(-1,),
                                      **({"output_stride": 16} if last_stride == 1 else {}))
        reference.load_state_dict(trunk.state_dict())
        with torch.no_grad():
            out = trunk.eval()(x)
            assert torch.equal(out, reference.eval()(x)[-1])
        assert dim == 512 and out.shape == (2, 512, 64 // reduction, 32 // reduction)
    assert trunk.layer4[1].conv1.dilation == (2, 2)        # timm keeps the receptive field by dilating


def test_the_config_takes_a_timm_cnn_and_its_normalisation():
    config = load_config(None, [*DIGITS, "model.backbone=timm/resnet18"])
    assert config.data.mean == [0.485, 0.456, 0.406]
    tagged = load_config(None, [*DIGITS, "model.backbone=timm/inception_v3.tf_in1k", "model.last_stride=2"])
    assert tagged.data.mean == [0.5, 0.5, 0.5] and tagged.data.std == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("override, expected", [
    ("model.backbone=timm/vit_small_patch16_224", r"'vision_transformer' model, not a CNN feature extractor"),
    ("model.backbone=timm/resnet18x", r"unknown timm model 'resnet18x'.*Did you mean 'resnet18'"),
    ("model.backbone=timm/resnet18.nope", r"no pretrained tag 'nope'.*a1_in1k"),
    ("model.backbone=timm/densenet121", r"does not support last stride 1.*model\.last_stride=2"),
    ("model.backbone=timmresnet18", r"model\.backbone.*timmresnet18"),
])
def test_what_is_not_a_usable_timm_cnn_is_refused_before_training(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [*DIGITS, override, "model.last_stride=1"])


def test_without_timm_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)          # import timm raises ImportError
    with pytest.raises(ReidError, match=r"pip install 'trytry-reid\[timm\]'"):
        build_backbone("timm/resnet18")
    with pytest.raises(ConfigError, match=r"pip install 'trytry-reid\[timm\]'"):
        load_config(None, [*DIGITS, "model.backbone=timm/resnet18"])


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """The Hugging Face Hub in offline mode with an empty cache under tmp_path (and an empty torch hub)."""
    constants = pytest.importorskip("huggingface_hub.constants")
    cache = tmp_path / "hf-hub"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return cache


def test_offline_timm_weights_fail_in_one_line_naming_the_repo_and_the_cache(offline_hub):
    with pytest.raises(ReidError) as error:
        build_backbone("timm/resnet18", pretrained="imagenet")
    message = str(error.value)
    assert "\n" not in message and "https://huggingface.co/timm/resnet18.a1_in1k" in message
    assert str(offline_hub) in message


def test_timm_weights_come_from_timms_cache(offline_hub):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    full = {key: value.contiguous() for key, value in timm.create_model("resnet18").state_dict().items()}
    repo = offline_hub / "models--timm--resnet18.a1_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(full, str(repo / "snapshots" / commit / "model.safetensors"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    trunk, _ = build_backbone("timm/resnet18", pretrained="imagenet")
    for key in ("conv1.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(trunk.state_dict()[key], full[key])


def test_a_timm_state_dict_file_loads_without_its_classifier(tmp_path):
    torch.manual_seed(2)
    full = timm.create_model("resnet18").state_dict()
    torch.save(full, tmp_path / "resnet18.pth")
    trunk, _ = build_backbone("timm/resnet18", pretrained=str(tmp_path / "resnet18.pth"))
    assert torch.equal(trunk.state_dict()["layer3.0.conv1.weight"], full["layer3.0.conv1.weight"])


def test_a_timm_trunk_trains_saves_reloads_fine_tunes_and_exports(tmp_path):
    from trytry_reid.jobs.cli import main as cli_main
    from trytry_reid.serving.export import check_onnx, export_onnx
    from trytry_reid.serving.inference import load_model

    from test_export import write_images

    run = tmp_path / "run"
    backbone = "timm/mobilenetv3_small_100"
    assert cli_main(["train", "--config", str(REPO / "config" / "demo_digits.yml"), f"model.backbone={backbone}",
                     "model.last_stride=1", "train.epochs=1", "train.steps_per_epoch=1", "data.batch_p=4",
                     "data.batch_k=2", "test.figures=false", "test.ranking_queries=0", f"output_dir={run}"]) == 0
    checkpoint = run / "checkpoints" / "last.pt"
    loaded = load_model(checkpoint)
    assert loaded.config["model"]["backbone"] == backbone
    trunk, _ = build_backbone(backbone, last_stride=1, pretrained=str(checkpoint))
    for key, value in loaded.model.trunk.state_dict().items():
        assert torch.equal(trunk.state_dict()[key], value), key
    report = check_onnx(export_onnx(loaded, tmp_path / "model.onnx"), loaded,   # raises beyond 1e-4
                        write_images(tmp_path / "images", 6, size=(32, 32)))
    assert report["tolerance"] == 1e-4 and report["max_abs_diff"] <= 1e-4
