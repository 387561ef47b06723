"""One epoch of batches, planned in numpy: deal into windows, sort, cut, balance across ranks.

The plan for epoch ``e`` is a pure function of the sizes, the budget and ``(seed, e)``:

1. **Deal.** Every sample goes to one of ``n_windows`` windows at random. Inside a window the
   samples keep the dataset-wide size order (computed once, ties broken at random), so a
   window is a random subset of the data, sorted by size. Where sizes are sparse (the tails of
   a heavy-tailed distribution) a sample is dealt among the first few windows only
   (:func:`window_reach`): spreading those samples over every window would leave each window
   with large size gaps between neighbours, and the gaps become padding.
2. **Cut.** Each window is cut greedily, smallest samples first, into the longest runs that fit
   the :class:`~hetload.samplers.cost.Budget`. A run of neighbours in size order pads little;
   since windows are dealt afresh every epoch, two samples batched together meet again in the
   next epoch only if they land in the same window again (probability ``1 / n_windows`` where
   sizes are dense, at most about one half in the sparse tails).
3. **Balance.** The batches are made a multiple of the world size ``W`` (splitting the batches
   with the most samples in two, or dropping the smallest under ``drop_last``), grouped ``W``
   at a time by similar cost into steps, and the steps are shuffled: no rank waits on a
   straggler, and the order of batch sizes carries no pattern from one step to the next.

The cut is vectorized. For every position ``j`` of the dealt order, ``left[j]`` is the first
position a batch ending at ``j`` may start from (so that it fits); ``left`` never decreases, so
the batch starting at ``i`` ends where ``left`` first exceeds ``i`` — one ``searchsorted`` for all
starts. Only the walk from one batch start to the next is a Python loop, one step per batch.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from hetload.samplers.cost import Budget

__all__ = [
    "EpochPlan",
    "base_order",
    "cut_in_pieces",
    "cut_windows",
    "deal_windows",
    "epoch_rng",
    "plan_epoch",
    "window_reach",
]

# independent random streams derived from the user's seed
_BASE_STREAM = 0x5EED0
_EPOCH_STREAM = 0x5EED1
# samples handled at once where a whole-order float temporary would cost bytes per sample
_CHUNK = 1 << 12
# every sample is dealt among at least this many windows, so no batch is the same every epoch
_MIN_REACH = 2.0


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator for one epoch: a function of ``(seed, epoch)`` only, never global state."""
    return np.random.default_rng([_EPOCH_STREAM, int(seed), int(epoch)])


def index_dtype(n: int) -> np.dtype:
    """int32 indices while they fit (half the memory of int64), else int64."""
    return np.dtype(np.int32) if n < 2**31 else np.dtype(np.int64)


def sort_key(table: np.ndarray, budget: Budget) -> np.ndarray:
    """``[N]`` key the windows are sorted by: the size itself for one column; for several, the
    largest fraction of a limit one sample uses alone, so the binding column orders them."""
    if table.shape[1] == 1:
        return table[:, 0]
    ones = np.ones(table.shape[0], dtype=np.int64)
    wide = table.astype(np.int64, copy=False)
    return (budget.cost_of(ones, wide, wide) / budget.limits).max(axis=1)


def base_order(key: np.ndarray, seed: int | None) -> np.ndarray:
    """``[N]`` sample indices sorted by ``key``; ties in an order drawn from ``seed`` (``None``:
    by index), so grouping never follows the dataset's own order."""
    n = key.shape[0]
    if seed is None:
        return np.argsort(key, kind="stable").astype(index_dtype(n), copy=False)
    rng = np.random.default_rng([_BASE_STREAM, int(seed)])
    shuffled = np.arange(n, dtype=index_dtype(n))
    rng.shuffle(shuffled)
    return shuffled[np.argsort(key[shuffled], kind="stable")]


