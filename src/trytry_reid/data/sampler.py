"""P x K batches: seeded, resumable mid-epoch, and split across distributed ranks.

One epoch's plan is a pure function of ``(seed, epoch)``. Two balances (``BALANCES``):

``identity`` (the default): every identity equally often.

1. identity slots: random permutations of all identities are concatenated until ``num_batches * p`` slots are
   filled, and cut into batches of ``p``. Where a permutation ends inside a batch, the next permutation moves
   that batch's ids to its end, so every batch holds ``p`` distinct ids. The first permutation is used whole
   when ``num_batches * p >= num_ids`` (the default), so every identity appears at least once per epoch.
2. images: each slot draws ``k`` of its identity's indices, without replacement when it has at least ``k``,
   with replacement otherwise.

``image`` (torchreid's and fast-reid's identity sampler): identities in proportion to their images, each
image about once per pass. A pass cuts every identity's shuffled images into chunks of ``k`` (the remainder is
left out; an identity with fewer than ``k`` images gives one chunk drawn with replacement), spreads each
identity's chunks evenly over the pass in random order, and groups them into batches of ``p`` distinct ids (a
chunk whose id is already in the open batch waits for the next one; what cannot fill a batch is dropped).
Passes follow one another until ``num_batches`` are planned.

With ``world_size`` W, every rank builds the same global plan and yields its own ``p / W`` ids of each batch.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np
import torch


class PKSampler(torch.utils.data.Sampler[list[int]]):
    """A batch_sampler yielding lists of ``p/world_size * k`` dataset indices (``k`` per identity)."""

    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int = 0,
                 num_batches: int | None = None, rank: int = 0, world_size: int = 1,
                 balance: str = "identity") -> None:
        labels = np.asarray(labels, dtype=np.int64)
        ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        check_arguments(len(ids), p, k, num_batches, rank, world_size)
        if balance not in BALANCES:
            raise ValueError(f"PKSampler: balance={balance!r}; expected one of {', '.join(BALANCES)}")
        self.p, self.k, self.seed, self.balance = p, k, seed, balance
        self.rank, self.world_size = rank, world_size
        self.num_ids = len(ids)
        self.num_batches = num_batches if num_batches is not None else pass_batches(counts, p, k, balance)
        self.counts = counts
        # members[i, :counts[i]] are the dataset indices of identity i (stable order), the rest is padding
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        column = np.arange(len(labels)) - np.repeat(starts, counts)
        self.members = np.zeros((len(ids), counts.max()), dtype=np.int64)
        self.members[inverse[order], column] = order
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's plan; ``start_batch`` skips the batches a resumed run already consumed."""
        if not 0 <= start_batch <= self.num_batches:
            raise ValueError(f"PKSampler: start_batch={start_batch} outside 0..{self.num_batches}")
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Batches the next iteration yields (``num_batches - start_batch``)."""
        return self.num_batches - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = BALANCES[self.balance](rng, self.members, self.counts, self.p, self.k, self.num_batches)
        share = self.p // self.world_size
        mine = batches[:, self.rank * share:(self.rank + 1) * share, :].reshape(self.num_batches, -1)
        for batch in mine[self.start_batch:]:
            yield batch.tolist()


def check_arguments(num_ids: int, p: int, k: int, num_batches: int | None, rank: int, world_size: int) -> None:
    if p < 1 or k < 1:
        raise ValueError(f"PKSampler: p={p} and k={k} must both be >= 1")
    if p > num_ids:
        raise ValueError(f"PKSampler: p={p} identities per batch, but the training set has only {num_ids} ids")
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"PKSampler: num_batches={num_batches} must be >= 1 (or None for ceil(ids / p))")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"PKSampler: rank={rank} must lie in 0..world_size-1 (world_size={world_size})")
    if p % world_size:
        raise ValueError(f"PKSampler: p={p} must be divisible by world_size={world_size} so each rank gets "
                         f"the same number of ids of the global batch")


def pass_batches(counts: np.ndarray, p: int, k: int, balance: str) -> int:
    """Batches of one pass over the training set: identity, one batch per ``p`` ids; image, the chunks of ``k``
    images of every identity, ``p`` to a batch."""
    if balance == "image":
        return max(1, int(chunks_per_identity(counts, k).sum()) // p)
    return math.ceil(len(counts) / p)


def chunks_per_identity(counts: np.ndarray, k: int) -> np.ndarray:
    """[I] chunks of ``k`` an identity gives per pass of the image balance: ``n // k``, and one below ``k``."""
    return np.maximum(counts // k, 1)


def identity_plan(rng: np.random.Generator, members: np.ndarray, counts: np.ndarray, p: int, k: int,
                  num_batches: int) -> np.ndarray:
    """[num_batches, p, k] dataset indices: every identity equally often."""
    slots = identity_slots(rng, len(counts), p, num_batches)
    return draw_images(rng, members, counts, slots.reshape(-1), k).reshape(num_batches, p, k)


def image_plan(rng: np.random.Generator, members: np.ndarray, counts: np.ndarray, p: int, k: int,
               num_batches: int) -> np.ndarray:
    """[num_batches, p, k] dataset indices: identities in proportion to their images (module docstring)."""
    planned, total = [], 0
    while total < num_batches:
        ids, within, columns = image_chunks(rng, counts, members.shape[1], k)
        per_id = chunks_per_identity(counts, k)[ids]
        order = np.argsort((within + rng.random(len(ids))) / per_id, kind="stable")  # spread over the pass
        groups = order[distinct_groups(ids[order], p)]  # [B, p] chunk numbers
        planned.append(members[ids[groups][..., None], columns[groups]])
        total += len(groups)
    return np.concatenate(planned)[:num_batches]


def image_chunks(rng: np.random.Generator, counts: np.ndarray, width: int,
                 k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass's chunks: [C] identity of each chunk (grouped by identity), [C] its number within the
    identity and [C, k] its member columns."""
    per_id = chunks_per_identity(counts, k)
    ids = np.repeat(np.arange(len(counts)), per_id)
    within = np.arange(len(ids)) - np.repeat(np.cumsum(per_id) - per_id, per_id)
    shuffled = shuffled_columns(rng, counts, width)
    positions = np.minimum(within[:, None] * k + np.arange(k), width - 1)
    chunk_counts = counts[ids]
    columns = np.where((chunk_counts >= k)[:, None], shuffled[ids[:, None], positions],
                       columns_with_replacement(rng, chunk_counts, k))
    return ids, within, columns


def distinct_groups(ids: np.ndarray, p: int) -> np.ndarray:
    """[B, p] positions into ``ids``, in order, each row ``p`` distinct ids; a position whose id is already
    in the open row waits for the next row. Positions left when no row can be filled are dropped."""
    rows, row, waiting = [], [], []
    for position in range(len(ids)):
        waiting.append(position)
        for candidate in list(waiting):
            if all(ids[member] != ids[candidate] for member in row):
                row.append(candidate)
                waiting.remove(candidate)
                if len(row) == p:
                    rows.append(row)
                    row = []
    return np.array(rows, dtype=np.int64).reshape(-1, p)


def identity_slots(rng: np.random.Generator, num_ids: int, p: int, num_batches: int) -> np.ndarray:
    """[num_batches, p] identity indices, distinct within each row (see the module docstring)."""
    total = num_batches * p
    pieces, filled = [], 0
    while filled < total:
        permutation = rng.permutation(num_ids)
        tail = filled % p  # ids already placed in the batch this permutation continues
        if tail and pieces:
            in_batch = np.isin(permutation, np.concatenate(pieces)[filled - tail:filled])
            permutation = np.concatenate([permutation[~in_batch], permutation[in_batch]])
        pieces.append(permutation)
        filled += num_ids
    return np.concatenate(pieces)[:total].reshape(num_batches, p)


def draw_images(rng: np.random.Generator, members: np.ndarray, counts: np.ndarray,
                slots: np.ndarray, k: int) -> np.ndarray:
    """[S, k] dataset indices: ``k`` images per slot, with replacement only for ids with fewer than ``k``."""
    slot_counts = counts[slots]
    shuffled = shuffled_columns(rng, slot_counts, members.shape[1])
    without = shuffled[:, :k] if members.shape[1] >= k else np.zeros((len(slots), k), np.int64)
    columns = np.where((slot_counts >= k)[:, None], without, columns_with_replacement(rng, slot_counts, k))
    return members[slots[:, None], columns]


def shuffled_columns(rng: np.random.Generator, counts: np.ndarray, width: int) -> np.ndarray:
    """[R, width] a random order of each row's first ``counts[r]`` member columns, the padding after them."""
    keys = rng.random((len(counts), width))
    keys[np.arange(width)[None, :] >= counts[:, None]] = np.inf  # padding sorts last
    return np.argsort(keys, axis=1)


def columns_with_replacement(rng: np.random.Generator, counts: np.ndarray, k: int) -> np.ndarray:
    """[R, k] member columns drawn uniformly with replacement from each row's first ``counts[r]``."""
    return np.floor(rng.random((len(counts), k)) * counts[:, None]).astype(np.int64)


# data.balance -> plan(rng, members, counts, p, k, num_batches) -> [num_batches, p, k] dataset indices
BALANCES: dict[str, Callable[..., np.ndarray]] = {"identity": identity_plan, "image": image_plan}
