"""Per-image train/test transforms: shapes, exact normalisation, flip and crop, argument errors (the batched
photometric half: test_batch_augment.py)."""

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
    assert always(image).shape == (3, 40, 20) and always(image).dtype == torch.uint8  # normalised per batch
    assert always(image)[0, :, 0].min() == 255   # white now on the left
    assert never(image)[0, :, 0].max() == 0      # black stays on the left


def test_pad_and_crop_shift_content_but_keep_size():
    torch.manual_seed(0)
    transform = build_train_transform(40, 20, flip_p=0.0, pad=10)
    outs = [transform(gradient_image()) for _ in range(12)]
    assert all(o.shape == (3, 40, 20) for o in outs)
    assert len({tuple(o[0, 20].tolist()) for o in outs}) > 1  # random crop offsets differ


@pytest.mark.parametrize("kwargs,match", [
    ({"height": 0}, "height=0"), ({"width": 2.5}, "width=2.5"), ({"flip_p": 1.5}, "flip_p=1.5"),
    ({"pad": -1}, "pad=-1"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    args = {"height": 8, "width": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_train_transform(args.pop("height"), args.pop("width"), **args)
