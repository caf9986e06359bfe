"""The precision oneDNN may use inside fp32 convolutions and matrix products on the CPU, for training steps.

``bf16`` lets oneDNN round the inputs of fp32 convolutions and matmuls to bfloat16 on CPUs with AMX or
AVX512-BF16 and accumulate in fp32; the tensors between operations stay fp32 (unlike bf16 autocast, which
keeps activations in bf16 and casts the weights at every step). ``tf32`` is the same with TensorFloat-32.
``none`` is PyTorch's default (full fp32). CPUs without the instructions compute in fp32; CUDA ignores it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

FP32_PRECISIONS = ("none", "bf16", "tf32")


def check_precision(precision: str) -> None:
    if precision not in FP32_PRECISIONS:
        raise ValueError(f"fp32_precision must be one of {', '.join(FP32_PRECISIONS)}, got '{precision}'")


@contextmanager
def onednn_fp32_precision(precision: str) -> Iterator[None]:
    """Within the block, oneDNN's fp32 convolutions and matmuls may compute in ``precision``; the previous
    settings come back on exit (errors included), so evaluation outside the block runs in full fp32."""
    check_precision(precision)
    if precision == "none":
        yield
        return
    backends = (torch.backends.mkldnn.conv, torch.backends.mkldnn.matmul)
    saved = [backend.fp32_precision for backend in backends]
    try:
        for backend in backends:
            backend.fp32_precision = precision
        yield
    finally:
        for backend, value in zip(backends, saved):
            backend.fp32_precision = value
