"""Resuming a BucketBatchSampler: exactly the remaining batches, in a loop and through a
DataLoader with workers that prefetch; a state from other data or another world is refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hetload.samplers import BucketBatchSampler, ResumeError


def lognormal_sizes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(np.exp(rng.normal(np.log(10_000), 1.0, n))), 500, 200_000).astype(
        np.int64
    )


class IndexDataset(torch.utils.data.Dataset):
    """Returns its index: what the loader delivers is exactly what the sampler chose."""

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, i: int) -> int:
        return i


def as_list(batch: list[int]) -> list[int]:
    return list(batch)


@given(
    n=st.integers(0, 400),
    world=st.integers(1, 6),
    epoch=st.integers(0, 3),
    cut=st.floats(0, 1),
    seed=st.integers(0, 1000),
)
def test_plain_loop_resume_yields_the_rest(n, world, epoch, cut, seed):
    sizes = lognormal_sizes(n, seed=seed)
    rank = seed % world
    full = BucketBatchSampler(sizes, 524_288, seed=seed, num_replicas=world, rank=rank)
    full.set_epoch(epoch)
    expected = list(full)

    run = BucketBatchSampler(sizes, 524_288, seed=seed, num_replicas=world, rank=rank)
    run.set_epoch(epoch)
    k = int(cut * len(expected))
    it = iter(run)
    got = [next(it) for _ in range(k)]
    state = pickle.loads(pickle.dumps(run.state_dict()))
    assert state["consumed"] == k

    resumed = BucketBatchSampler(sizes, 524_288, seed=0, num_replicas=world, rank=rank)
    resumed.load_state_dict(state)
    assert len(resumed) == len(expected) - k
    assert resumed.resume_step == k
    rest = list(resumed)
    assert got + rest == expected
    # the resume covers one iteration; the next epoch is whole again
    resumed.set_epoch(epoch + 1)
    full.set_epoch(epoch + 1)
    assert list(resumed) == list(full)


def test_dataloader_with_workers_resumes_from_consumed_not_prefetched():
    sizes = lognormal_sizes(3000, seed=4)
    sampler = BucketBatchSampler(sizes, 524_288, seed=5, num_replicas=2, rank=1)
    sampler.set_epoch(2)
    expected = list(sampler)
    sampler.set_epoch(2)

    def loader(s):
        return torch.utils.data.DataLoader(
            IndexDataset(), batch_sampler=s, collate_fn=as_list, num_workers=2, prefetch_factor=2
        )

    consumed = 17
    got = []
    for step, batch in enumerate(loader(sampler), start=sampler.resume_step):
        got.append(batch)
        if step + 1 == consumed:
            state = sampler.state_dict(consumed=step + 1)
            break
    # the loader has pulled batches ahead of the loop; the sampler's own count is ahead too
    assert sampler.state_dict()["consumed"] > consumed

    resumed = BucketBatchSampler(sizes, 524_288, seed=5, num_replicas=2, rank=1)
    resumed.load_state_dict(state)
    rest = list(loader(resumed))
    assert got + rest == expected


def test_refuses_other_data_other_budget():
    """(Another world size is an elastic resume: tests/test_elastic_resume.py.)"""
    sizes = lognormal_sizes(500)
    state = BucketBatchSampler(sizes, 524_288, num_replicas=4).state_dict()
    changed = sizes.copy()
    changed[10] += 1
    with pytest.raises(ResumeError, match="other sizes"):
        BucketBatchSampler(changed, 524_288, num_replicas=4).load_state_dict(state)
    with pytest.raises(ResumeError, match="other sizes"):
        BucketBatchSampler(sizes, 400_000, num_replicas=4).load_state_dict(state)
    with pytest.raises(ResumeError, match="missing"):
        BucketBatchSampler(sizes, 524_288, num_replicas=4).load_state_dict({"epoch": 1})
    with pytest.raises(ResumeError, match="consumed=999"):
        BucketBatchSampler(sizes, 524_288, num_replicas=4).load_state_dict(
            {**state, "consumed": 999}
        )
    with pytest.raises(ValueError, match="consumed"):
        BucketBatchSampler(sizes, 524_288).state_dict(consumed=-1)


def test_same_sizes_in_another_dtype_resume():
    sizes = lognormal_sizes(500)
    state = BucketBatchSampler(sizes.astype(np.int32), 524_288).state_dict(consumed=3)
    resumed = BucketBatchSampler(sizes, 524_288)
    resumed.load_state_dict(state)
    assert resumed.resume_step == 3


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")
def test_stateful_dataloader_resumes_exactly():
    stateful = pytest.importorskip("torchdata.stateful_dataloader")
    sizes = lognormal_sizes(3000, seed=6)

    def loader():
        sampler = BucketBatchSampler(sizes, 524_288, seed=2, num_replicas=3, rank=2)
        sampler.set_epoch(1)
        return stateful.StatefulDataLoader(
            IndexDataset(),
            batch_sampler=sampler,
            collate_fn=as_list,
            num_workers=2,
            prefetch_factor=2,
        )

    expected = list(loader())
    first = loader()
    got = []
    for batch in first:
        got.append(batch)
        if len(got) == 11:
            state = first.state_dict()
            break
    resumed = loader()
    resumed.load_state_dict(state)
    assert got + list(resumed) == expected


def test_set_epoch_keeps_a_loaded_resume_point():
    sizes = lognormal_sizes(800)
    full = BucketBatchSampler(sizes, 524_288)
    full.set_epoch(5)
    expected = list(full)
    resumed = BucketBatchSampler(sizes, 524_288)
    resumed.load_state_dict({**full.state_dict(), "consumed": 4})
    resumed.set_epoch(5)  # the top of the usual epoch loop
    assert list(resumed) == expected[4:]
    resumed.set_epoch(5)
    assert list(resumed) == expected, "once yielded to the end, the epoch is whole again"
