"""ReidModel: output shapes, BNNeck (frozen zero bias), classifier init, embed(), pooling choices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trytry_reid.catalog import UnknownNameError
from trytry_reid.models.backbones import build_backbone
from trytry_reid.models.pooling import GeM
from trytry_reid.models.reid_model import ReidModel, ReidOutput


def tiny_trunk(channels: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())


def images(batch: int = 6) -> torch.Tensor:
    return torch.randn(batch, 3, 8, 4, generator=torch.Generator().manual_seed(0))


def test_output_shapes_with_and_without_embedding():
    out = ReidModel(tiny_trunk(), 8, num_classes=5)(images())
    assert isinstance(out, ReidOutput)
    assert out.features.shape == out.bn_features.shape == (6, 8) and out.logits.shape == (6, 5)
    out = ReidModel(tiny_trunk(), 8, num_classes=5, embedding_dim=16)(images())
    assert out.features.shape == out.bn_features.shape == (6, 16) and out.logits.shape == (6, 5)


def test_real_backbone_end_to_end_shapes():
    trunk, dim = build_backbone("mobilenet_v2", last_stride=1)
    out = ReidModel(trunk, dim, num_classes=3, pooling="gem")(torch.randn(2, 3, 64, 32))
    assert out.features.shape == (2, 1280) and out.logits.shape == (2, 3)


def test_bnneck_normalises_features_and_its_bias_stays_zero():
    model = ReidModel(tiny_trunk(), 8, num_classes=5)
    out = model(images())
    # train mode: bn_features = (features - batch mean) / batch std * weight(=1) + bias(=0)
    mean, var = out.features.mean(0), out.features.var(0, unbiased=False)
    assert torch.allclose(out.bn_features, (out.features - mean) / torch.sqrt(var + 1e-5), atol=1e-4)
    assert not model.bnneck.bias.requires_grad
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0, weight_decay=0.1)
    model(images()).logits.sum().backward()
    optimizer.step()
    assert model.bnneck.bias.grad is None and torch.equal(model.bnneck.bias, torch.zeros(8))


def test_without_bnneck_bn_features_is_features_and_without_classes_no_logits():
    model = ReidModel(tiny_trunk(), 8, num_classes=0, bnneck=False)
    out = model(images())
    assert out.bn_features is out.features and out.logits is None
    assert model.bnneck is None and model.classifier is None


def test_classifier_has_no_bias_and_a_small_init():
    model = ReidModel(tiny_trunk(256), 256, num_classes=200)
    assert model.classifier.bias is None
    assert 0.0009 < model.classifier.weight.std().item() < 0.0011


def test_classifier_init_std_and_bias_are_choices():
    """torchreid's init (std 0.01, zero bias) as an option: the bias exists, starts at zero and adds to the logits."""
    model = ReidModel(tiny_trunk(256), 256, num_classes=200, classifier_std=0.01, classifier_bias=True)
    assert 0.009 < model.classifier.weight.std().item() < 0.011
    assert torch.equal(model.classifier.bias, torch.zeros(200))
    with torch.no_grad():
        model.classifier.bias.fill_(2.0)
    out = model(images())
    assert torch.allclose(out.logits, out.bn_features @ model.classifier.weight.t() + 2.0, atol=1e-5)


def test_logits_come_from_bn_features():
    model = ReidModel(tiny_trunk(), 8, num_classes=5)
    out = model(images())
    assert torch.allclose(out.logits, out.bn_features @ model.classifier.weight.t(), atol=1e-6)


def test_embed_is_the_normalised_bn_feature_in_eval_mode():
    model = ReidModel(tiny_trunk(), 8, num_classes=5, embedding_dim=4).eval()
    model(images(16))  # eval mode: uses running stats, so one batch equals another
    with torch.no_grad():
        embedded = model.embed(images())
        expected = F.normalize(model(images()).bn_features, dim=1)
    assert embedded.shape == (6, 4)
    assert torch.allclose(embedded, expected) and torch.allclose(embedded.norm(dim=1), torch.ones(6))


