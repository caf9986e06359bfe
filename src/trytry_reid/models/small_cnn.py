"""A small CNN trunk for digits/MNIST-sized inputs (the embedded demo): fast on a CPU, trained from scratch."""

from __future__ import annotations

from torch import nn


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def small_cnn(last_stride: int = 2, widths: tuple[int, ...] = (32, 64, 128)) -> tuple[nn.Module, int]:
    """Three conv blocks; the first keeps resolution, the others downsample (the last by `last_stride`).

    A 32x32 input gives a [B, 128, 8, 8] map with last_stride 2 and [B, 128, 16, 16] with last_stride 1.
    """
    strides = [1] * (len(widths) - 1) + [last_stride]
    strides[1:-1] = [2] * (len(widths) - 2)
    blocks, c_in = [], 3
    for width, stride in zip(widths, strides):
        blocks.append(conv_block(c_in, width, stride))
        c_in = width
    return nn.Sequential(*blocks), widths[-1]
