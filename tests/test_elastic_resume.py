"""Exact coverage and elastic resume, in one process.

- ``BucketBatchSampler`` and ``ShardStream``: every sample exactly once per epoch across all
  ranks (marked ``is_repeat`` where a step had to be filled), ranks stepping equally;
- a state taken at step ``s`` (any rank's) resumes the job at the same or another world size
  and worker count, chained, still every sample once, the rest of the epoch as the plan says;
- the resume with DataLoader workers and prefetching counts what the loop took, and torchdata's
  ``StatefulDataLoader`` resumes the stream by itself.

``tests/test_distributed_harness.py`` runs the same through torch.distributed processes.
"""

from __future__ import annotations

import itertools
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from hetload.config import build_loader
from hetload.data import ShardStream
from hetload.data.stream_plan import interleave
from hetload.samplers import BucketBatchSampler, MarkedIndices, ResumeError
from hetload.shards.writer import write_shards


def make_samples(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.lognormal(3.5, 0.9, n).astype(int), 1, 400)
    return [{"verts": np.zeros((int(s), 3), np.float32), "label": i} for i, s in enumerate(sizes)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("elastic")
    write_shards(make_samples(61, seed=3), root, max_count=4)  # 16 shards, the last of 1
    return root


# ------------------------------------------------------------------ reference helpers
def predicted(stream: ShardStream, num_workers: int, rank: int) -> list[list[int]]:
    """A rank's batches (global sample numbers) as the plan says, from its resume step on:
    worker batches taken round-robin, exhausted workers skipped (DataLoader's order)."""
    plan = stream.plan(num_workers)
    order = interleave(plan.quota[rank])
    taken = [0] * len(plan.quota[rank])
    out = []
    for w in order.tolist():
        out.append(plan.streams[rank][w].batch(taken[w]).tolist())
        taken[w] += 1
    return out[stream.resume_step(num_workers) :]


def labels(batches) -> list[tuple[list[int], list[bool]]]:
    return [(b["label"].tolist(), b["is_repeat"].tolist()) for b in batches]


def fresh(batches: list[tuple[list[int], list[bool]]]) -> list[int]:
    """The samples served for the first time (repeats left out)."""
    return [x for lab, rep in batches for x, again in zip(lab, rep) if not again]


def stream(root: Path, rank: int, world: int, **kwargs) -> ShardStream:
    kwargs.setdefault("max_tokens", 900)
    kwargs.setdefault("buffer_size", 8)
    return ShardStream(root, rank=rank, world_size=world, seed=5, **kwargs)


# ------------------------------------------------------------------ BucketBatchSampler
@settings(deadline=None, max_examples=40)
@given(
    n=st.integers(1, 300),
    worlds=st.lists(st.integers(1, 6), min_size=2, max_size=3),
    cuts=st.lists(st.floats(0, 1), min_size=2, max_size=2),
    seed=st.integers(0, 50),
    epoch=st.integers(0, 3),
)
def test_sampler_chained_elastic_resume_serves_every_sample_once(n, worlds, cuts, seed, epoch):
    sizes = np.random.default_rng(seed).integers(1, 5000, n)
    served: Counter = Counter()
    state = None
    for i, world in enumerate(worlds):
        ranks = [
            BucketBatchSampler(sizes, 8192, seed=seed, num_replicas=world, rank=r)
            for r in range(world)
        ]
        for s in ranks:
            if state is not None:
                s.load_state_dict(pickle.loads(pickle.dumps(state)))
            s.set_epoch(epoch)  # the epoch the state is in: the resume point stays
        assert len({len(s) for s in ranks}) == 1  # ranks step equally
        last = i == len(worlds) - 1
        take = len(ranks[0]) if last else int(cuts[i] * len(ranks[0]))
        states = []
        for s in ranks:
            it = iter(s)
            for _ in range(take):
                batch = next(it)
                if not getattr(batch, "is_repeat", False):
                    served.update(batch)
            states.append(s.state_dict())
        assert all(st_ == states[0] for st_ in states)  # any rank's state is the job's
        state = states[0]
    assert served == Counter(range(n))  # every sample exactly once, repeats marked


def test_sampler_repeats_are_marked_and_counted():
    sizes = np.full(6, 100)  # 6 samples, 4 ranks, each batch one sample: 8 slots
    ranks = [
        BucketBatchSampler(sizes, 100, num_replicas=4, rank=r, shuffle=False) for r in range(4)
    ]
    batches = [b for s in ranks for b in s]
    assert all(isinstance(b, MarkedIndices) for b in batches)  # an epoch with repeats
    repeats = [b for b in batches if b.is_repeat]
    assert len(repeats) == ranks[0].stats().duplicated == 2
    assert pickle.loads(pickle.dumps(repeats[0])).is_repeat  # crosses worker queues
    originals = [b for b in batches if not b.is_repeat]
    assert Counter(i for b in originals for i in b) == Counter(range(6))


def test_sampler_resume_at_the_same_world_is_the_rest_of_the_plan():
    sizes = np.random.default_rng(1).integers(1, 5000, 400)
    full = BucketBatchSampler(sizes, 8192, num_replicas=3, rank=2)
    expected = list(full)
    state = dict(full.state_dict(consumed=4), history=[])
    again = BucketBatchSampler(sizes, 8192, num_replicas=3, rank=2)
    again.load_state_dict(state)
    assert list(again) == expected[4:]
    with pytest.raises(ResumeError, match="history"):
        again.load_state_dict({**state, "history": [[0, 1]]})


# ------------------------------------------------------------------ ShardStream: the plan
@settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.tuples(st.integers(1, 5), st.integers(0, 3)),
    second=st.tuples(st.integers(1, 7), st.integers(0, 3)),
    cut=st.floats(0, 1),
    even=st.sampled_from(["exact", "pad"]),
    epoch=st.integers(0, 2),
)
def test_stream_plan_elastic_resume_covers_every_sample_once(
    shards, first, second, cut, even, epoch
):
    (world, workers), (world2, workers2) = first, second
    old = stream(shards, 0, world, even=even)
    old.set_epoch(epoch)
    plan = old.plan(workers)
    assert len({sum(q) for q in plan.quota}) == 1  # equal steps
    step = int(cut * plan.batches_per_rank())
    state = old.state_dict(step=step, num_workers=workers)
    served: Counter = Counter()
    for rank in range(world):
        for w, taken in enumerate(plan.worker_steps(rank, step)):
            for b in range(taken):
                if not plan.streams[rank][w].repeat[b]:
                    served.update(plan.streams[rank][w].batch(b).tolist())
    repeated = 0
    for rank in range(world2):
        new = stream(shards, rank, world2, even=even)
        new.load_state_dict(state)
        new_plan = new.plan(workers2)
        assert len({sum(q) for q in new_plan.quota}) == 1
        # continuing the same plan (same world and workers): from the resume step on
        done = new_plan.worker_steps(rank, new.resume_step(workers2))
        for w, batches in enumerate(new_plan.streams[rank]):
            for b in range(done[w], len(batches)):
                ids = batches.batch(b).tolist()
                if batches.repeat[b]:
                    repeated += len(ids)
                else:
                    served.update(ids)
    assert served == Counter(range(61))
    if new.resume_step(workers2) == 0:  # (a continued plan has served some repeats before)
        assert repeated == new_plan.repeated
    if even == "exact":
        # a rank repeats a sample only where it has fewer samples than steps
        for row in new_plan.streams:
            own = sum(int((s.hi - s.lo)[~s.repeat].sum()) for s in row)
            if any(s.repeat.any() for s in row):
                assert own < new_plan.batches_per_rank()


