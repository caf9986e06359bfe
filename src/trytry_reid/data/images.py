"""Image decoding (Pillow, upright 8-bit RGB, fail fast) and the torch Dataset over records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from PIL import Image

from trytry_reid.data.crop_size import crop_size_problem
from trytry_reid.data.datasets import Record
from trytry_reid.data.image_modes import ImageModeError, to_rgb, upright
from trytry_reid.errors import ReidError


class ImageReadError(ReidError, OSError):
    """An image that cannot be decoded; the message names the file. Never retried.

    Built from one message string (as DataLoader workers re-create exceptions); ``path`` is kept when given.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


def own_message(error: ImageReadError) -> str:
    """The error's own one-line message. A DataLoader worker re-raises it with the worker's whole traceback
    as its message; the original message is that traceback's last line."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    marker = f"{ImageReadError.__name__}: "
    if len(lines) > 1 and marker in lines[-1]:
        return lines[-1].split(marker, 1)[1]
    return str(error)


def read_image(path: str) -> Image.Image:
    """Decode ``path`` fully into an upright 8-bit RGB image (``data/image_modes.py``: EXIF orientation,
    16-bit, float, CMYK, transparency). Corrupt, truncated or non-image files, unreadable modes and crops
    below the minimum size (``data/crop_size.py``) raise ImageReadError naming the file."""
    try:
        with Image.open(path) as image:
            refuse_small(image, path)
            # decode every byte now (upright loads it): a truncated file fails here, not later in a transform
            return to_rgb(upright(image))
    except ImageReadError:
        raise
    except ImageModeError as error:
        raise ImageReadError(f"cannot use image '{path}': {error}", path) from error
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"cannot read image '{path}': {type(error).__name__}: {error}", path) from error


def refuse_small(image: Image.Image, path: str) -> None:
    """ImageReadError when the image (its header's size) is below the minimum crop size."""
    problem = crop_size_problem(*image.size)
    if problem is not None:
        raise ImageReadError(f"cannot use image '{path}': {problem}", path)


class ImageDataset(torch.utils.data.Dataset):
    """Records as ``(image_tensor [3,H,W], label, camid, index)``; label = ``labels[i]`` or ``record.pid``."""

    def __init__(self, records: Sequence[Record], transform: Callable,
                 labels: Sequence[int] | None = None) -> None:
        if labels is not None and len(labels) != len(records):
            raise ValueError(f"ImageDataset: {len(labels)} labels for {len(records)} records; expected one each")
        if not callable(transform):
            raise TypeError(f"ImageDataset: transform must be callable, got {type(transform).__name__}")
        self.records = list(records)
        self.transform = transform
        self.labels = None if labels is None else [int(x) for x in labels]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        record = self.records[index]
        label = record.pid if self.labels is None else self.labels[index]
        return self.transform(read_image(record.path)), label, record.camid, index


def relabel(records: Iterable[Record]) -> tuple[list[int], dict[int, int]]:
    """Map the records' pids to 0..N-1 in sorted pid order: (label per record, {pid: label})."""
    records = list(records)
    mapping = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [mapping[r.pid] for r in records], mapping


def common_folder(paths: Iterable[str | Path]) -> Path:
    """The deepest folder holding every one of ``paths`` (absolute file paths); ValueError when empty."""
    folders = [os.path.dirname(str(p)) for p in paths]
    if not folders:
        raise ValueError("common_folder: no paths")
    return Path(os.path.commonpath(folders))
