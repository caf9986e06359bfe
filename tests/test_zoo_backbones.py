"""The OSNet and IBN / fast-reid ResNet trunks, the non-local block, the torchreid-style embedding and the resize
interpolation: shapes, last stride, definitions checked against brute-force references, and training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from trytry_reid.data.transforms import build_test_transform
from trytry_reid.errors import ConfigError
from trytry_reid.jobs.config import load_config
from trytry_reid.models.backbones import build_backbone
from trytry_reid.models.non_local import NonLocal2d
from trytry_reid.models.osnet import WIDTHS
from trytry_reid.models.reid_model import build_reid_model
from trytry_reid.models.resnet_ibn import IBN, ResNetTrunk


@pytest.mark.parametrize("name", ["osnet_x0_25", "osnet_ain_x0_5"])
def test_osnet_trunks_output_stride_16_or_8_with_the_same_weights(name):
    width = name.rsplit("_", 2)[-2] + "_" + name.rsplit("_", 1)[-1]
    strided, channels = build_backbone(name, last_stride=2)
    dense, _ = build_backbone(name, last_stride=1)
    assert channels == WIDTHS[width][-1]
    x = torch.randn(2, 3, 64, 32)
    assert strided.eval()(x).shape == (2, channels, 4, 2) and dense.eval()(x).shape == (2, channels, 8, 4)
    assert {k: v.shape for k, v in strided.state_dict().items()} == {k: v.shape for k, v in dense.state_dict().items()}


def test_osnet_x1_0_has_torchreids_published_size():
    """torchreid's model zoo lists osnet_x1_0 at 2.2 M parameters (trunk + 512-d fc, classifier excluded)."""
    model = build_reid_model("osnet_x1_0", 0, embedding_dim=512, embedding_bn_relu=True, bnneck=False)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 2.2


@pytest.mark.parametrize("name,size", [("resnet50_ibn_a", (4, 2)), ("fastreid_r50_ibn_nl", (8, 4))])
def test_resnet_trunks_follow_last_stride(name, size):
    trunk, channels = build_backbone(name, last_stride=2 if name == "resnet50_ibn_a" else 1)
    assert channels == 2048 and trunk.eval()(torch.randn(1, 3, 128, 64)).shape == (1, 2048, *size)


