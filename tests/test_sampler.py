"""PKSampler: P distinct ids x K images per batch, seeded, covering, resumable, split across ranks."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from trytry_reid.data import PKSampler
from trytry_reid.data.sampler import BALANCES, distinct_groups, image_chunks

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


@pytest.mark.parametrize("balance", BALANCES)
@pytest.mark.parametrize("p,k,num_batches", [(4, 4, None), (3, 2, None), (11, 3, None), (5, 4, 13), (10, 2, 7)])
def test_every_batch_is_p_distinct_ids_of_k_images(p, k, num_batches, balance):
    sampler = PKSampler(LABELS, p, k, seed=1, num_batches=num_batches, balance=balance)
    chunks = sum(max(n // k, 1) for n in Counter(LABELS).values())  # image balance: a pass is chunks of k
    expected = num_batches or (math.ceil(11 / p) if balance == "identity" else max(1, chunks // p))
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


def test_image_chunks_cut_each_identity_into_disjoint_chunks_of_k():
    counts = np.array([2, 4, 9, 12])
    ids, within, columns = image_chunks(np.random.default_rng(0), counts, 12, 4)
    assert ids.tolist() == [0, 1, 2, 2, 3, 3, 3] and within.tolist() == [0, 0, 0, 1, 0, 1, 2]
    assert ((columns >= 0) & (columns < counts[ids][:, None])).all()  # never a padding column
    for pid in (1, 2, 3):  # n >= k: n // k chunks, no image twice (9 images: one left out)
        used = columns[ids == pid].reshape(-1).tolist()
        assert len(used) == len(set(used)) == counts[pid] // 4 * 4


def test_image_balance_draws_ids_by_their_images_and_covers_the_images():
    """torchreid's sampling: an identity with n >= k images gives n // k chunks per pass, so it is drawn in
    proportion to its images, and a pass uses (nearly) every image once."""
    sizes = [4, 8, 8, 12, 12, 16, 16, 20]
    labels = [pid for pid, count in enumerate(sizes) for _ in range(count)]
    sampler = PKSampler(labels, 2, 4, seed=0, balance="image")
    assert len(sampler) == 12  # 24 chunks of 4, 2 to a batch
    draws, coverage = Counter(), []
    for number in range(100):
        batches = epoch(sampler, number)
        coverage.append(len({i for batch in batches for i in batch}) / len(labels))
        draws.update(labels[batch[j]] for batch in batches for j in range(0, len(batch), 4))
    assert np.mean(coverage) > 0.9  # the identity balance covers about 2/3 at the same number of batches
    assert 4 < draws[7] / draws[0] < 6  # 5 chunks a pass against 1


def test_distinct_groups_by_hand():
    # ids 0 0 1 2 1 3, p=2: the second 0 waits for the next row; nothing is dropped
    assert distinct_groups(np.array([0, 0, 1, 2, 1, 3]), 2).tolist() == [[0, 2], [1, 3], [4, 5]]
    # 5 5 5 7, p=2: rows (5,7), then two 5s that cannot fill a row of distinct ids are dropped
    assert distinct_groups(np.array([5, 5, 5, 7]), 2).tolist() == [[0, 3]]
    assert distinct_groups(np.array([5, 5]), 2).shape == (0, 2)


@pytest.mark.parametrize("balance", BALANCES)
def test_seeded_runs_repeat_and_seeds_and_epochs_differ(balance):
    first = epoch(PKSampler(LABELS, 4, 4, seed=3, balance=balance), 2)
    assert epoch(PKSampler(LABELS, 4, 4, seed=3, balance=balance), 2) == first
    assert epoch(PKSampler(LABELS, 4, 4, seed=4, balance=balance), 2) != first
    assert epoch(PKSampler(LABELS, 4, 4, seed=3, balance=balance), 3) != first
    torch.manual_seed(123)
    np.random.seed(123)  # global RNG state must not matter
    assert epoch(PKSampler(LABELS, 4, 4, seed=3, balance=balance), 2) == first


@pytest.mark.parametrize("balance", BALANCES)
def test_start_batch_resumes_the_tail_of_the_epoch(balance):
    sampler = PKSampler(LABELS, 3, 2, seed=5, num_batches=9, balance=balance)
    full = epoch(sampler, 4)
    for start in (0, 1, 5, 9):
        assert epoch(sampler, 4, start_batch=start) == full[start:]
        assert len(sampler) == 9 - start
    with pytest.raises(ValueError, match="start_batch=10"):
        sampler.set_epoch(4, start_batch=10)


@pytest.mark.parametrize("balance", BALANCES)
@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_partition_the_global_batch(world_size, balance):
    p, k = 8, 2
    labels = [i // 3 for i in range(3 * 20)]
    single = epoch(PKSampler(labels, p, k, seed=9, balance=balance), 1)
    ranks = [epoch(PKSampler(labels, p, k, seed=9, rank=r, world_size=world_size, balance=balance), 1)
             for r in range(world_size)]
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
    with pytest.raises(ValueError, match="balance='pid'; expected one of identity, image"):
        PKSampler(LABELS, 4, 2, balance="pid")


def test_works_as_a_dataloader_batch_sampler():
    dataset = torch.utils.data.TensorDataset(torch.tensor(LABELS))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=PKSampler(LABELS, 4, 3, seed=0))
    batches = [batch[0].tolist() for batch in loader]
    assert len(batches) == 3 and all(len(set(b)) == 4 and len(b) == 12 for b in batches)


def test_an_epoch_is_one_pass_of_the_configured_balance():
    from trytry_reid.jobs.builders import steps_per_epoch
    from trytry_reid.jobs.config import load_config

    labels = [pid for pid, count in enumerate([2, 2, 2, 2, 9, 9, 9, 9]) for _ in range(count)]  # 44 images
    config = load_config(None, ["data.name=digits", "data.batch_p=2", "data.batch_k=4"])
    assert steps_per_epoch(config, labels) == 5  # identity: 44 images // 8 a batch
    config.data.balance = "image"
    assert steps_per_epoch(config, labels) == 6  # image: 4 + 4 * 2 chunks of 4, 2 a batch
    config.train.steps_per_epoch = 3
    assert steps_per_epoch(config, labels) == 3  # the cap holds for both
