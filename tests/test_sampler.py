"""PKSampler: P distinct ids x K images per batch, seeded, covering, resumable, split across ranks."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from trytry_reid.data import PKSampler

# 11 identities with uneven sizes: some below k=4, one with a single image
LABELS = [pid for pid, count in zip([3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377],
                                    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) for _ in range(count)]


def epoch(sampler: PKSampler, number: int, start_batch: int = 0) -> list[list[int]]:
    sampler.set_epoch(number, start_batch)
    return list(sampler)


def check_batch(batch: list[int], labels: list[int], p: int, k: int) -> None:
    """The definition, checked by hand: p groups of k, one distinct id each, no repeats unless needed."""
    assert len(batch) == p * k
    groups = [batch[i * k:(i + 1) * k] for i in range(p)]
    ids = [labels[g[0]] for g in groups]
    assert len(set(ids)) == p
    size = Counter(labels)
    for group, pid in zip(groups, ids):
        assert all(labels[i] == pid for i in group)
        if size[pid] >= k:
            assert len(set(group)) == k


@pytest.mark.parametrize("p,k,num_batches", [(4, 4, None), (3, 2, None), (11, 3, None), (5, 4, 13), (10, 2, 7)])
def test_every_batch_is_p_distinct_ids_of_k_images(p, k, num_batches):
    sampler = PKSampler(LABELS, p, k, seed=1, num_batches=num_batches)
    expected = num_batches or math.ceil(11 / p)
    for number in range(4):
        batches = epoch(sampler, number)
        assert len(batches) == len(sampler) == expected
        for batch in batches:
            check_batch(batch, LABELS, p, k)


def test_every_identity_is_seen_every_epoch():
    sampler = PKSampler(LABELS, 4, 2, seed=7)  # 11 ids, 3 batches of 4: one id repeats, none starved
    for number in range(20):
        seen = {LABELS[i] for batch in epoch(sampler, number) for i in batch}
        assert seen == set(LABELS)


def test_images_are_drawn_uniformly_within_an_identity():
    labels = [0] * 6 + [1] * 6
    sampler = PKSampler(labels, 2, 2, seed=0, num_batches=50)
    counts = Counter(i for number in range(20) for batch in epoch(sampler, number) for i in batch)
    assert set(counts) == set(range(12))
    assert max(counts.values()) / min(counts.values()) < 1.3  # 4,000 draws over 12 images


def test_seeded_runs_repeat_and_seeds_and_epochs_differ():
    first = epoch(PKSampler(LABELS, 4, 4, seed=3), 2)
    assert epoch(PKSampler(LABELS, 4, 4, seed=3), 2) == first
    assert epoch(PKSampler(LABELS, 4, 4, seed=4), 2) != first
    assert epoch(PKSampler(LABELS, 4, 4, seed=3), 3) != first
    torch.manual_seed(123)
    np.random.seed(123)  # global RNG state must not matter
    assert epoch(PKSampler(LABELS, 4, 4, seed=3), 2) == first


def test_start_batch_resumes_the_tail_of_the_epoch():
    sampler = PKSampler(LABELS, 3, 2, seed=5, num_batches=9)
    full = epoch(sampler, 4)
    for start in (0, 1, 5, 9):
        assert epoch(sampler, 4, start_batch=start) == full[start:]
        assert len(sampler) == 9 - start
    with pytest.raises(ValueError, match="start_batch=10"):
        sampler.set_epoch(4, start_batch=10)


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_partition_the_global_batch(world_size):
    p, k = 8, 2
    labels = [i // 3 for i in range(3 * 20)]
    single = epoch(PKSampler(labels, p, k, seed=9), 1)
    ranks = [epoch(PKSampler(labels, p, k, seed=9, rank=r, world_size=world_size), 1) for r in range(world_size)]
    for step, global_batch in enumerate(single):
        parts = [ranks[r][step] for r in range(world_size)]
        assert all(len(part) == p // world_size * k for part in parts)
        assert sum(parts, []) == global_batch


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="p=12 identities per batch, but the training set has only 11"):
        PKSampler(LABELS, 12, 2)
    with pytest.raises(ValueError, match="p=6 must be divisible by world_size=4"):
        PKSampler(LABELS, 6, 2, world_size=4)
    with pytest.raises(ValueError, match="rank=2"):
        PKSampler(LABELS, 4, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="k=0"):
        PKSampler(LABELS, 4, 0)
    with pytest.raises(ValueError, match="num_batches=0"):
        PKSampler(LABELS, 4, 2, num_batches=0)


def test_works_as_a_dataloader_batch_sampler():
    dataset = torch.utils.data.TensorDataset(torch.tensor(LABELS))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=PKSampler(LABELS, 4, 3, seed=0))
    batches = [batch[0].tolist() for batch in loader]
    assert len(batches) == 3 and all(len(set(b)) == 4 and len(b) == 12 for b in batches)
