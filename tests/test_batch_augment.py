"""The batched photometric augmentation against torchvision's per-image functions, written out image by image,
and random erasing against its definition."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as F
from PIL import Image

from trytry_reid.data import BatchPhotometric, build_test_transform, build_train_transform
from trytry_reid.data import batch_augment as aug
from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD


def random_images(batch: int = 6, height: int = 16, width: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def test_color_jitter_is_torchvisions_adjustments_image_by_image():
    images = random_images().float() / 255
    factors = torch.tensor([[1.0, 1.0, 1.0], [1.2, 0.8, 1.1], [0.8, 1.2, 0.9], [1.19, 1.19, 1.19],
                            [0.81, 0.9, 1.2], [1.1, 1.15, 0.8]])
    expected = torch.stack([
        F.adjust_saturation(F.adjust_contrast(F.adjust_brightness(image, float(b)), float(c)), float(s))
        for image, (b, c, s) in zip(images, factors)])
    out = aug.color_jitter(images, factors)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert torch.equal(out[0], images[0])  # factors of 1 change nothing
    assert out.min() >= 0 and out.max() <= 1


def test_jitter_factors_are_per_image_in_range_and_seeded():
    factors = aug.jitter_factors(4000, 0.2, torch.Generator().manual_seed(3))
    assert factors.shape == (4000, 3) and factors.min() >= 0.8 and factors.max() <= 1.2
    assert abs(factors.mean().item() - 1.0) < 0.01 and factors.std().item() > 0.1  # uniform, not one draw
    assert torch.equal(factors, aug.jitter_factors(4000, 0.2, torch.Generator().manual_seed(3)))
    assert aug.jitter_factors(100, 1.5, torch.Generator().manual_seed(0)).min() >= 0  # never a negative factor


def test_without_jitter_or_erasing_a_batch_is_normalised_as_the_test_transform():
    pixels = Image.new("RGB", (8, 16), (255, 0, 128))
    geometric = build_train_transform(16, 8, flip_p=0.0, pad=0)(pixels)
    assert geometric.dtype == torch.uint8 and geometric.shape == (3, 16, 8)
    out = BatchPhotometric()(geometric.unsqueeze(0), torch.Generator())
    torch.testing.assert_close(out[0], build_test_transform(16, 8)(pixels), atol=1e-6, rtol=0)
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(expected), atol=1e-5, rtol=0)


def test_batch_photometric_jitters_each_image_on_its_own():
    same = random_images(1).expand(8, -1, -1, -1).contiguous()
    out = BatchPhotometric(color_jitter=0.4)(same, torch.Generator().manual_seed(0))
    assert len({round(image.mean().item(), 5) for image in out}) == 8
    again = BatchPhotometric(color_jitter=0.4)(same, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def brute_force_mask(height: int, width: int, box: list[int]) -> torch.Tensor:
    top, left, box_h, box_w = box
    mask = torch.zeros(height, width, dtype=torch.bool)
    for y in range(height):
        for x in range(width):
            mask[y, x] = top <= y < top + box_h and left <= x < left + box_w
    return mask


def test_erase_sets_each_images_box_to_the_value():
    images = torch.ones(3, 3, 10, 6)
    boxes = torch.tensor([[2, 1, 3, 4], [0, 0, 0, 0], [9, 5, 1, 1]])
    out = aug.erase(images, boxes, value=0.0)
    for image, box in zip(out, boxes.tolist()):
        expected = torch.where(brute_force_mask(10, 6, box), 0.0, 1.0)
        assert torch.equal(image, expected.expand(3, -1, -1))


def test_erase_boxes_follow_random_erasings_definition():
    height, width = 128, 64
    boxes = aug.erase_boxes(5000, height, width, 0.5, torch.Generator().manual_seed(1))
    top, left, box_h, box_w = boxes.T
    chosen = box_h > 0
    assert 0.47 < chosen.float().mean().item() < 0.53  # the probability
    assert torch.equal(chosen, box_w > 0)
    assert (top + box_h <= height).all() and (left + box_w <= width).all() and (top >= 0).all()
    assert (box_h[chosen] < height).all() and (box_w[chosen] < width).all()
    area = (box_h * box_w)[chosen].float() / (height * width)
    low, high = aug.ERASE_SCALE
    assert area.min() > low * 0.8 and area.max() < high * 1.2  # rounding of the sides widens it a little
    ratio = (box_h.float() / box_w.float())[chosen]
    assert ratio.min() > aug.ERASE_RATIO[0] * 0.8 and ratio.max() < aug.ERASE_RATIO[1] * 1.25
    square = aug.erase_boxes(5000, 100, 100, 1.0, torch.Generator().manual_seed(2))  # no side favoured by the fit
    log_ratio = (square[:, 2].float() / square[:, 3].float()).log()
    assert abs(log_ratio.mean().item() - sum(map(math.log, aug.ERASE_RATIO)) / 2) < 0.05  # log-uniform
    assert top[chosen].float().std() > 10 and left[chosen].float().std() > 5  # positions spread


def test_erasing_fills_with_zero_after_normalisation():
    white = torch.full((4, 3, 64, 32), 255, dtype=torch.uint8)
    out = BatchPhotometric(random_erasing_p=1.0)(white, torch.Generator().manual_seed(0))
    for image in out:
        assert (image == 0).any() and (image > 0).any()
    assert not (BatchPhotometric()(white, torch.Generator()) == 0).any()


@pytest.mark.parametrize("kwargs,match", [
    ({"color_jitter": -0.1}, "color_jitter=-0.1"), ({"random_erasing_p": 1.5}, "random_erasing_p=1.5"),
    ({"std": (1.0, 0.0, 1.0)}, "std"), ({"mean": (0.5,)}, "mean"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchPhotometric(**kwargs)


def test_float_images_are_refused():
    with pytest.raises(ValueError, match="expected uint8 images"):
        BatchPhotometric()(torch.zeros(2, 3, 4, 4), torch.Generator())