def test_gem_pooling_matches_its_formula_and_learns_p():
    x = torch.rand(2, 3, 4, 5) + 0.1
    gem = GeM(p=3.0)
    assert torch.allclose(gem(x), (x ** 3).mean(dim=(2, 3)) ** (1 / 3), atol=1e-6)
    assert torch.allclose(GeM(p=1.0)(x), x.mean(dim=(2, 3)), atol=1e-6)
    gem(x).sum().backward()
    assert gem.p.grad is not None
    model = ReidModel(tiny_trunk(), 8, num_classes=2, pooling="gem")
    assert any(p is model.pool.p for p in model.parameters())


def test_bad_arguments_are_refused():
    with pytest.raises(UnknownNameError, match="gem"):
        ReidModel(tiny_trunk(), 8, num_classes=2, pooling="mean")
    with pytest.raises(ValueError, match="embedding_dim"):
        ReidModel(tiny_trunk(), 8, num_classes=2, embedding_dim=-1)
    with pytest.raises(ValueError, match="num_classes"):
        ReidModel(tiny_trunk(), 8, num_classes=-3)
    with pytest.raises(ValueError, match="classifier_std"):
        ReidModel(tiny_trunk(), 8, num_classes=2, classifier_std=0.0)


def bn_trunk() -> nn.Sequential:
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
                         nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()))


def test_frozen_layers_keep_weights_and_batchnorm_statistics_through_training():
    model = ReidModel(bn_trunk(), 8, num_classes=3, frozen_layers=["0"])
    frozen_before = {k: v.clone() for k, v in model.trunk[0].state_dict().items()}
    trained_before = {k: v.clone() for k, v in model.trunk[1].state_dict().items()}
    model.train()
    assert not model.trunk[0][1].training and model.trunk[1][1].training
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(images()).logits, torch.tensor([0, 1, 2, 0, 1, 2])).backward()
        optimizer.step()
    assert all(p.grad is None for p in model.trunk[0].parameters())
    for key, value in model.trunk[0].state_dict().items():
        assert torch.equal(value, frozen_before[key]), key  # weights, running mean / var, batch count
    for key in ("0.weight", "1.running_mean", "1.weight"):
        assert not torch.equal(model.trunk[1].state_dict()[key], trained_before[key]), key


def test_frozen_batchnorm_normalises_with_its_running_statistics_in_train_mode():
    model = ReidModel(bn_trunk(), 8, num_classes=0, frozen_layers=["0"]).train()
    bn = model.trunk[0][1]
    bn.running_mean.fill_(0.5)
    bn.running_var.fill_(4.0)
    x = images()
    conv_out = model.trunk[0][0](x)
    expected = F.relu((conv_out - 0.5) / torch.sqrt(torch.tensor(4.0) + bn.eps) * bn.weight[:, None, None]
                      + bn.bias[:, None, None])
    torch.testing.assert_close(model.trunk[0](x), expected)


def test_frozen_layers_name_trunk_modules():
    trunk, dim = build_backbone("mobilenet_v2")
    model = ReidModel(trunk, dim, num_classes=2, frozen_layers=["features.0", "features.1"])
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    expected = {f"trunk.features.{name}" for name, _ in model.trunk.features[:2].named_parameters()} | {"bnneck.bias"}
    assert frozen == expected
    with pytest.raises(ValueError, match=r"model.frozen_layers: 'features.99' not a module.*features.18"):
        ReidModel(build_backbone("mobilenet_v2")[0], dim, num_classes=2, frozen_layers=["features.99"])
    with pytest.raises(TypeError, match="list of trunk module names"):
        ReidModel(tiny_trunk(), 8, num_classes=2, frozen_layers="0")


def test_frozen_layers_without_frozen_batchnorm_keep_weights_and_adapt_statistics():
    model = ReidModel(bn_trunk(), 8, num_classes=3, frozen_layers=["0"], frozen_batchnorm=False).train()
    bn = model.trunk[0][1]
    assert bn.training
    weights = {k: v.clone() for k, v in model.trunk[0].named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    optimizer.zero_grad()
    F.cross_entropy(model(images()).logits, torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    optimizer.step()
    for key, value in model.trunk[0].named_parameters():
        assert torch.equal(value, weights[key]) and value.grad is None, key
    conv_out = model.trunk[0][0](images())
    torch.testing.assert_close(bn.running_mean, 0.1 * conv_out.mean(dim=(0, 2, 3)))  # momentum 0.1 from 0
