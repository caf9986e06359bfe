"""The loss catalog drives the builders and the config checks: a toy learnable loss joins through its LOSSES
entry and its config section alone, and each learnable loss parameter is trained by the right optimizer."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trytry_reid.engine import FitOptions, TrainObjects, train_step
from trytry_reid.errors import ConfigError
from trytry_reid.jobs import builders
from trytry_reid.jobs.config import load_config
from trytry_reid.jobs.config_checks import check_values
from trytry_reid.losses.criterion import LOSSES, LossEntry

NUM_CLASSES = 4
LR = 1e-3


@dataclass
class ProxyConfig:
    weight: float = 1.0
    scale: float = 10.0


class ProxyLoss(nn.Module):
    """A toy proxy loss: cross-entropy over scaled cosine similarities to one learnable proxy per class."""

    def __init__(self, num_classes: int, feature_dim: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.proxies = nn.Parameter(torch.randn(num_classes, feature_dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        logits = self.scale * F.normalize(features, dim=1) @ F.normalize(self.proxies, dim=1).T
        return F.cross_entropy(logits, labels), {}


@pytest.fixture
def config_with_proxy(monkeypatch):
    config = load_config(None, ["data.name=digits", "model.backbone=small_cnn", "model.pretrained=none",
                                "data.height=16", "data.width=16", "loss.center.weight=0.5", f"train.lr={LR}"])
    monkeypatch.setitem(LOSSES, "proxy", LossEntry(
        lambda num_classes, feature_dim, **params: ProxyLoss(num_classes, feature_dim, **params), "features"))
    config.loss.proxy = ProxyConfig()  # its config section (a real one would be a field of config.LossConfig)
    return config


def build(config):
    torch.manual_seed(0)
    model = builders.build_model(config, NUM_CLASSES)
    criterion = builders.build_criterion(config, NUM_CLASSES, model.output_dim)
    optimizer = builders.build_optimizer(config, model, criterion)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return TrainObjects(model, criterion, optimizer, scheduler, builders.build_loss_optimizer(criterion))


def parameter_ids(optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def test_a_toy_loss_joins_through_its_catalog_entry_and_config_section(config_with_proxy):
    objects = build(config_with_proxy)
    assert [term.name for term in objects.criterion.terms] == ["cross_entropy", "triplet", "center", "proxy"]
    proxies = objects.criterion.modules_by_name["proxy"].proxies
    centers = objects.criterion.modules_by_name["center"].centers
    assert id(proxies) in parameter_ids(objects.optimizer) and id(proxies) not in parameter_ids(objects.loss_optimizer)
    assert id(centers) in parameter_ids(objects.loss_optimizer) and id(centers) not in parameter_ids(objects.optimizer)
    config_with_proxy.loss.proxy.weight = -1.0
    with pytest.raises(ConfigError, match="loss.proxy.weight"):
        check_values(config_with_proxy)  # the weight checks follow the catalog too


def test_centers_move_at_their_own_rate_and_proxies_with_the_model(config_with_proxy):
    objects = build(config_with_proxy)
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(NUM_CLASSES).repeat_interleave(2)
    center_term = objects.criterion.modules_by_name["center"]
    reference = copy.deepcopy(objects.model)  # the same forward, to get d(center loss)/d(centers) by hand
    features = reference(images).features.detach()
    expected_grad = torch.zeros_like(center_term.centers)
    expected_grad.index_add_(0, labels, 2 * (center_term.centers.detach()[labels] - features) / len(labels))
    centers_before = center_term.centers.detach().clone()
    proxies_before = objects.criterion.modules_by_name["proxy"].proxies.detach().clone()
    train_step(objects, images, labels, FitOptions(epochs=1, steps_per_epoch=1), step=1)
    # SGD at lr 0.5 on the gradient divided by the term weight: the weight (0.5 here) cancels out
    moved = center_term.centers.detach() - centers_before
    assert torch.allclose(moved, -0.5 * expected_grad, atol=1e-5)
    # Adam's first step moves every proxy entry by about the model's lr, whatever the gradient's size
    step = (objects.criterion.modules_by_name["proxy"].proxies.detach() - proxies_before).abs()
    assert step.max().item() == pytest.approx(LR, rel=0.01)


def test_a_center_only_objective_is_refused_by_name():
    with pytest.raises(ConfigError, match="loss.cross_entropy.weight.*one of cross_entropy, triplet"):
        load_config(None, ["data.name=digits", "loss.cross_entropy.weight=0", "loss.triplet.weight=0",
                           "loss.center.weight=0.1"])


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_betas_reach_the_optimizer(config_with_proxy, name):
    """train.adam_betas sets both coefficients (torchreid trains with beta2 = 0.99, torch's default is 0.999)."""
    config_with_proxy.train.optimizer, config_with_proxy.train.adam_betas = name, [0.8, 0.99]
    groups = build(config_with_proxy).optimizer.param_groups
    assert {g["betas"] for g in groups} == {(0.8, 0.99)}
