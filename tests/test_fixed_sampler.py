"""``FixedBatchSampler`` (``sampler.type: fixed``): torch's DistributedSampler + BatchSampler
batches bit for bit, the padding repeats marked per sample, exact resume at the same world size
and an elastic one at another (every sample once per epoch over all ranks)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import BatchSampler, DistributedSampler

from hetload.samplers import BucketBatchSampler, MarkedIndices
from hetload.samplers.bucket_sampler import ResumeError
from hetload.samplers.fixed import FixedBatchSampler
from hetload.samplers.repeats import MarkRepeats, mark


def torch_batches(n, batch_size, world, rank, shuffle, seed, drop_last, epoch):
    """The reference: the pair of torch samplers ``build_loader`` used before."""
    order = DistributedSampler(
        range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    order.set_epoch(epoch)
    return [list(b) for b in BatchSampler(order, batch_size, drop_last)]


def make(n, b, world, rank, shuffle=True, seed=0, drop_last=False):
    return FixedBatchSampler(
        n, b, shuffle=shuffle, seed=seed, drop_last=drop_last, num_replicas=world, rank=rank
    )


cases = st.tuples(
    st.integers(1, 40),  # n
    st.integers(1, 6),  # batch size
    st.integers(1, 4),  # world
    st.booleans(),  # shuffle
    st.integers(0, 5),  # seed
    st.booleans(),  # drop_last
    st.integers(0, 3),  # epoch
)


@settings(max_examples=60, deadline=None)
@given(cases)
def test_same_batches_as_torch_and_repeats_marked(case) -> None:
    n, b, world, shuffle, seed, drop_last, epoch = case
    served = Counter()
    steps = set()
    for rank in range(world):
        sampler = make(n, b, world, rank, shuffle, seed, drop_last)
        sampler.set_epoch(epoch)
        got = list(sampler)
        assert [list(x) for x in got] == torch_batches(
            n, b, world, rank, shuffle, seed, drop_last, epoch
        )
        assert len(got) == len(sampler)
        steps.add(len(got))
        for batch in got:
            flags = getattr(batch, "is_repeat", (False,) * len(batch))
            served.update(i for i, r in zip(batch, flags) if not r)
    assert len(steps) == 1  # ranks in step
    assert set(served.values()) <= {1}  # a sample not marked as a repeat is served once
    if not drop_last:
        assert sorted(served) == list(range(n))  # ... and every sample is


def _drain(sampler, upto=None):
    out = []
    for step, batch in enumerate(sampler):
        if upto is not None and step == upto:
            break
        out.append(batch)
    return out


@settings(max_examples=40, deadline=None)
@given(cases, st.integers(0, 20))
def test_resume_at_the_same_world_is_exact(case, at) -> None:
    n, b, world, shuffle, seed, drop_last, epoch = case
    for rank in range(world):
        full = make(n, b, world, rank, shuffle, seed, drop_last)
        full.set_epoch(epoch)
        reference = [list(x) for x in full]
        k = min(at, len(reference))
        first = make(n, b, world, rank, shuffle, seed, drop_last)
        first.set_epoch(epoch)
        head = _drain(first, upto=k)
        state = first.state_dict(consumed=k)
        again = make(n, b, world, rank, shuffle, seed + 9, drop_last)  # the state's seed wins
        again.load_state_dict(state)
        again.set_epoch(epoch)  # the usual loop: set_epoch of the saved epoch keeps the point
        assert again.resume_step == k
        assert [list(x) for x in head] + [list(x) for x in again] == reference


@settings(max_examples=40, deadline=None)
@given(cases, st.integers(1, 5), st.integers(1, 5), st.integers(0, 10), st.integers(0, 10))
def test_elastic_resume_serves_every_sample_once(case, world2, world3, at, at2) -> None:
    """W ranks take ``at`` steps, W2 ranks ``at2`` more, W3 ranks finish the epoch."""
    n, b, world, shuffle, seed, _, epoch = case
    served = Counter()

    def take(samplers, upto=None):
        for sampler in samplers:
            for batch in _drain(sampler, upto):
                flags = getattr(batch, "is_repeat", (False,) * len(batch))
                served.update(i for i, r in zip(batch, flags) if not r)

    first = [make(n, b, world, r, shuffle, seed) for r in range(world)]
    for s in first:
        s.set_epoch(epoch)
    k = min(at, first[0].steps_per_epoch)
    take(first, k)
    state = first[0].state_dict(consumed=k)
    second = [make(n, b, world2, r, shuffle, seed) for r in range(world2)]
    for s in second:
        s.load_state_dict(state)
    assert len({len(s) for s in second}) == 1
    k2 = min(at2, len(second[0]))
    start = second[0].resume_step  # read before iterating: a finished epoch clears it
    take(second, k2)
    # any rank's state; steps count from the epoch's start (a same-world resume starts at k)
    state = second[1 % world2].state_dict(consumed=start + k2)
    third = [make(n, b, world3, r, shuffle, seed) for r in range(world3)]
    for s in third:
        s.load_state_dict(state)
    take(third)
    assert served == Counter(range(n))


def test_repeats_reach_the_batch() -> None:
    """``MarkRepeats`` turns per-sample flags into ``is_repeat`` of each sample."""
    data = [{"x": i} for i in range(5)]
    wrapped = MarkRepeats(data)
    out = wrapped.__getitems__(MarkedIndices([3, 4, 0], [False, False, True]))
    assert [s["is_repeat"] for s in out] == [False, False, True]
    assert [s["is_repeat"] for s in mark([{"a": 1}, {"a": 2}], True)] == [True, True]
    with pytest.raises(ValueError, match="2 is_repeat flags for a batch of 3"):
        MarkedIndices([1, 2, 3], [True, False])


def test_refuses_foreign_states() -> None:
    sampler = make(10, 3, 1, 0)
    with pytest.raises(ResumeError, match="not a FixedBatchSampler state"):
        sampler.load_state_dict(BucketBatchSampler([5] * 10, 20).state_dict())
    with pytest.raises(ResumeError, match="another dataset length"):
        sampler.load_state_dict(make(11, 3, 1, 0).state_dict())
    state = sampler.state_dict()
    with pytest.raises(ResumeError, match="consumed=99"):
        sampler.load_state_dict({**state, "consumed": 99})
    with pytest.raises(ResumeError, match="malformed"):
        sampler.load_state_dict({**state, "history": [[0, 1]]})
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        FixedBatchSampler(3, 0)


@pytest.mark.parametrize("kind", ["fixed", "bucket"])
def test_checkpoint_after_the_sampler_was_drained_ahead(kind: str) -> None:
    """After an elastic resume, DataLoader workers drain the sampler ahead of the consumer; a
    checkpoint taken then (at the consumer's step) must still resume exactly (it lost the
    elastic history before, serving samples twice)."""
    import numpy as np

    sizes = np.arange(1, 41)

    def build(world, rank):
        if kind == "fixed":
            return FixedBatchSampler(40, 3, seed=1, num_replicas=world, rank=rank)
        return BucketBatchSampler(sizes, 60, seed=1, num_replicas=world, rank=rank)

    first = [build(2, r) for r in range(2)]
    served = Counter(i for s in first for i in next(iter(s)))  # one step on 2 ranks
    state = first[0].state_dict(consumed=1)
    second = build(1, 0)
    second.load_state_dict(state)
    drained = list(second)  # prefetched to the end
    served.update(i for batch in drained[:2] for i in batch)  # the consumer took 2
    third = build(1, 0)
    third.load_state_dict(second.state_dict(consumed=2))
    served.update(i for batch in third for i in batch)
    assert served == Counter(range(40))