def test_ibn_normalises_half_the_channels_per_instance_and_half_per_batch():
    ibn = IBN(8).train()
    x = torch.randn(4, 8, 5, 3) * 3 + 2
    out = ibn(x)
    first, rest = out[:, :4], out[:, 4:]
    torch.testing.assert_close(first.mean(dim=(2, 3)), torch.zeros(4, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(rest.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    assert first.mean(dim=(0, 2, 3)).abs().max() < 1e-5 and rest.mean(dim=(2, 3)).abs().max() > 1e-2


def test_non_local_block_matches_its_definition_and_starts_as_identity():
    torch.manual_seed(0)
    block = NonLocal2d(6, inner=3).eval()
    x = torch.randn(2, 6, 3, 4)
    torch.testing.assert_close(block(x), x)                         # W's BatchNorm starts at zero scale
    for parameter in block.parameters():
        parameter.data.normal_()
    block.W[1].running_var.uniform_(0.5, 2.0)
    expected = torch.empty_like(x)
    for b in range(2):
        positions = x[b].flatten(1).T                                # [N, C]
        theta = positions @ block.theta.weight[:, :, 0, 0].T + block.theta.bias
        phi = positions @ block.phi.weight[:, :, 0, 0].T + block.phi.bias
        g = positions @ block.g.weight[:, :, 0, 0].T + block.g.bias
        attended = torch.stack([sum(theta[i] @ phi[j] / 12 * g[j] for j in range(12)) for i in range(12)])
        y = attended @ block.W[0].weight[:, :, 0, 0].T + block.W[0].bias          # [N, C]
        bn = block.W[1]
        y = (y - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        expected[b] = x[b] + y.T.reshape(6, 3, 4)
    torch.testing.assert_close(block(x), expected, atol=1e-4, rtol=1e-4)


def test_non_local_blocks_follow_the_last_blocks_of_stages_2_and_3():
    trunk = ResNetTrunk(50, non_local=True)
    names = {id(module): name for name, module in trunk.named_modules()}
    order = [names[id(module)] for module in trunk.stage(3)]
    assert order == ["layer3.0", "layer3.1", "layer3.2", "layer3.3", "NL_3.0", "layer3.4", "NL_3.1", "layer3.5",
                     "NL_3.2"]
    assert len(trunk.NL_2) == 2 and not hasattr(trunk, "NL_1") and not hasattr(trunk, "NL_4")


def test_the_fastreid_stem_pools_without_padding_rounding_up():
    pad, ceil = ResNetTrunk(50, stem="pad").maxpool, ResNetTrunk(50, stem="ceil").maxpool
    x = torch.arange(1.0, 26.0).view(1, 1, 5, 5)
    assert pad(x)[0, 0].tolist() == [[7.0, 9.0, 10.0], [17.0, 19.0, 20.0], [22.0, 24.0, 25.0]]
    assert ceil(x)[0, 0].tolist() == [[13.0, 15.0], [23.0, 25.0]]


@pytest.mark.parametrize("name", ["osnet_x0_25", "osnet_ain_x0_25", "fastreid_r50_ibn_nl"])
def test_new_trunks_train_every_parameter(name):
    model = build_reid_model(name, 4, last_stride=1, embedding_dim=16, embedding_bn_relu=True).train()
    logits = model(torch.randn(4, 3, 64, 32)).logits
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    trained = [(n, p) for n, p in model.named_parameters() if n != "bnneck.bias"]   # BNNeck's shift is frozen
    assert not [n for n, p in trained if p.grad is None]                              # every layer is used
    still = [n for n, p in trained if not p.grad.any()]
    # Explained zeros only: a non-local block's inner layers wait for W's zero-initialised BatchNorm scale; a gate
    # of one hidden unit (16 channels / 16 at width x0.25) can start dead.
    assert all(".NL_" in n and ".W.1." not in n or ".gate." in n for n in still), still
    assert len(still) <= 0.2 * len(trained)


def test_the_torchreid_embedding_is_linear_batchnorm_relu():
    model = build_reid_model("osnet_x0_25", 0, embedding_dim=8, embedding_bn_relu=True, bnneck=False).eval()
    for bn in (model.embedding_bn,):
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        output = model(x)
        pooled = model.trunk(x).mean(dim=(2, 3))
        linear = pooled @ model.embedding.weight.T + model.embedding.bias
        bn = model.embedding_bn
        reference = F.relu((linear - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    assert output.features.shape == (3, 8) and (output.features >= 0).all()
    torch.testing.assert_close(output.features, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.bn_features, output.features)                # no BNNeck
    with pytest.raises(ValueError, match="embedding_bn_relu needs an embedding layer"):
        build_reid_model("osnet_x0_25", 0, embedding_bn_relu=True)
    with pytest.raises(ConfigError, match="model.embedding_bn_relu"):
        load_config(None, ["data.name=digits", "model.backbone=small_cnn", "model.pretrained=none",
                           "model.embedding_bn_relu=true"])


def test_the_resize_filter_is_the_configured_one():
    image = Image.new("RGB", (61, 131))
    image.putdata([((7 * i) % 256, (13 * i) % 256, (i * i) % 256) for i in range(61 * 131)])
    for name, pil in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
        ours = build_test_transform(64, 32, mean=(0, 0, 0), std=(1, 1, 1), interpolation=name)(image)
        reference = torch.tensor(list(image.resize((32, 64), pil).getdata()), dtype=torch.float32) / 255
        torch.testing.assert_close(ours, reference.T.reshape(3, 64, 32), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="interpolation='nearest'"):
        build_test_transform(64, 32, interpolation="nearest")
    with pytest.raises(ConfigError, match="data.interpolation"):
        load_config(None, ["data.name=digits", "model.backbone=small_cnn", "model.pretrained=none",
                           "data.interpolation=lanczos"])


def test_fastreid_non_local_trunks_take_imagenet_weights_with_identity_blocks(tmp_path, monkeypatch):
    """No ImageNet file holds non-local blocks: the ResNet's file (here a local stand-in at the hub cache path,
    no network) fills the trunk and the blocks start as identities, so the pretrained trunk's output is the
    plain ResNet's."""
    import torchvision

    from trytry_reid.models.backbones import BACKBONES
    from trytry_reid.models.downloads import hub_cache_path

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = torchvision.models.resnet50().eval()
    path = hub_cache_path(BACKBONES["fastreid_r50_nl"].imagenet_url)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    with_nl, _ = build_backbone("fastreid_r50_nl", last_stride=2, pretrained="imagenet")
    plain, _ = build_backbone("fastreid_r50", last_stride=2, pretrained="imagenet")
    assert torch.equal(with_nl.layer3[5].conv2.weight, reference.layer3[5].conv2.weight)
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(with_nl.eval()(x), plain.eval()(x))
