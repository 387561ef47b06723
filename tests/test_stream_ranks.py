"""Each rank plans its own batches only (issue 15, scale): the other ranks' counts come from
one all-gather (simulated here by handing each rank what the others would send), and an
elastic resume dry-runs only the old ranks a new rank takes over. Checked against the dry run
of every rank (``ShardStream.plan``), which needs no communication."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_elastic_resume import make_samples

from hetload.data import ShardStream, stream_state
from hetload.data.stream_plan import Totals, even_rank, exact_totals
from hetload.data.stream_segments import EpochPlanner, sources
from hetload.shards.writer import write_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ranks")
    write_shards(make_samples(90, seed=4), root, max_count=4)  # 23 shards
    return root


def stream(root: Path, rank: int, world: int, **kwargs) -> ShardStream:
    return ShardStream(
        root, rank=rank, world_size=world, seed=2, max_tokens=900, buffer_size=8, **kwargs
    )


class FakeGroup:
    """What the collectives of ``share_plan`` return: every rank's values, computed here (before
    the test counts drafts) from each rank's own draft, as each would compute and send them."""

    def __init__(self, ranks: list[ShardStream], workers: int) -> None:
        drafts = []
        for s in ranks:
            history, _, _ = s._resume_for(s.epoch, workers)
            planner = s._planner(s.epoch, history)
            draft = planner.draft(len(history), s.world_size, workers, s.rank, True)
            drafts.append((planner, draft))
        self.table = np.asarray([d.summary() for _, d in drafts], dtype=np.int64)
        steps = stream_state.steps_of(self.table, ranks[0].even)
        evened = [p.evened(d, steps) for p, d in drafts]
        self.sums = [sum(e.repeated for e in evened), sum(e.dropped for e in evened)]
        self.sums.append(sum(e.split for e in evened))

    def gather(self, values):
        assert values in self.table.tolist()  # this rank's own summary is among them
        return self.table

    def reduce(self, values):
        return self.sums


@settings(
    deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    world=st.integers(2, 5),
    workers=st.integers(1, 3),
    even=st.sampled_from(["exact", "pad", "truncate"]),
    resume=st.one_of(st.none(), st.tuples(st.integers(1, 6), st.integers(1, 3), st.floats(0, 1))),
)
def test_shared_counts_give_the_plan_of_every_rank_dry_run(shards, world, workers, even, resume):
    state = None
    if resume is not None:  # first an elastic resume, so the shared segment is g = 1
        old_world, old_workers, cut = resume
        old = stream(shards, 0, old_world, even=even)
        step = int(cut * old.plan(old_workers).steps)
        state = old.state_dict(step=step, num_workers=old_workers)
    ranks = [stream(shards, r, world, even=even) for r in range(world)]
    for s in ranks:
        if state is not None:
            s.load_state_dict(state)
    reference = ranks[0].plan(workers)  # every rank dry-run, no communication
    group = FakeGroup(ranks, workers)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(stream_state, "_all_gather", group.gather)
        mp.setattr(stream_state, "_all_reduce", group.reduce)
        mp.setattr(stream_state.PlannedStream, "_in_group", lambda self: True)
        for r in range(world):
            fresh = stream(shards, r, world, even=even)
            if state is not None:
                fresh.load_state_dict(state)
            drafted = Counter()
            real = EpochPlanner.draft

            def counting(self, g, w, k, rank, keep, real=real, drafted=drafted):
                drafted[(g, rank)] += 1
                return real(self, g, w, k, rank, keep)

            mp.setattr(EpochPlanner, "draft", counting)
            assert fresh.share_plan(workers)
            mine = fresh._mine(workers)
            mp.setattr(EpochPlanner, "draft", real)
            g = mine.segment
            # this rank's draft only (and, resumed, the old ranks it takes over)
            assert {rank for (seg, rank) in drafted if seg == g} == {r}
            if g:
                old_world = state["segments"][-1][0]
                assert {rank for (seg, rank) in drafted if seg == g - 1} == {
                    old for old, _, _ in sources(old_world, world, r)
                }
            assert mine.steps == reference.steps
            for name in ("samples", "repeated", "dropped", "split"):
                assert getattr(mine, name) == getattr(reference, name), name
            assert mine.quota[r] == reference.quota[r]
            for a, b in zip(mine.streams[r], reference.streams[r]):
                assert [a.batch(i).tolist() for i in range(len(a))] == [
                    b.batch(i).tolist() for i in range(len(b))
                ]
                assert a.repeat.tolist() == b.repeat.tolist()
    finally:
        mp.undo()


@settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(world=st.integers(1, 6), workers=st.integers(1, 3), seed=st.integers(0, 20))
def test_exact_totals_from_three_numbers_per_rank(shards, world, workers, seed):
    """The closed form ``share_plan`` uses for ``even="exact"`` against evening every rank."""
    s = stream(shards, 0, min(world, 23))
    planner = EpochPlanner(
        starts=s._starts,
        sizes=s._flat_sizes,
        batcher=s.batcher,
        seed=seed,
        epoch=0,
        shuffle=True,
        even="exact",
        history=[],
    )
    drafts = [planner.draft(0, world, workers, r, True) for r in range(world)]
    summaries = np.asarray([d.summary() for d in drafts], dtype=np.int64)
    steps = int(summaries[:, 0].max())
    evened = [even_rank(d, steps, "exact", planner.borrow) for d in drafts]
    assert all(sum(e.quota) == steps for e in evened)
    expected = Totals(
        steps=steps,
        samples=90,
        repeated=sum(e.repeated for e in evened),
        dropped=90 - int(summaries[:, 1].sum()),
        split=sum(e.split for e in evened),
    )
    assert exact_totals(summaries) == expected


@pytest.mark.parametrize(("old", "new"), [(4, 2), (3, 2), (2, 3), (2, 5), (5, 5), (1, 4)])
def test_every_old_rank_is_taken_over_once(old, new):
    """The sources rule: each old rank's carried shards go to the new ranks in whole slots
    ``j % share``, every slot exactly once."""
    slots = Counter()
    for rank in range(new):
        for r, slot, share in sources(old, new, rank):
            assert 0 <= slot < share
            slots[(r, slot, share)] += 1
    covered = Counter()
    for (r, _slot, share), n in slots.items():
        assert n == 1
        covered[r] += 1 / share
    assert covered == Counter({r: 1.0 for r in range(old)})


def test_a_job_without_a_process_group_does_not_communicate(shards):
    s = stream(shards, 1, 2)
    assert not s.share_plan(2)  # no group: the plan is the dry run of every rank
    assert s.num_batches(2) == s.plan(2).steps


@pytest.mark.parametrize(("old_world", "new_world"), [(4, 2), (3, 2), (2, 4), (2, 3)])
def test_new_ranks_take_over_the_old_ranks_carried_shards(shards, old_world, new_world):
    """The takeover rule written out plainly (one worker per rank, so a rank's shard list is
    its dealing order): old rank ``o``'s carried shards are those it holds with a sample it
    has not served by the step; shrinking, new rank ``r`` takes those of ``o % W' == r`` in
    order; growing, the ``i``-th new rank on old rank ``o = r % W`` takes every ``m``-th."""
    old = stream(shards, 0, old_world)
    plan = old.plan(1)
    step = plan.steps // 2
    state = old.state_dict(step=step, num_workers=1)
    carried = []
    for o in range(old_world):
        batches = plan.streams[o][0]
        served = {
            x for b in range(step) if not batches.repeat[b] for x in batches.batch(b).tolist()
        }
        own = plan.shards[o][0]
        left = [k for k in own if set(range(*old._starts[k : k + 2].tolist())) - served]
        carried.append(left)
    for r in range(new_world):
        new = stream(shards, r, new_world)
        new.load_state_dict(state)
        got = new.plan(1).shards[r][0]
        if new_world <= old_world:
            expected = [k for o in range(r, old_world, new_world) for k in carried[o]]
        else:
            o = r % old_world
            share = len(range(o, new_world, old_world))
            expected = carried[o][r // old_world :: share]
        assert got == expected