# ------------------------------------------------------------------ ShardStream: reading
def run(s: ShardStream, num_workers: int, take: int | None = None) -> list:
    loader = DataLoader(
        s, batch_size=None, num_workers=num_workers, prefetch_factor=4 if num_workers else None
    )
    out = []
    for batch in loader:
        out.append(batch)
        if take is not None and len(out) == take:
            break
    return labels(out)


def test_exact_coverage_two_ranks_two_workers_equal_steps(shards):
    per_rank = [run(stream(shards, r, 2), 2) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1])
    served = Counter(x for batches in per_rank for x in fresh(batches))
    assert served == Counter(range(61))
    for r in range(2):
        assert [lab for lab, _ in per_rank[r]] == predicted(stream(shards, r, 2), 2, r)


def test_truncate_drops_and_reports_exact_does_not(shards):
    s = stream(shards, 0, 3, even="truncate")
    stats = s.stats(2)
    served = sum(
        len(lab) for r in range(3) for lab, _ in run(stream(shards, r, 3, even="truncate"), 2)
    )
    assert stats["dropped"] > 0 and served == 61 - stats["dropped"]
    run(s, 2)
    assert any("not served" in entry.reason for entry in s.report)
    assert stream(shards, 0, 3).stats(2)["dropped"] == 0


