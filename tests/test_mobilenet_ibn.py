"""IBN-a MobileNetV2: half of the early blocks' first BatchNorm channels instance-normalised, checked against
the definitions of instance and batch normalisation written out here; the ImageNet weights still load."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from trytry_reid.models.backbones import BACKBONES, build_backbone
from trytry_reid.models.mobilenet_ibn import IBN_BLOCKS, HalfInstanceNorm2d
from trytry_reid.models.reid_model import build_reid_model

from conftest import MOBILENET_WEIGHTS, require


def random_bn(channels: int, seed: int) -> nn.BatchNorm2d:
    generator = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        for tensor in (bn.weight, bn.bias, bn.running_mean):
            tensor.copy_(torch.randn(channels, generator=generator))
        bn.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
    return bn


def reference(x: torch.Tensor, bn: nn.BatchNorm2d, n: int, training: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                                      torch.Tensor]:
    """(output, new running mean, new running var) from the definitions, for the state ``bn`` has before."""
    w, b, eps = bn.weight.view(1, -1, 1, 1), bn.bias.view(1, -1, 1, 1), bn.eps
    inst = x[:, :n]
    inst_out = (inst - inst.mean(dim=(2, 3), keepdim=True)) / torch.sqrt(
        inst.var(dim=(2, 3), unbiased=False, keepdim=True) + eps)
    rest = x[:, n:]
    mean, var = bn.running_mean[n:].clone(), bn.running_var[n:].clone()
    new_mean, new_var = bn.running_mean.clone(), bn.running_var.clone()
    if training:
        batch_mean, batch_var = rest.mean(dim=(0, 2, 3)), rest.var(dim=(0, 2, 3), unbiased=False)
        count = rest.numel() / rest.shape[1]
        new_mean[n:] = 0.9 * mean + 0.1 * batch_mean
        new_var[n:] = 0.9 * var + 0.1 * batch_var * count / (count - 1)
        mean, var = batch_mean, batch_var
    rest_out = (rest - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + eps)
    return torch.cat([inst_out, rest_out], dim=1) * w + b, new_mean, new_var


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("channels", [2, 7, 96])
def test_half_instance_norm_matches_the_definitions(training, channels):
    bn = random_bn(channels, seed=channels)
    x = torch.randn(3, channels, 5, 4, generator=torch.Generator().manual_seed(1)) * 3 + 1
    expected, new_mean, new_var = reference(x, bn, channels // 2, training)
    layer = HalfInstanceNorm2d(bn).train(training)
    with torch.no_grad():
        out = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.running_mean, new_mean)
    torch.testing.assert_close(layer.running_var, new_var)
    assert int(layer.num_batches_tracked) == int(training)


def test_the_instance_half_ignores_each_images_own_colour_scale():
    """Instance normalisation's point: a per-image, per-channel gain and offset (light, colour cast) on its
    channels leaves them unchanged; the batch-normalised half in eval mode does see it."""
    layer = HalfInstanceNorm2d(random_bn(8, seed=3)).eval()
    x = torch.randn(2, 8, 6, 5)
    gain, offset = torch.rand(2, 8, 1, 1) + 0.5, torch.randn(2, 8, 1, 1)
    with torch.no_grad():
        before, after = layer(x), layer(x * gain + offset)
    torch.testing.assert_close(after[:, :4], before[:, :4], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(after[:, 4:], before[:, 4:], atol=1e-2)


def test_ibn_trunk_has_the_plain_keys_and_its_early_blocks_replaced():
    plain, _ = BACKBONES["mobilenet_v2"].build(1)
    ibn, dim = BACKBONES["mobilenet_v2_ibn"].build(1)
    assert dim == 1280
    assert {k: v.shape for k, v in ibn.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    replaced = sorted(name for name, m in ibn.named_modules() if isinstance(m, HalfInstanceNorm2d))
    assert replaced == sorted(f"features.{i}.conv.0.1" for i in IBN_BLOCKS)
    assert ibn.features[14].conv[1][0].stride == (1, 1)


def test_imagenet_weights_load_into_the_ibn_trunk_unchanged(caplog):
    path = require(MOBILENET_WEIGHTS)
    with caplog.at_level(logging.WARNING):
        trunk, _ = build_backbone("mobilenet_v2_ibn", last_stride=1, pretrained=str(path))
    assert not caplog.records  # every key of the file fits, none is missing
    state = torch.load(path, weights_only=True)
    own = trunk.state_dict()
    for key in own:
        assert torch.equal(own[key], state[key]), key
    # the instance-normalised channels start from the ImageNet BatchNorm's affine of those channels
    layer = trunk.features[2].conv[0][1]
    assert isinstance(layer, HalfInstanceNorm2d) and layer.in_channels == 48
    assert torch.equal(layer.weight[:48], state["features.2.conv.0.1.weight"][:48])


def test_an_ibn_reid_model_trains_and_reloads(tmp_path):
    torch.manual_seed(0)
    model = build_reid_model("mobilenet_v2_ibn", num_classes=3, last_stride=1, bnneck=False)
    images = torch.randn(4, 3, 64, 32)
    out = model.train()(images)
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0])).backward()
    first = model.trunk.features[1].conv[0][1]
    assert first.weight.grad is not None and first.weight.grad[: first.in_channels].abs().sum() > 0
    torch.save(model.state_dict(), tmp_path / "m.pt")
    again = build_reid_model("mobilenet_v2_ibn", num_classes=3, last_stride=1, bnneck=False)
    again.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(again.eval().embed(images), model.eval().embed(images))


def test_the_ibn_embedding_exports_to_onnx(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = build_reid_model("mobilenet_v2_ibn", num_classes=0, last_stride=1, bnneck=False).eval()
    images = torch.randn(2, 3, 64, 32)

    class Embed(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.embed(x)

    path = tmp_path / "ibn.onnx"
    with torch.no_grad():
        torch.onnx.export(Embed().eval(), (images,), str(path), input_names=["images"], dynamo=False,
                          opset_version=17)
        expected = model.embed(images).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})[0]
    assert abs(got - expected).max() < 1e-4
