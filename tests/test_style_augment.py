"""Style augmentations for cross-domain training: random grayscale and AugMix-like mixing, against
torchvision's per-image functions and AugMix's mixing written out image by image; turned off, they draw nothing."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as F

from trytry_reid.data import augmix as mix
from trytry_reid.data import batch_augment as aug
from trytry_reid.data.batch_augment import BatchPhotometric
from trytry_reid.errors import ConfigError
from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD
from trytry_reid.jobs.config import load_config


def random_images(batch: int = 6, height: int = 16, width: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def test_random_grayscale_is_torchvisions_grayscale_on_the_chosen_images():
    images = random_images(200).float() / 255
    out = aug.random_grayscale(images, 0.3, torch.Generator().manual_seed(4))
    chosen = torch.rand(200, generator=torch.Generator().manual_seed(4)) < 0.3
    assert 40 <= int(chosen.sum()) <= 80
    for image, result, grey in zip(images, out, chosen):
        expected = F.rgb_to_grayscale(image, num_output_channels=3) if grey else image
        torch.testing.assert_close(result, expected, atol=1e-6, rtol=0)


def one_op_reference(image: torch.Tensor, index: int, level: float) -> torch.Tensor:
    """One AugMix operation on one [3, H, W] float image, from torchvision's functions and the definitions."""
    name = mix.OPERATIONS[index].__name__
    if name == "autocontrast":
        return F.autocontrast(image)
    if name == "posterize":
        step = 2 ** (8 - (4 + min(3, int(4 * level))))
        return torch.floor(image * 255 / step) * step / 255
    if name == "solarize":
        return F.solarize(image, 1 - level / 2)
    adjust = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast, "saturation": F.adjust_saturation}
    return adjust[name](image, 0.5 + level)


@pytest.mark.parametrize("index", range(len(mix.OPERATIONS)))
def test_each_operation_is_its_definition_image_by_image(index):
    images = random_images(8).float() / 255
    images[0, 1] = 0.5  # a flat channel: autocontrast leaves it alone
    levels = torch.linspace(0, 0.999, 8)
    out = mix.OPERATIONS[index](images, levels)
    for image, level, result in zip(images, levels, out):
        torch.testing.assert_close(result, one_op_reference(image, index, float(level)), atol=1e-5, rtol=0)


def test_posterize_keeps_the_top_bits_of_uint8_values():
    images = random_images(4)
    levels = torch.tensor([0.0, 0.3, 0.6, 0.9])  # 4, 5, 6, 7 bits
    out = mix.posterize(images.float() / 255, levels)
    for image, bits, result in zip(images, (4, 5, 6, 7), out):
        assert torch.equal((result * 255).round().to(torch.uint8), F.posterize(image, bits))


def augmix_reference(image: torch.Tensor, plan: mix.AugMixPlan, row: int) -> torch.Tensor:
    """AugMix's mixing of one image, chain by chain and operation by operation."""
    if not plan.chosen[row]:
        return image
    mixed = torch.zeros_like(image)
    for chain in range(mix.WIDTH):
        out = image
        for step in range(int(plan.depths[row, chain])):
            out = one_op_reference(out, int(plan.ops[row, chain, step]), float(plan.levels[row, chain, step]))
        mixed = mixed + plan.weights[row, chain] * out
    return plan.keep[row] * image + (1 - plan.keep[row]) * mixed


def test_augmix_mixes_each_chosen_image_as_its_definition():
    images = random_images(12).float() / 255
    plan = mix.augmix_plan(12, 0.6, torch.Generator().manual_seed(2))
    assert 0 < int(plan.chosen.sum()) < 12
    out = mix.augmix(images, plan)
    for row in range(12):
        torch.testing.assert_close(out[row], augmix_reference(images[row], plan, row), atol=1e-5, rtol=0)
    assert out.min() >= 0 and out.max() <= 1


def test_augmix_plans_are_dirichlet_mixes_drawn_from_the_generator():
    plan = mix.augmix_plan(2000, 0.5, torch.Generator().manual_seed(7))
    torch.testing.assert_close(plan.weights.sum(dim=1), torch.ones(2000))
    assert plan.weights.min() >= 0 and abs(plan.weights.mean().item() - 1 / mix.WIDTH) < 0.01
    assert set(plan.depths.unique().tolist()) == {1, 2, 3} and set(plan.ops.unique().tolist()) == set(range(6))
    assert abs(plan.chosen.float().mean().item() - 0.5) < 0.05
    again = mix.augmix_plan(2000, 0.5, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(plan, again))


def test_switched_off_style_augmentations_draw_nothing():
    """grayscale 0 and augmix 0 leave the batch exactly as colour jitter + erasing alone make it."""
    images = random_images(16, 32, 16)
    plain = BatchPhotometric(color_jitter=0.2, random_erasing_p=0.5)(images, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    out = aug.color_jitter(images.float() / 255, aug.jitter_factors(16, 0.2, generator))
    mean, std = (torch.tensor(stats).view(1, 3, 1, 1) for stats in (IMAGENET_MEAN, IMAGENET_STD))
    expected = aug.erase((out - mean) / std, aug.erase_boxes(16, 32, 16, 0.5, generator))
    torch.testing.assert_close(plain, expected, atol=1e-6, rtol=0)


def test_style_augmentations_are_the_same_batch_for_a_seed_and_differ_across_seeds():
    images = random_images(16, 32, 16)
    transform = BatchPhotometric(color_jitter=0.2, grayscale_p=0.3, augmix_p=0.5)
    first = transform(images, torch.Generator().manual_seed(1))
    assert torch.equal(first, transform(images, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, transform(images, torch.Generator().manual_seed(2)))
    unchanged = BatchPhotometric(color_jitter=0.2)(images, torch.Generator().manual_seed(1))
    assert not torch.equal(first, unchanged)


@pytest.mark.parametrize("key", ["grayscale", "augmix"])
def test_style_probabilities_are_checked(key):
    assert getattr(load_config(None, ["data.name=digits", f"data.{key}=0.2"]).data, key) == 0.2
    with pytest.raises(ConfigError, match=f"data.{key}"):
        load_config(None, ["data.name=digits", f"data.{key}=1.5"])
    with pytest.raises(ValueError, match=f"{key}_p"):
        BatchPhotometric(**{f"{key}_p": -0.1})
