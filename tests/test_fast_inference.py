"""The fast inference path: the inference copy (BatchNorm folded into the convolutions) and the one-pass
normalisation of the test transform give the same features as the model and torchvision's transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trytry_reid.data.datasets import Record
from trytry_reid.data.transforms import build_test_transform
from trytry_reid.evaluation.features import extract_features
from trytry_reid.models import build_reid_model
from trytry_reid.models.inference_copy import fold_batchnorms, fold_into_conv, inference_copy

from conftest import MARKET_DEVSPLIT, MOBILENET_WEIGHTS, require


def randomise_batchnorms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters away from the identity, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            if module.affine:
                module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.data.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
    return model


@pytest.mark.parametrize("bias, affine", [(False, True), (True, True), (True, False)])
def test_a_folded_convolution_is_the_definition(bias, affine):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=bias, groups=2)
    bn = randomise_batchnorms(nn.BatchNorm2d(6, affine=affine, eps=1e-3)).eval()
    x = torch.randn(2, 4, 7, 5, dtype=torch.float64)
    conv, bn = conv.double(), bn.double()
    # y = (conv(x) - mean) / sqrt(var + eps) * gamma + beta, written out
    gamma = bn.weight if affine else torch.ones(6, dtype=torch.float64)
    beta = bn.bias if affine else torch.zeros(6, dtype=torch.float64)
    expected = ((conv(x) - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
                * gamma[:, None, None] + beta[:, None, None])
    fold_into_conv(conv, bn)
    torch.testing.assert_close(conv(x).detach(), expected.detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
def test_the_inference_copy_has_no_batchnorm_left_and_the_same_features(backbone):
    torch.manual_seed(0)
    model = randomise_batchnorms(build_reid_model(backbone, num_classes=5, last_stride=1)).train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    fast = inference_copy(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.trunk.modules())
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in fast.trunk.parameters() if p.dim() == 4)
    assert model.training, "the original model keeps its mode"
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    x = torch.randn(3, 3, 64, 32)
    model.eval()
    with torch.inference_mode():
        assert (fast.embed(x) - model.embed(x)).abs().max() <= 1e-5


def test_a_trunk_fx_cannot_trace_runs_unfolded():
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            if x.sum() > 0:          # data-dependent control flow: symbolic tracing refuses it
                return self.bn(self.conv(x))
            return self.bn(self.conv(-x))

    module = randomise_batchnorms(DataDependent())
    folded = fold_batchnorms(module)
    assert isinstance(folded.bn, nn.BatchNorm2d)
    x = torch.rand(2, 3, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), module.eval()(x))


def test_a_folded_trunk_keeps_the_hooks_that_shape_its_output():
    """A trunk whose forward hook picks its output (as timm's feature extractors' last map) keeps that hook."""
    trunk = randomise_batchnorms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    trunk.register_forward_pre_hook(lambda module, inputs: (inputs[0] * 2,))
    trunk.register_forward_hook(lambda module, inputs, output: [output, output + 1][-1])
    folded = fold_batchnorms(trunk)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 8, 8)
    with torch.inference_mode():
        expected = trunk.eval()(x)
        torch.testing.assert_close(folded(x), expected)
        torch.testing.assert_close(expected, trunk[1](trunk[0](2 * x)) + 1)


def test_extraction_matches_the_eager_model_on_real_crops():
    """extract_features (the inference copy) against eager ``model.embed`` of the same decoded crops: a
    MobileNetV2 with ImageNet weights (real BatchNorm statistics) at the CPU recipe's 128x64."""
    crops = sorted(require(MARKET_DEVSPLIT / "query").glob("*.jpg"))[:32]
    model = build_reid_model("mobilenet_v2", num_classes=0, last_stride=1,
                             pretrained=str(require(MOBILENET_WEIGHTS))).eval()
    transform = build_test_transform(128, 64)
    records = [Record(str(p), 0, 0) for p in crops]
    from trytry_reid.data.images import read_image

    with torch.inference_mode():
        eager = model.embed(torch.stack([transform(read_image(str(p))) for p in crops])).numpy()
    ours = extract_features(model, records, transform, batch_size=7, progress=False)
    assert np.abs(ours - eager).max() <= 1e-4


def test_the_test_transform_equals_torchvision_to_tensor_and_normalize_bit_for_bit():
    import torchvision.transforms as T
    from PIL import Image

    from trytry_reid.data.images import read_image

    crops = [read_image(str(p)) for p in sorted(require(MARKET_DEVSPLIT / "query").glob("*.jpg"))[:8]]
    rng = np.random.default_rng(0)
    crops.append(Image.fromarray(rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)))     # odd sizes
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    for height, width in ((128, 64), (256, 128), (37, 23)):
        ours = build_test_transform(height, width, mean=mean, std=std)
        resize = T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR, antialias=True)
        reference = T.Compose([resize, T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))])
        for crop in crops:
            assert torch.equal(ours(crop), reference(crop))
    with pytest.raises(TypeError, match="expects a PIL RGB image, got L"):
        build_test_transform(8, 4)(crops[-1].convert("L"))


@pytest.mark.parametrize("backbone", ["osnet_x0_25", "osnet_ain_x0_25", "resnet50_ibn_a", "fastreid_r50_ibn_nl"])
def test_the_inference_copy_of_the_zoo_trunks_gives_the_same_features(backbone):
    """Instance normalisation, IBN's split BatchNorm and non-local blocks: what folds folds, the rest runs as is."""
    torch.manual_seed(0)
    model = randomise_batchnorms(build_reid_model(backbone, num_classes=5, last_stride=1)).eval()
    fast = inference_copy(model)
    x = torch.randn(2, 3, 64, 32)
    with torch.inference_mode():
        assert (fast.embed(x) - model.embed(x)).abs().max() <= 1e-5


def test_a_batchnorm_without_running_statistics_stays_unfolded():
    """Batch statistics in eval mode too (track_running_stats=False): nothing to fold, the copy still runs."""
    trunk = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    folded = fold_batchnorms(trunk)
    assert any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), trunk.eval()(x))