def window_reach(
    table: np.ndarray, base: np.ndarray, budget: Budget, n_windows: int, spread: float
) -> np.ndarray:
    """``[M]`` for each position of ``base``: among how many windows (fractional, from
    ``min(2, n_windows)`` to ``n_windows``) that sample is dealt, in steps of
    ``n_windows / 255`` (uint8; uint16 and steps of ``n_windows / 65535`` past 255 windows):
    one byte per sample held between epochs.

    A batch of ``c`` samples cut from a window where a sample's neighbourhood is dealt among
    ``w`` windows spans about ``c * w`` positions of the base order. Where samples of nearly
    equal size are dense (or tied) that span costs no padding and every sample goes among all
    windows. Where they are sparse (the tails) it would widen the batch's size range, so ``w``
    shrinks until the span stays within the positions whose cost (one sample alone, the
    base's sort key) is at most ``1 + spread`` times its own: ``w = ahead / c``. At least two
    windows, so that no batch comes back identical every epoch.

    Float32 products and comparisons only (no ``log``/``exp``, whose last bit differs between
    math libraries): the same plan on every machine.
    """
    m = base.shape[0]
    load = np.empty(m, dtype=np.float32)
    for lo in range(0, m, _CHUNK):
        wide = table[base[lo : lo + _CHUNK]].astype(np.int64)
        load[lo : lo + _CHUNK] = budget.load(np.ones(wide.shape[0], np.int64), wide, wide)
    limit = np.float32(1.0 + spread)
    dtype, top = _reach_dtype(n_windows)
    reach = np.empty(m, dtype=dtype)
    for lo in range(0, m, _CHUNK):
        here = load[lo : lo + _CHUNK]
        # base is sorted by this load, so the positions within the spread form a run from here
        ahead = np.searchsorted(load, here * limit, side="right") - np.arange(lo, lo + here.size)
        # samples per batch around here: 1 / load (no limit for a zero size: any number fits)
        per_batch = np.full(here.shape, float(budget.max_batch_size or max(m, 1)))
        # the float32 reciprocal only where defined (a full 1 / here warns on zero sizes)
        positive = here > 0
        inverse = np.divide(np.float32(1.0), here, out=np.zeros_like(here), where=positive)
        np.minimum(per_batch, inverse, out=per_batch, where=positive)
        windows = np.clip(ahead / per_batch, min(_MIN_REACH, n_windows), n_windows)
        # rounded up (never below the two-window floor), and capped: `n * (top / n)` may round
        # above `top` (n = 11: 255.00000000000003), which would wrap around in the integer
        reach[lo : lo + _CHUNK] = np.minimum(np.ceil(windows * (top / n_windows)), top)
    return reach


def _reach_dtype(n_windows: int) -> tuple[type, int]:
    return (np.uint8, 255) if n_windows <= 255 else (np.uint16, 65535)


