"""Train/test transforms: shapes, exact normalisation, flip and erasing behaviour, argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from trytry_reid.data import build_test_transform, build_train_transform
from trytry_reid.imagenet import IMAGENET_MEAN, IMAGENET_STD


def gradient_image(width: int = 20, height: int = 40) -> Image.Image:
    """Left half black, right half white: a flip is visible in the first column."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, width // 2:] = 255
    return Image.fromarray(array)


def test_test_transform_resizes_and_normalises_exactly():
    image = Image.new("RGB", (7, 9), (255, 0, 128))
    out = build_test_transform(32, 16)(image)
    assert out.shape == (3, 32, 16) and out.dtype == torch.float32
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5, rtol=0)
    custom = build_test_transform(4, 4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(image)
    torch.testing.assert_close(custom[0], torch.ones(4, 4))


def test_train_transform_shape_and_flip():
    image = gradient_image()
    always = build_train_transform(40, 20, flip_p=1.0, pad=0)
    never = build_train_transform(40, 20, flip_p=0.0, pad=0)
    assert always(image).shape == (3, 40, 20)
    assert always(image)[0, :, 0].min() > 1.5   # white now on the left
    assert never(image)[0, :, 0].max() < -1.5   # black stays on the left


def test_pad_and_crop_shift_content_but_keep_size():
    torch.manual_seed(0)
    transform = build_train_transform(40, 20, flip_p=0.0, pad=10)
    outs = [transform(gradient_image()) for _ in range(12)]
    assert all(o.shape == (3, 40, 20) for o in outs)
    assert len({tuple(o[0, 20].tolist()) for o in outs}) > 1  # random crop offsets differ


def test_random_erasing_fills_with_zero_after_normalisation():
    torch.manual_seed(0)
    transform = build_train_transform(64, 32, flip_p=0.0, pad=0, random_erasing_p=1.0)
    out = transform(Image.new("RGB", (32, 64), (255, 255, 255)))
    assert (out == 0).any() and (out > 0).any()
    plain = build_train_transform(64, 32, flip_p=0.0, pad=0)(Image.new("RGB", (32, 64), (255, 255, 255)))
    assert not (plain == 0).any()


def test_color_jitter_changes_values_only_when_on():
    torch.manual_seed(0)
    image = Image.new("RGB", (8, 8), (120, 60, 30))
    base = build_test_transform(8, 8)(image)
    jittered = build_train_transform(8, 8, flip_p=0.0, pad=0, color_jitter=0.4)
    assert any(not torch.allclose(jittered(image), base) for _ in range(5))
    assert torch.equal(build_train_transform(8, 8, flip_p=0.0, pad=0)(image), base)


@pytest.mark.parametrize("kwargs,match", [
    ({"height": 0}, "height=0"), ({"width": 2.5}, "width=2.5"), ({"flip_p": 1.5}, "flip_p=1.5"),
    ({"random_erasing_p": -0.1}, "random_erasing_p=-0.1"), ({"pad": -1}, "pad=-1"),
    ({"std": (1.0, 0.0, 1.0)}, "std"), ({"mean": (0.5,)}, "mean"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    args = {"height": 8, "width": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_train_transform(args.pop("height"), args.pop("width"), **args)
