"""Batched feature extraction with ``model.embed`` in eval mode under ``torch.inference_mode``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from trytry_reid.data.datasets import Record
from trytry_reid.data.images import ImageDataset, ImageReadError, own_message
from trytry_reid.evaluation.distance import fuse_flip
from trytry_reid.models.inference_copy import inference_copy


def extract_features(model: torch.nn.Module, records: Sequence[Record], transform: Callable, batch_size: int = 128,
                     workers: int = 0, device: str | torch.device = "cpu", flip: bool = False,
                     progress: bool = True, desc: str = "extract") -> np.ndarray:
    """[N, D] float32 features of ``records`` in their order, from ``model.embed``.

    A ReID model runs as its inference copy (``models/inference_copy.py``: BatchNorm folded into the
    convolutions; features equal within float rounding), so ``model`` itself is left as it is. Any other
    module is put in eval mode for the pass and its previous mode is restored afterwards, even on error.
    ``flip=True`` also embeds the horizontally mirrored images and returns ``fuse_flip`` of the two (mean, then
    L2-normalised). ``workers`` DataLoader processes decode the images.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        fast = inference_copy(model)
        with torch.inference_mode():
            return embed_records(fast.embed, records, transform, batch_size=batch_size, workers=workers,
                                 device=device, flip=flip, progress=progress, desc=desc)
    finally:
        model.train(was_training)


def embed_records(embed: Callable[[torch.Tensor], torch.Tensor | np.ndarray], records: Sequence[Record],
                  transform: Callable, *, batch_size: int = 128, workers: int = 0,
                  device: str | torch.device = "cpu", flip: bool = False, progress: bool = True,
                  desc: str = "extract") -> np.ndarray:
    """[N, D] float32 ``embed(batch)`` of ``records`` in their order; ``embed`` maps a normalised batch
    [B, 3, H, W] on ``device`` to L2-normalised features [B, D] (a tensor or a numpy array). Images are decoded
    and transformed in ``workers`` DataLoader processes (0: in this one)."""
    if len(records) == 0:
        raise ValueError("extract_features got no records: nothing to extract")
    if batch_size < 1 or workers < 0:
        raise ValueError(f"need batch_size >= 1 and workers >= 0, got {batch_size} and {workers}")
    device = torch.device(device)
    loader = torch.utils.data.DataLoader(ImageDataset(records, transform), batch_size=batch_size, shuffle=False,
                                         num_workers=workers, pin_memory=device.type == "cuda")
    try:
        return _embed_all(embed, loader, len(records), device, flip,
                          tqdm(total=len(records), desc=desc, unit="img", disable=not progress))
    except ImageReadError as error:     # from a loader worker: one line naming the file, not its traceback
        raise ImageReadError(own_message(error)) from None


def _embed_all(embed, loader, num_items: int, device: torch.device, flip: bool, bar) -> np.ndarray:
    out: np.ndarray | None = None
    with bar:
        for images, _labels, _camids, indices in loader:
            images = images.to(device, non_blocking=True)
            feats = torch.as_tensor(embed(images))
            if flip:
                feats = fuse_flip(feats, torch.as_tensor(embed(torch.flip(images, dims=[3]))))
            if out is None:
                out = np.empty((num_items, feats.shape[1]), dtype=np.float32)
            out[indices.numpy()] = feats.float().cpu().numpy()
            bar.update(len(images))
    return out