def deal_windows(
    base: np.ndarray,
    n_windows: int,
    rng: np.random.Generator,
    reach: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Deal the size-sorted ``base`` order into ``n_windows`` random windows.

    ``reach`` (``[M]``, from :func:`window_reach`): sample ``base[p]`` goes to one of the first
    ``reach[p] * n_windows / 255`` windows, uniformly (``None``: among all).

    Returns ``order`` (``[N]``, each window's samples contiguous and still in size order) and
    ``starts`` (int64 ``[n_windows + 1]``, where each window begins in ``order``).
    """
    if n_windows == 1:
        return base, np.array([0, base.shape[0]], dtype=np.int64)
    dtype = np.uint16 if n_windows <= 2**16 else np.uint32
    if reach is None:
        window = rng.integers(n_windows, size=base.shape[0], dtype=dtype)
    else:
        window = np.empty(base.shape[0], dtype=dtype)
        step = n_windows / _reach_dtype(n_windows)[1]
        for lo in range(0, base.shape[0], _CHUNK):
            share = rng.random(min(_CHUNK, base.shape[0] - lo)) * reach[lo : lo + _CHUNK]
            share *= step
            # float -> int truncates: window floor(u * reach) < reach <= n_windows
            window[lo : lo + _CHUNK] = np.minimum(share, n_windows - 1)
    starts = np.zeros(n_windows + 1, dtype=np.int64)
    np.cumsum(np.bincount(window, minlength=n_windows), out=starts[1:])
    # one masked pass per window rather than an argsort: no int64 permutation of N entries,
    # so the epoch never holds more than a few bytes per sample
    order = np.empty_like(base)
    for w in range(n_windows):
        order[starts[w] : starts[w + 1]] = base[window == w]
    return order, starts


def cut_windows(sizes: np.ndarray, starts: np.ndarray, budget: Budget) -> np.ndarray:
    """Greedy cut of each window into batches that fit ``budget``.

    Args:
        sizes: ``[N, K]`` sizes in the dealt order; every sample fits the budget alone.
        starts: int64 ``[n_windows + 1]`` window boundaries in that order.

    Returns:
        cuts: int64 ``[B + 1]``; batch ``b`` is positions ``cuts[b]:cuts[b + 1]``.
    """
    n = sizes.shape[0]
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    pos = np.arange(n, dtype=np.int64)
    left = np.repeat(starts[:-1], np.diff(starts))
    for k in range(sizes.shape[1]):
        column = sizes[:, k].astype(np.int64, copy=False)
        np.maximum(left, _left_limit(column, pos, left, budget, k), out=left)
    if budget.max_batch_size is not None:
        np.maximum(left, pos + 1 - budget.max_batch_size, out=left)
    # With one column (sorted inside each window) `left` is exact and already non-decreasing.
    # With several, a column is not sorted, `left` assumed it was, and it is made monotone
    # here; every batch is then checked exactly and the few that do not fit are re-cut below.
    np.maximum.accumulate(left, out=left)
    ends = np.searchsorted(left, pos, side="right")
    cuts = [0]
    start = 0
    while start < n:
        start = int(ends[start])
        cuts.append(start)
    cuts = np.asarray(cuts, dtype=np.int64)
    if sizes.shape[1] > 1:
        cuts = _recut_overfull(sizes, cuts, budget)
    return cuts


def cut_in_pieces(
    table: np.ndarray, order: np.ndarray, lo: int, hi: int, budget: Budget, piece: int
) -> list[np.ndarray]:
    """:func:`cut_windows` of the window ``order[lo:hi]``, ``piece`` samples at a time.

    Returns int64 arrays of batch ends (positions in ``order``), in order. The last batch of a
    piece may end at the piece's end rather than at the budget, so it is dropped and the next
    piece starts where it started: a greedy cut from a start depends only on the samples from
    there on, so with one size column (a sorted window) the batches are those of one cut of
    the whole window.
    """
    out = []
    start, size = lo, piece
    while start < hi:
        end = min(hi, start + size)
        bounds = np.array([0, end - start], dtype=np.int64)
        ends = cut_windows(table[order[start:end]], bounds, budget)[1:] + start
        if end < hi:
            ends = ends[:-1]
            if ends.size == 0:  # one batch longer than the piece: a longer piece
                size *= 2
                continue
        out.append(ends)
        start, size = int(ends[-1]), piece
    return out


def _left_limit(
    column: np.ndarray, pos: np.ndarray, lowest: np.ndarray, budget: Budget, k: int
) -> np.ndarray:
    """For each end ``j``, the first start ``i >= lowest[j]`` whose batch ``[i, j]`` fits in
    column ``k``, taking ``column[j]`` as the batch's largest size (true when sorted)."""
    limit = int(budget.limits[k])
    if budget.cost == "padded":
        capacity = np.where(column > 0, limit // np.maximum(column, 1), column.shape[0] + 1)
        return pos + 1 - capacity
    prefix = np.zeros(column.shape[0] + 1, dtype=np.int64)
    np.cumsum(column, out=prefix[1:])
    if budget.cost == "sum":
        return np.searchsorted(prefix, prefix[1:] - limit, side="left")
    # a callable cost: bisect every start at once; it is monotone, and [j, j] always fits
    lo, hi = lowest.copy(), pos.copy()
    while True:
        open_ = lo < hi
        if not open_.any():
            return lo
        mid = (lo + hi) // 2
        count = pos - mid + 1
        cost = np.asarray(budget.cost(count, column, prefix[pos + 1] - prefix[mid]))
        ok = np.broadcast_to(cost, count.shape) <= limit
        hi = np.where(open_ & ok, mid, hi)
        lo = np.where(open_ & ~ok, mid + 1, lo)


def _recut_overfull(sizes: np.ndarray, cuts: np.ndarray, budget: Budget) -> np.ndarray:
    """Exact check of every batch; each one over a limit is re-cut greedily with its true
    running maximum. Returns the new cuts."""
    count, maxes, sums = _summary(sizes, cuts)
    bad = np.flatnonzero(~budget.fits(count, maxes, sums))
    if bad.size == 0:
        return cuts
    extra = []
    for b in bad.tolist():
        lo, hi = int(cuts[b]), int(cuts[b + 1])
        while lo < hi:
            seg = sizes[lo:hi].astype(np.int64, copy=False)
            n = np.arange(1, hi - lo + 1)
            ok = budget.fits(n, np.maximum.accumulate(seg, axis=0), np.cumsum(seg, axis=0))
            # the prefixes that fit form a run from length 1 (each sample fits alone)
            lo += int(np.argmin(ok)) if not ok.all() else hi - lo
            if lo < hi:
                extra.append(lo)
    return np.union1d(cuts, np.asarray(extra, dtype=np.int64))


def _summary(sizes: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per batch of ``sizes`` (``[N, K]``, in order): ``count`` int64 ``[B]``, ``maxes`` and
    ``sums`` int64 ``[B, K]``."""
    wide = sizes.astype(np.int64, copy=False)
    return (
        np.diff(cuts),
        np.maximum.reduceat(wide, cuts[:-1], axis=0),
        np.add.reduceat(wide, cuts[:-1], axis=0),
    )


def batch_summary(
    table: np.ndarray, order: np.ndarray, cuts: np.ndarray, chunk: int = 1 << 14
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per batch: ``count`` int64 ``[B]``, ``maxes`` and ``sums`` int64 ``[B, K]``, where batch
    ``b`` is ``table[order[cuts[b]:cuts[b + 1]]]``. Works ``chunk`` samples at a time, so the
    int64 copies of the sizes stay small."""
    count = np.diff(cuts)
    maxes = np.zeros((count.size, table.shape[1]), dtype=np.int64)
    sums = np.zeros_like(maxes)
    if count.size == 0:
        return count, maxes, sums
    firsts = np.searchsorted(cuts, np.arange(0, int(cuts[-1]), chunk), side="right") - 1
    bounds = np.append(np.unique(firsts), count.size).tolist()
    for b0, b1 in pairwise(bounds):
        lo, hi = int(cuts[b0]), int(cuts[b1])
        _, maxes[b0:b1], sums[b0:b1] = _summary(table[order[lo:hi]], cuts[b0 : b1 + 1] - lo)
    return count, maxes, sums


@dataclass(frozen=True)
class EpochPlan:
    """Every rank's batches for one epoch.

    Attributes:
        order: ``[M]`` sample indices, each batch contiguous.
        cuts: int64 ``[B + 1]``; batch ``b`` is ``order[cuts[b]:cuts[b + 1]]``.
        schedule: int64 ``[S, W]``: the batch rank ``r`` runs at step ``s``. A batch id appears
            twice only when even batches of one sample could not fill whole steps
            (``duplicated``).
        count, maxes, sums: per batch, ``[B]`` and ``[B, K]`` (see :func:`batch_summary`).
        duplicated: samples scheduled a second time so that every rank has a batch.
        dropped: samples left out by ``drop_last`` to make the steps equal.
        n_windows: how many windows the epoch was dealt into.
    """

    order: np.ndarray
    cuts: np.ndarray
    schedule: np.ndarray
    count: np.ndarray
    maxes: np.ndarray
    sums: np.ndarray
    duplicated: int
    dropped: int
    n_windows: int

    def batch(self, b: int) -> np.ndarray:
        """The sample indices of batch ``b``."""
        return self.order[self.cuts[b] : self.cuts[b + 1]]


def plan_epoch(
    table: np.ndarray,
    base: np.ndarray,
    budget: Budget,
    *,
    seed: int,
    epoch: int,
    world_size: int = 1,
    n_windows: int = 1,
    shuffle: bool = True,
    drop_last: bool = False,
    alone: np.ndarray | None = None,
    reach: np.ndarray | None = None,
) -> EpochPlan:
    """Plan one epoch.

    Args:
        table: ``[N, K]`` sizes of every sample (oversize samples already excluded from
            ``base``).
        base: ``[M]`` the samples to batch, sorted by :func:`sort_key` (see :func:`base_order`).
        budget: what fits in one batch.
        seed, epoch: the only source of randomness (see :func:`epoch_rng`).
        world_size: ranks; every rank gets the same number of batches.
        n_windows: windows to deal into (1: one global sort, the least padding, the same
            batches every epoch).
        shuffle: False keeps one window and the size order of batches and steps.
        drop_last: make the steps equal by dropping batches instead of splitting them.
        alone: ``[A]`` samples over the budget that still get a batch each (``oversize="alone"``).
        reach: ``[M]`` among how many windows each position of ``base`` is dealt
            (:func:`window_reach`; ``None``: all).
    """
    rng = epoch_rng(seed, epoch)
    order, starts = deal_windows(base, n_windows if shuffle else 1, rng, reach)
    pieces = [np.zeros(1, dtype=np.int64)]
    # window by window, and a window larger than the mean (the first ones hold the sparse
    # tails) a mean window's worth at a time: the cut's int64 work arrays stay ~1/n_windows
    # of the dataset
    piece = max(_CHUNK, -(-order.shape[0] // max(starts.shape[0] - 1, 1)))
    for lo, hi in pairwise(starts.tolist()):
        pieces.extend(cut_in_pieces(table, order, lo, hi, budget, piece))
    if alone is not None and alone.size:
        pieces.append(order.shape[0] + np.arange(1, alone.size + 1, dtype=np.int64))
        order = np.concatenate([order, alone.astype(order.dtype, copy=False)])
    cuts, keep, duplicated, dropped = _equalize(np.concatenate(pieces), world_size, drop_last, rng)
    count, maxes, sums = batch_summary(table, order, cuts)
    schedule = _schedule(keep, budget.load(count, maxes, sums), world_size, shuffle, rng)
    return EpochPlan(order, cuts, schedule, count, maxes, sums, duplicated, dropped, n_windows)


def _equalize(
    cuts: np.ndarray, world_size: int, drop_last: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Make the number of batches a multiple of ``world_size``.

    Returns the new cuts, the batch ids to schedule (``[S * W]``, possibly with repeats), the
    number of duplicated samples and the number of dropped samples.
    """
    n_batches = cuts.shape[0] - 1
    short = -n_batches % world_size
    if n_batches == 0 or short == 0:
        return cuts, np.arange(n_batches), 0, 0
    count = np.diff(cuts)
    if drop_last:
        # drop the batches with the fewest samples, ties at random
        surplus = n_batches % world_size
        drop = np.lexsort((rng.random(n_batches), count))[:surplus]
        keep = np.setdiff1d(np.arange(n_batches), drop)
        return cuts, keep, 0, int(count[drop].sum())
    # split the batch with the most samples in two, `short` times: no sample repeats, and a
    # part of a batch that fits also fits
    heap = [(-int(c), int(lo)) for c, lo in zip(count, cuts[:-1]) if c > 1]
    heapq.heapify(heap)
    new_cuts = []
    while short and heap:
        c, lo = heapq.heappop(heap)
        c = -c
        half = c // 2
        new_cuts.append(lo + half)
        for part, part_lo in ((half, lo), (c - half, lo + half)):
            if part > 1:
                heapq.heappush(heap, (-part, part_lo))
        short -= 1
    cuts = np.union1d(cuts, np.asarray(new_cuts, dtype=np.int64))
    n_batches = cuts.shape[0] - 1
    ids = np.arange(n_batches)
    if short == 0:
        return cuts, ids, 0, 0
    # every batch is one sample now and there are fewer than ranks: repeat some
    repeats = rng.choice(n_batches, size=short, replace=short > n_batches)
    return cuts, np.concatenate([ids, repeats]), short, 0


def _schedule(
    ids: np.ndarray, load: np.ndarray, world_size: int, shuffle: bool, rng: np.random.Generator
) -> np.ndarray:
    """Group batch ids into steps of ``world_size`` with similar ``load``; shuffle the steps
    and, within a step, which rank runs which batch."""
    if ids.size == 0:
        return np.zeros((0, world_size), dtype=np.int64)
    if not shuffle:
        return ids.reshape(-1, world_size)
    if world_size == 1:
        return rng.permutation(ids).reshape(-1, 1)
    by_load = ids[np.lexsort((rng.random(ids.size), load[ids]))]
    steps = by_load.reshape(-1, world_size)
    steps = steps[rng.permutation(steps.shape[0])]
    return rng.permuted(steps, axis=1)
