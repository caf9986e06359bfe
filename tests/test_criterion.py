"""Criterion: named weighted terms, stats keys, and which ReidOutput field each loss reads (gradient routing)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trytry_reid.catalog import UnknownNameError, lookup
from trytry_reid.losses.center import CenterLoss
from trytry_reid.losses.criterion import LOSSES, Criterion, LossTerm, build_term
from trytry_reid.losses.cross_entropy import CrossEntropyLoss
from trytry_reid.losses.triplet import TripletLoss
from trytry_reid.models.reid_model import ReidModel

LABELS = torch.tensor([0, 0, 1, 1, 2, 2])


def model(num_classes: int = 3) -> ReidModel:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    return ReidModel(trunk, 8, num_classes=num_classes)


def images() -> torch.Tensor:
    return torch.randn(6, 3, 8, 4, generator=torch.Generator().manual_seed(1))


def test_catalog_builds_each_loss_and_names_its_field():
    built = {name: build_term(name, num_classes=3, feature_dim=8) for name in LOSSES}
    assert isinstance(built["cross_entropy"].module, CrossEntropyLoss) and built["cross_entropy"].field == "logits"
    assert isinstance(built["triplet"].module, TripletLoss) and built["triplet"].field == "features"
    assert isinstance(built["center"].module, CenterLoss) and built["center"].field == "features"
    assert built["center"].module.centers.shape == (3, 8)
    assert [name for name, entry in LOSSES.items() if not entry.standalone] == ["center"]
    with pytest.raises(UnknownNameError, match="triplet"):
        lookup(LOSSES, "tripplet", "loss")


def test_terms_are_weighted_and_stats_are_prefixed():
    net = model()
    out = net(images())
    terms = [build_term("cross_entropy", 1.0, label_smoothing=0.1),
             build_term("triplet", 2.0, selector="hardest", margin=0.3),
             build_term("center", 5e-4, num_classes=3, feature_dim=8)]
    losses, stats = Criterion(terms)(out, LABELS)
    assert list(losses) == ["cross_entropy", "triplet", "center"]
    assert losses["triplet"].item() == pytest.approx(2.0 * terms[1].module(out.features, LABELS)[0].item())
    assert losses["center"].item() == pytest.approx(5e-4 * terms[2].module(out.features, LABELS)[0].item())
    assert losses["cross_entropy"].item() == pytest.approx(terms[0].module(out.logits, LABELS)[0].item())
    assert set(stats) == {"cross_entropy/accuracy", "triplet/triplets", "triplet/valid_triplets",
                          "triplet/valid_fraction", "triplet/mean_pos_dist", "triplet/mean_neg_dist"}
    assert all(isinstance(v, float) for v in stats.values())


def grads_after(terms, net) -> dict[str, bool]:
    net.zero_grad()
    losses, _ = Criterion(terms)(net(images()), LABELS)
    sum(losses.values()).backward()
    return {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in net.named_parameters()}


def test_metric_losses_read_features_before_bnneck_and_ce_reads_after():
    net = model()
    got = grads_after([build_term("triplet", margin=10.0)], net)  # large margin: every triplet is active
    assert got["trunk.0.weight"] and not got["bnneck.weight"] and not got["classifier.weight"]
    center = build_term("center", num_classes=3, feature_dim=8)
    got = grads_after([center], net)
    assert got["trunk.0.weight"] and not got["bnneck.weight"] and center.module.centers.grad is not None
    got = grads_after([build_term("cross_entropy")], net)
    assert got["trunk.0.weight"] and got["bnneck.weight"] and got["classifier.weight"]


def test_a_field_can_be_overridden():
    net = model()
    got = grads_after([build_term("triplet", field="bn_features", margin=10.0)], net)
    assert got["bnneck.weight"] and not got["classifier.weight"]


def test_center_parameters_belong_to_the_criterion():
    center = build_term("center", 5e-4, num_classes=3, feature_dim=8)
    criterion = Criterion([build_term("cross_entropy"), center])
    assert any(p is center.module.centers for p in criterion.parameters())


def test_missing_logits_and_bad_terms_are_refused():
    out = model(num_classes=0)(images())
    with pytest.raises(ValueError, match="'cross_entropy'.*'logits'.*None"):
        Criterion([build_term("cross_entropy")])(out, LABELS)
    with pytest.raises(ValueError, match="'embedding' is not a ReidOutput field"):
        LossTerm("triplet", TripletLoss(), 1.0, "embedding")
    with pytest.raises(ValueError, match="repeated: triplet"):
        Criterion([build_term("triplet"), build_term("triplet")])
    assert len(Criterion([build_term("triplet"), build_term("triplet", name="triplet_all", selector="all")]).terms) == 2
