"""BucketBatchSampler on heavy-tailed sizes: padding, freshness, and the invariants of dealing
sparse sizes among fewer windows (``spread``)."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hetload.samplers import BucketBatchSampler
from hetload.samplers.cost import Budget
from hetload.samplers.plan import (
    base_order,
    cut_in_pieces,
    cut_windows,
    deal_windows,
    epoch_rng,
    sort_key,
    window_reach,
)


def lognormal_sizes(n: int, seed: int = 0) -> np.ndarray:
    """Median 10k, sigma 1, clipped to 500..200k (scripts/bench_sampler.py)."""
    rng = np.random.default_rng(seed)
    raw = np.exp(rng.normal(np.log(10_000), 1.0, n))
    return np.clip(np.round(raw), 500, 200_000).astype(np.int64)


def pareto_sizes(n: int, seed: int = 0) -> np.ndarray:
    """Pareto(alpha=1.6) from 1,000 points, unclipped: a few samples exceed a 400k budget."""
    rng = np.random.default_rng(seed)
    return np.round(1_000 * (1 + rng.pareto(1.6, n))).astype(np.int64)


def efficiency(batches: list[list[int]], sizes: np.ndarray) -> float:
    """Reference: real / padded elements (``count * largest``) over the batches."""
    real = sum(int(sizes[b].sum()) for b in batches)
    padded = sum(len(b) * int(sizes[b].max()) for b in batches)
    return real / padded


def mates_again(first: list[list[int]], second: list[list[int]]) -> float:
    """Mean over samples of the fraction of a sample's batch-mates in ``first`` that share its
    batch in ``second``."""
    where = {i: k for k, b in enumerate(second) for i in b}
    fractions = [
        sum(where[j] == where[i] for j in b if j != i) / (len(b) - 1)
        for b in first
        if len(b) > 1
        for i in b
    ]
    return float(np.mean(fractions))


def epochs(sampler: BucketBatchSampler, *which: int) -> list[list[list[int]]]:
    out = []
    for e in which:
        sampler.set_epoch(e)
        out.append(list(sampler))
    return out


@pytest.mark.parametrize(
    ("sizes", "target"),
    [(lognormal_sizes(50_000, seed=1), 0.99), (pareto_sizes(50_000, seed=1), 0.97)],
    ids=["lognormal", "pareto"],
)
def test_heavy_tails_pad_little_and_stay_fresh(sizes, target):
    sampler = BucketBatchSampler(sizes, 400_000, seed=4, oversize="alone")
    first, second = epochs(sampler, 0, 1)
    assert efficiency(first, sizes) >= target
    assert efficiency(second, sizes) >= target
    assert sampler.stats().padding_efficiency == pytest.approx(efficiency(second, sizes))
    # fresh: few batches come back whole, most batch-mates change
    again = {frozenset(b) for b in first if len(b) > 1} & {frozenset(b) for b in second}
    assert len(again) < 0.05 * len(first)
    assert mates_again(first, second) < 0.5
    # hard budget, except a sample over it alone, which goes alone
    for batch in first:
        assert len(batch) * int(sizes[batch].max()) <= 400_000 or len(batch) == 1


def test_spread_none_deals_among_every_window_and_pads_more():
    sizes = pareto_sizes(50_000, seed=2)
    narrow = BucketBatchSampler(sizes, 400_000, oversize="alone")
    wide = BucketBatchSampler(sizes, 400_000, oversize="alone", spread=None)
    assert wide.stats().padding_efficiency < narrow.stats().padding_efficiency
    assert narrow.fingerprint != wide.fingerprint, "another plan: a state must not cross over"


heavy_sizes = st.lists(st.integers(0, 24).map(lambda e: int(1.6**e)), min_size=0, max_size=400)


@settings(max_examples=60, deadline=None)
@given(
    sizes=heavy_sizes,
    budget=st.integers(100, 20_000),
    windows=st.integers(1, 12),
    spread=st.sampled_from([0.0, 0.015, 0.3, None]),
    world=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 3),
)
def test_every_sample_once_budget_kept_equal_steps_resume(
    sizes, budget, windows, spread, world, seed, epoch
):
    kw = dict(seed=seed, windows=windows, spread=spread, num_replicas=world, oversize="alone")
    ranks = []
    for r in range(world):
        s = BucketBatchSampler(sizes, budget, rank=r, **kw)
        s.set_epoch(epoch)
        ranks.append(list(s))
    assert len({len(b) for b in ranks}) == 1, "every rank runs the same number of steps"
    seen = Counter(i for batches in ranks for batch in batches for i in batch)
    assert set(seen) == set(range(len(sizes)))
    if len(sizes) % world == 0:
        assert seen == Counter(range(len(sizes))), "each sample exactly once"
    for batches in ranks:
        for batch in batches:
            largest = max(sizes[i] for i in batch)
            assert len(batch) * largest <= budget or len(batch) == 1
    # resume mid-epoch on the last rank, from a sampler built with another seed
    last = ranks[-1]
    k = seed % (len(last) + 1)
    state = {**BucketBatchSampler(sizes, budget, rank=world - 1, **kw).state_dict(), "epoch": epoch}
    state["consumed"] = k
    resumed = BucketBatchSampler(sizes, budget, rank=world - 1, **{**kw, "seed": seed ^ 1})
    resumed.load_state_dict(state)
    assert list(resumed) == last[k:]


@given(
    sizes=st.lists(st.integers(0, 24).map(lambda e: int(1.6**e)), min_size=1, max_size=300),
    n_windows=st.integers(1, 300),
    spread=st.floats(0, 2),
    max_batch_size=st.one_of(st.none(), st.integers(1, 50)),
    seed=st.integers(0, 1000),
)
def test_reach_bounds_and_deal_respects_it(sizes, n_windows, spread, max_batch_size, seed):
    table = np.asarray(sizes, dtype=np.int64)[:, None]
    budget = Budget.build(int(table.max()) + 1, ["0"], max_batch_size=max_batch_size)
    base = base_order(sort_key(table, budget), seed)
    reach = window_reach(table, base, budget, n_windows, spread)
    top = 255 if n_windows <= 255 else 65535
    windows = reach.astype(np.float64) * n_windows / top
    assert windows.min() >= min(2, n_windows) - 1e-9 and windows.max() <= n_windows + 1e-9
    order, starts = deal_windows(base, n_windows, epoch_rng(seed, 0), reach)
    assert sorted(order.tolist()) == list(range(len(sizes)))
    rank = np.empty(len(sizes), dtype=np.int64)
    rank[base] = np.arange(len(sizes))
    for w in range(n_windows):
        part = rank[order[starts[w] : starts[w + 1]]]
        assert (np.diff(part) > 0).all(), "a window is a subsequence of the size order"
        assert (windows[part] > w).all(), "a sample only goes among its first `reach` windows"


@given(
    sizes=st.lists(st.integers(0, 300), min_size=0, max_size=300),
    budget=st.integers(300, 3000),
    cost=st.sampled_from(["padded", "sum"]),
    piece=st.integers(1, 64),
)
def test_cutting_in_pieces_is_one_cut(sizes, budget, cost, piece):
    table = np.sort(np.asarray(sizes, dtype=np.int64))[:, None]
    rules = Budget.build(budget, ["0"], cost)
    order = np.arange(len(sizes))
    whole = cut_windows(table, np.array([0, len(sizes)], dtype=np.int64), rules)[1:]
    ends = cut_in_pieces(table, order, 0, len(sizes), rules, piece)
    got = np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)
    assert got.tolist() == whole.tolist()


@given(
    sizes=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 600)), max_size=200),
    piece=st.integers(1, 40),
)
def test_pieces_of_two_columns_fit(sizes, piece):
    table = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    rules = Budget.build([600, 1200], ["v", "f"])
    order = np.argsort(sort_key(table, rules), kind="stable")
    ends = cut_in_pieces(table, order, 0, len(sizes), rules, piece)
    cuts = [0, *(int(e) for part in ends for e in part)]
    assert cuts[-1] == len(sizes) and all(a < b for a, b in pairwise(cuts))
    for a, b in pairwise(cuts):
        batch = table[order[a:b]]
        assert ((b - a) * batch.max(axis=0) <= [600, 1200]).all()


@pytest.mark.parametrize("n_windows", [7, 11, 13, 20, 22, 255, 256, 300, 1000])
def test_full_reach_is_every_window_for_any_count(n_windows):
    # all ties: every sample goes among all windows; `n * (255 / n)` rounds above 255 for some
    # n, and must not wrap around to zero windows
    table = np.full((50 * n_windows, 1), 10, dtype=np.int64)
    budget = Budget.build(100, ["0"])
    base = base_order(sort_key(table, budget), 0)
    reach = window_reach(table, base, budget, n_windows, 0.015)
    top = 255 if n_windows <= 255 else 65535
    assert (reach[: 40 * n_windows] == top).all()
    _, starts = deal_windows(base, n_windows, epoch_rng(0, 0), reach)
    assert (np.diff(starts) > 0).all(), "every window gets samples"


def test_dense_sizes_use_every_window_sparse_ones_fewer():
    # 10,000 ties of 1,000 (100 per batch) and 10 sizes 1.5x apart from each other
    sizes = np.concatenate([np.full(10_000, 1_000), np.round(2_000 * 1.5 ** np.arange(10))])
    table = sizes.astype(np.int64)[:, None]
    budget = Budget.build(100_000, ["0"])
    base = base_order(sort_key(table, budget), 0)
    windows = window_reach(table, base, budget, 20, 0.015).astype(np.float64) * 20 / 255
    assert (windows[:8_000] == 20).all(), "ties cost no padding: dealt among all windows"
    assert (windows[10_000:] < 2.1).all(), "sparse sizes stay among the first two windows"


def test_same_plan_on_every_machine():
    # A pinned digest of one plan. The plan uses only integer/IEEE float32 arithmetic and
    # numpy's PCG64 streams, so it must not depend on the CPU or math library; change this
    # value only with a deliberate change of the plan (and say so in the commit).
    sizes = np.concatenate([pareto_sizes(4_000, seed=9) // 2, np.full(2_000, 300)])
    sampler = BucketBatchSampler(
        sizes, 20_000, seed=11, num_replicas=3, rank=1, windows=8, oversize="alone"
    )
    assert sampler.n_windows == 8 and sampler._reach.min() < sampler._reach.max()
    sampler.set_epoch(2)
    digest = hashlib.sha256(json.dumps(list(sampler)).encode()).hexdigest()[:16]
    assert digest == "9190178fc0cf74d6"


def test_bad_spread_is_named():
    for bad in (-0.1, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="spread"):
            BucketBatchSampler([1, 2, 3], 10, spread=bad)


def test_zero_sizes_plan_without_numpy_warnings():
    # empty samples (a mesh with no faces) have no per-batch limit; the reach computation used
    # to divide by their zero cost and let numpy's "divide by zero" warning reach the user
    sizes = np.concatenate([np.zeros(300, np.int64), np.arange(1, 700)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler = BucketBatchSampler(sizes, 2_000, windows=6)
        batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(sizes.size))