def test_fewer_samples_than_steps_repeats_marked(tmp_path):
    # rank 1 gets the 1-sample shard, rank 0 the 10-sample one: 5 steps of 2
    write_shards(make_samples(11), tmp_path, max_count=10)
    ranks = [
        ShardStream(tmp_path, batch_size=2, rank=r, world_size=2, shuffle=False) for r in range(2)
    ]
    out = [labels(list(s)) for s in ranks]
    assert len(out[0]) == len(out[1]) == 5
    assert out[1] == [([10], [False])] + [([10], [True])] * 4
    assert ranks[0].stats()["repeated"] == 4
    assert Counter(x for batches in out for x in fresh(batches)) == Counter(range(11))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_with_workers_counts_what_the_loop_took(shards, workers):
    full = run(stream(shards, 1, 2), workers)
    before = stream(shards, 1, 2)
    seen = run(before, workers, take=3)  # the workers prefetched more than 3
    state = before.state_dict(step=3, num_workers=workers)
    after = stream(shards, 1, 2)
    after.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert after.num_batches(workers) == len(full) - 3
    assert seen + run(after, workers) == full


def test_state_dict_without_the_worker_count_is_refused(shards):
    s = stream(shards, 0, 2)
    run(s, 2, take=1)
    with pytest.raises(ValueError, match="num_workers"):
        s.state_dict(step=1)
    other = stream(shards, 0, 2, buffer_size=8, max_tokens=900, even="pad")
    with pytest.raises(ResumeError, match="fingerprint"):
        other.load_state_dict(s.state_dict(step=1, num_workers=2))


def test_stateful_dataloader_resumes_the_stream(shards):
    from torchdata.stateful_dataloader import StatefulDataLoader

    def loader(s):
        return StatefulDataLoader(s, batch_size=None, num_workers=2, prefetch_factor=3)

    full = labels(loader(stream(shards, 0, 2)))
    first = loader(stream(shards, 0, 2))
    seen = []
    for batch in first:
        seen.append(batch)
        if len(seen) == 3:  # the next step is worker 1's
            break
    state = pickle.loads(pickle.dumps(first.state_dict()))
    second = loader(stream(shards, 0, 2))
    second.load_state_dict(state)
    assert labels(seen) + labels(second) == full


@pytest.mark.parametrize(("first", "second"), [((2, 2), (3, 0)), ((3, 0), (2, 1))])
def test_elastic_resume_reading_serves_the_rest_as_predicted(shards, first, second):
    (world, workers), (world2, workers2) = first, second
    served: Counter = Counter()
    state = None
    step = 3
    for rank in range(world):
        s = stream(shards, rank, world)
        served.update(fresh(run(s, workers, take=step)))
        rank_state = s.state_dict(step=step, num_workers=workers)
        assert state is None or rank_state == state  # every rank's state is the same
        state = rank_state
    for rank in range(world2):
        s = stream(shards, rank, world2)
        s.load_state_dict(state)
        expected = predicted(s, workers2, rank)  # (before: iterating moves to the next epoch)
        rest = run(s, workers2)
        assert [lab for lab, _ in rest] == expected
        served.update(fresh(rest))
    assert served == Counter(range(61))


