"""Training epochs that can be resumed exactly: every sample drawn under its own seed.

:class:`SeededDataset` seeds every sample's transform from ``(seed, epoch, batch, position)``, so the images of
a batch do not depend on which DataLoader worker draws them, on how many workers there are, or on whether the
epoch was started from its first batch or resumed in the middle. It restores the caller's generators
afterwards, so with ``workers=0`` augmentation leaves the main process's random state untouched. A transform of
the whole batch (colour jitter etc., data/batch_augment.py) draws from a private generator seeded from the
batch's first sample seed. :class:`EpochLoaders` builds each epoch's DataLoader from those seeds.
"""

from __future__ import annotations

import itertools
import random
import signal
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from trytry_reid.engine.rng import MASK64, derive_seed


class SeededDataset(torch.utils.data.Dataset):
    """Wraps a map-style dataset; ``self[(index, seed)]`` is ``dataset[index]`` drawn under ``seed``.

    The python, numpy and torch CPU generators are seeded from ``seed`` for the call; in the main process
    (``workers=0``) they are restored after it, so the caller's random state is untouched. With a
    ``batch_transform`` (``f(images [B, ...], generator) -> images``), a batch fetched through the DataLoader
    (``__getitems__``) has its stacked images transformed under a generator seeded from its first key's seed.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_transform: Callable | None = None) -> None:
        self.dataset = dataset
        self.batch_transform = batch_transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if torch.utils.data.get_worker_info() is not None:
            # A loader worker: every sample re-seeds, so nothing to restore (saving numpy's state alone costs
            # more than decoding a Market image).
            _seed_generators(seed)
            return self.dataset[index]
        cpu = torch.default_generator
        saved = (random.getstate(), np.random.get_state(), cpu.get_state())
        try:
            _seed_generators(seed)
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            cpu.set_state(saved[2])

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list:
        """The samples of one batch (the DataLoader's fetch), images through ``batch_transform`` together."""
        samples = [self[key] for key in keys]
        if self.batch_transform is None or not samples:
            return samples
        generator = torch.Generator().manual_seed(derive_seed(keys[0][1], -2))
        images = self.batch_transform(torch.stack([sample[0] for sample in samples]), generator)
        return [(image, *sample[1:]) for image, sample in zip(images, samples)]


def _seed_generators(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that also re-seeds accelerators, slowly


def seeded_batches(
    batches: Iterable[Sequence[int]], *, seed: int, epoch: int, start_batch: int = 0, rank: int = 0
) -> Iterator[list[tuple[int, int]]]:
    """Attach a per-sample seed to each index: batch ``b`` (counted from the epoch's start) position ``i``
    gets ``derive_seed(seed, epoch, b) + i``. ``batches`` yields the epoch's batches from ``start_batch`` on.

    Under DDP each rank's batch is the ``rank``-th equal slice of the global batch (PKSampler), so
    positions are offset by ``rank * len(batch)``: every sample gets the seed it has in the global batch,
    and ranks never share augmentation draws.
    """
    for b, batch in enumerate(batches, start=start_batch):
        base = derive_seed(seed, epoch, b) + rank * len(batch)
        yield [(int(index), (base + i) & MASK64) for i, index in enumerate(batch)]


def loader_generator(seed: int, epoch: int) -> torch.Generator:
    """A private generator for a DataLoader, so creating its iterator never draws from the global RNG."""
    return torch.Generator().manual_seed(derive_seed(seed, epoch, -1))


class EpochLoaders:
    """``loaders(epoch, start_batch)`` -> a DataLoader over that epoch's batches from ``start_batch`` on.

    The batch sampler (e.g. PKSampler) must be deterministic given ``set_epoch(epoch)``; batches before
    ``start_batch`` are skipped by index only (no image is read). Every sample is drawn under its own seed
    (see :class:`SeededDataset`), and the loader has a private generator, so a resumed epoch yields exactly
    the batches the uninterrupted epoch would have, for any number of workers.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_sampler: Any, *, seed: int,
                 workers: int = 0, pin_memory: bool = False, batch_transform: Callable | None = None) -> None:
        self.dataset = SeededDataset(dataset, batch_transform)
        self.batch_sampler = batch_sampler
        self.seed, self.workers, self.pin_memory = seed, workers, pin_memory

    def __len__(self) -> int:
        """Batches in a whole epoch."""
        self.batch_sampler.set_epoch(0)
        return len(self.batch_sampler)

    def __call__(self, epoch: int, start_batch: int = 0) -> "StopSignalSafeLoader":
        self.batch_sampler.set_epoch(epoch)
        batches = list(itertools.islice(iter(self.batch_sampler), start_batch, None))
        return StopSignalSafeLoader(torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=list(seeded_batches(batches, seed=self.seed, epoch=epoch, start_batch=start_batch,
                                              rank=getattr(self.batch_sampler, "rank", 0))),
            num_workers=self.workers,
            pin_memory=self.pin_memory,
            generator=loader_generator(self.seed, epoch),
            persistent_workers=False,
            worker_init_fn=ignore_stop_signals,
        ))


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class StopSignalSafeLoader:
    """A DataLoader whose worker processes never die of SIGINT/SIGTERM sent to the whole process group
    (Ctrl-C, a scheduler's pre-emption): the main process finishes its step and checkpoints, and had a worker
    died, fetching the next batch would fail first. The stop signals are blocked while the workers are
    forked, so none can arrive before a worker has set them to be ignored (:func:`ignore_stop_signals`);
    the main process gets any that came meanwhile as soon as they are unblocked."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.loader.num_workers == 0:
            return iter(self.loader)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return iter(self.loader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals(worker_id: int) -> None:
    """In a DataLoader worker: ignore SIGINT/SIGTERM, then unblock them (see StopSignalSafeLoader). Workers
    still exit when the main process stops them or dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