def test_build_loader_state_resumes_at_another_world_and_worker_count(shards):
    def config(rank, world, workers):
        return {
            "dataset": {"type": "ShardStream", "urls": str(shards)},
            "sampler": {"max_tokens": 900, "buffer_size": 8, "seed": 5},
            "distributed": {"world_size": world, "rank": rank},
            "loader": {"num_workers": workers},
            "device": {"type": "cpu"},
        }

    served: Counter = Counter()
    for rank in range(2):
        loader = build_loader(config(rank, 2, 2))
        loader.set_epoch(1)
        for step, batch in enumerate(loader):
            served.update(fresh(labels([batch])))
            if step == 2:
                state = pickle.loads(pickle.dumps(loader.state_dict()))
                break
    assert state["step"] == 3 and state["epoch"] == 1
    for rank in range(3):
        loader = build_loader(config(rank, 3, 0))
        loader.load_state_dict(state)
        loader.set_epoch(1)  # the saved epoch: the resume point stays
        expected = len(loader)  # the batches left on this rank
        rest = list(loader)
        assert len(rest) == expected
        served.update(fresh(labels(rest)))
    assert served == Counter(range(61))


# ------------------------------------------------------------------ the numpy dry run
@settings(deadline=None, max_examples=60)
@given(
    sizes=st.lists(st.integers(0, 3000), max_size=300),
    buffer_size=st.integers(2, 40),
    oversize=st.sampled_from(["skip", "alone"]),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_numpy_dry_run_cuts_what_the_bucketer_cuts(sizes, buffer_size, oversize, drop_last, seed):
    """``StreamBucketer.plan_positions`` (the plan's fast path) against the bucketer itself
    run on positions: the same batches, in the same order."""
    from hetload.samplers import StreamBucketer

    stage = StreamBucketer(
        int, 2000, buffer_size=buffer_size, seed=seed, oversize=oversize, drop_last=drop_last
    )
    reference = list(
        StreamBucketer(
            sizes.__getitem__,
            2000,
            buffer_size=buffer_size,
            seed=seed,
            oversize=oversize,
            drop_last=drop_last,
        )(range(len(sizes)))
    )
    pos, cuts = stage.plan_positions(np.asarray(sizes, dtype=np.int64))
    got = [pos[a:b].tolist() for a, b in itertools.pairwise(cuts)]
    assert got == [list(batch) for batch in reference]


def test_fixed_batches_numpy_dry_run():
    from hetload.data.shard_stream import fixed_batches

    batcher = fixed_batches(3)
    for n in (0, 1, 3, 7):
        pos, cuts = batcher.plan_positions(np.zeros(n, dtype=np.int64), 0)
        reference = list(batcher(range(n), int, 0))
        assert [pos[a:b].tolist() for a, b in itertools.pairwise(cuts)] == reference


def test_map_style_batches_carry_is_repeat_through_worker_processes():
    import hetload
    from hetload.samplers import MarkRepeats

    class Points(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, i: int) -> dict:
            return {"verts": np.zeros((100, 3), np.float32), "label": i}

    seen = []
    for rank in range(4):  # 6 samples, 4 ranks: two samples served twice
        sampler = BucketBatchSampler(np.full(6, 100), 100, num_replicas=4, rank=rank)
        loader = DataLoader(
            MarkRepeats(Points()), batch_sampler=sampler, collate_fn=hetload.collate, num_workers=2
        )
        seen += [(b["label"].tolist(), b["is_repeat"].tolist()) for b in loader]
    assert sum(again for _, rep in seen for again in rep) == 2
    assert sorted(fresh(seen)) == list(range(6))


@pytest.mark.parametrize(
    "segments",
    [
        [],
        [[0, 1, 3, 5]],
        [[2, 1, -1, 5]],
        [[2, True, 3, 5]],
        [[2, 1, None, 5]],
        [[2, 1, 3]],  # (version 1's segments: no steps per rank)
        [[2, 1, 6, 5]],  # more steps than the segment has
        [[2, 1, 3, "5"]],
        "x",
    ],
)
def test_malformed_stream_states_are_refused(shards, segments):
    s = stream(shards, 0, 2)
    state = s.state_dict(step=1, num_workers=0)
    with pytest.raises(ResumeError, match="segment"):
        s.load_state_dict({**state, "segments": segments})


def test_a_step_beyond_the_segment_is_refused(shards):
    s = stream(shards, 0, 2)
    state = s.state_dict(step=1, num_workers=0)
    s.load_state_dict({**state, "segments": [[2, 1, 10_000, 10_000]]})
    with pytest.raises(ResumeError, match="10000"):
        next(iter(s))
