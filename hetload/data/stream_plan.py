"""The plan of one :class:`~hetload.data.ShardStream` epoch, computed from the index.

Samples are numbered globally in index order (shard 0's samples first). A *segment* is the
part of an epoch run at one world size ``W`` and worker count ``K``; an epoch that is never
resumed elsewhere is one segment. Segment ``g`` serves the samples the earlier segments left
(all of them for ``g = 0``). A rank plans its own batches only; what it must know of the others
(their batch counts, to even the steps) comes from one all-gather of three integers per rank
(:meth:`~hetload.data.ShardStream.share_plan`), or, without a process group, from a dry run of
every rank (the same numbers, ``W`` times the work):

1. **Shards.** Segment 0: the shards are permuted by ``(seed, epoch)`` (index order when
   ``shuffle=False``); shard ``i`` of that order goes to rank ``i % W``. Segment ``g + 1``
   (:mod:`hetload.data.stream_segments`): each new rank takes over the shards of old ranks,
   so it dry-runs only those. A rank deals its shards round-robin to its ``K`` workers.
2. **Batches.** Each (rank, worker) stream is the remaining samples of its shards, in order; the
   batcher cuts it (a dry run on the sizes the index holds, seeded by
   ``(seed, epoch, rank, worker[, g])``), so the plan knows every batch before a byte is read.
3. **Even steps.** Every rank must run the same number of steps ``T``. ``even="exact"`` (the
   default) takes ``T`` = the largest rank's count; a rank short of it splits its batches with
   the most samples in two (a part of a batch that fits still fits), so every sample is served
   exactly once; only a rank that has fewer samples than ``T`` repeats single samples, in
   batches marked ``is_repeat``. ``even="pad"`` repeats whole batches instead of splitting
   (marked). ``even="truncate"`` takes the smallest count and drops batches from the end of the
   longest streams; the dropped samples are counted in :attr:`StreamPlan.dropped` and reported.
4. **Order.** A rank's steps take its workers' batches round-robin, skipping exhausted
   workers: the order a ``DataLoader`` delivers them in. So the step ``s`` of one rank (every
   rank is at the same step) and ``T`` tell exactly which samples each rank has consumed, to
   anyone who dry-runs that rank.

**Resume.** Continuing at the same ``(W, K)`` skips, per worker, the batches the step count
says it delivered (whole shards whose samples are all consumed are not read). At another
``(W', K')`` the rest is planned as segment ``g + 1``: every sample still exactly once in the
epoch.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "Draft",
    "Even",
    "Evened",
    "StreamBatches",
    "StreamPlan",
    "Totals",
    "draft_rank",
    "even_rank",
    "interleave",
    "stream_seed",
]

Even = Literal["exact", "pad", "truncate"]
EVEN = ("exact", "pad", "truncate")
_SHUFFLE_STREAM = 0x5EED5
_BATCH_STREAM = 0x5EED6


def shard_order(count: int, seed: int, epoch: int, segment: int, shuffle: bool) -> np.ndarray:
    """``[count]`` shard numbers in the order of ``(seed, epoch, segment)``."""
    if not shuffle:
        return np.arange(count)
    key = [_SHUFFLE_STREAM, seed, epoch] + ([segment] if segment else [])
    return np.random.default_rng(key).permutation(count)


def stream_seed(seed: int, epoch: int, rank: int, worker: int, segment: int = 0) -> int:
    """The batcher's seed for one (rank, worker) stream of a segment."""
    key = [_BATCH_STREAM, seed, epoch, rank, worker] + ([segment] if segment else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


@dataclass(frozen=True)
class StreamBatches:
    """The batches of one (rank, worker) stream, in the order it yields them.

    Attributes:
        seq: int32/int64 ``[M]`` the global sample numbers the stream reads, in reading order
            (``None`` where only the counts were kept).
        pos: int32/int64 ``[P]`` positions into ``seq``, each batch contiguous (``None`` likewise).
        lo, hi: int64 ``[B]``: batch ``b`` is ``seq[pos[lo[b]:hi[b]]]``.
        repeat: bool ``[B]``: the batch repeats samples the epoch serves elsewhere.
    """

    seq: np.ndarray | None
    pos: np.ndarray | None
    lo: np.ndarray
    hi: np.ndarray
    repeat: np.ndarray

    def __len__(self) -> int:
        return int(self.lo.shape[0])

    def batch(self, b: int) -> np.ndarray:
        """The global sample numbers of batch ``b`` (int32 below 2**31 samples)."""
        if self.seq is None or self.pos is None:
            raise ValueError("this stream's plan kept counts only")
        return self.seq[self.pos[self.lo[b] : self.hi[b]]]

    def samples(self, start: int = 0, stop: int | None = None) -> int:
        """Samples served by batches ``start:stop`` (repeats included)."""
        return int((self.hi[start:stop] - self.lo[start:stop]).sum())


@dataclass(frozen=True)
class StreamPlan:
    """One segment of an epoch for the ranks this process planned (see the module doc).

    A rank's own plan (:meth:`~hetload.data.ShardStream.plan` with ``rank=``, or what a worker
    serves) holds its own row only; the other rows are empty lists. The counts are over all
    ranks, from one all-gather per epoch (or a dry run of every rank without a process group).

    Attributes:
        shards: ``shards[r][w]``: shard numbers worker ``w`` of rank ``r`` reads, in order.
        counts: ``counts[r][w]``: batches the batcher cut from that stream.
        quota: ``quota[r][w]``: batches it yields after evening the steps.
        streams: ``streams[r][w]``: its :class:`StreamBatches`.
        steps: batches every rank yields in the segment.
        segment: ``g``: how many earlier segments (world-size or worker-count changes) the
            epoch had.
        samples: samples this segment has to serve (those earlier segments left).
        repeated: samples served a second time to fill steps (all ranks; in ``is_repeat``
            batches).
        dropped: samples not served (``even="truncate"``, or left out by the batcher).
        split: batches split in two to even the steps (all ranks).
    """

    shards: list[list[list[int]]]
    counts: list[list[int]]
    quota: list[list[int]]
    streams: list[list[StreamBatches]]
    steps: int
    segment: int
    samples: int
    repeated: int
    dropped: int
    split: int

    def batches_per_rank(self) -> int:
        return self.steps

    def worker_steps(self, rank: int, step: int) -> list[int]:
        """Batches each worker of ``rank`` has delivered once the rank has taken ``step``."""
        order = interleave(self.quota[rank])
        return np.bincount(order[:step], minlength=len(self.quota[rank])).tolist()


def interleave(quota: Sequence[int]) -> np.ndarray:
    """int64 ``[sum quota]``: the worker each step of a rank comes from: round ``j`` takes
    batch ``j`` of every worker that has one, in worker order (``DataLoader``'s order)."""
    quota = np.asarray(quota, dtype=np.int64)
    if quota.size == 0 or quota.max(initial=0) == 0:
        return np.zeros(0, dtype=np.int64)
    table = np.arange(int(quota.max()))[:, None] < quota[None, :]
    return np.nonzero(table)[1].astype(np.int64)


def dry_run(batcher: Any, sizes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The batcher run on positions ``0..M-1`` of a stream whose sizes are ``sizes``:
    ``pos`` (int64, each batch contiguous) and ``cuts`` (int64 ``[B + 1]``)."""
    fast = getattr(batcher, "plan_positions", None)
    if fast is not None:
        pos, cuts = fast(sizes, seed)
    else:
        table = sizes.tolist()
        order: list[int] = []
        bounds = [0]
        for group in batcher(range(len(table)), table.__getitem__, seed):
            order.extend(group)
            bounds.append(len(order))
        pos, cuts = np.asarray(order, dtype=np.int64), np.asarray(bounds, dtype=np.int64)
    if pos.size and np.bincount(pos, minlength=sizes.shape[0]).max() > 1:
        raise ValueError("the batcher put a sample in two batches (a batcher must not repeat)")
    return pos, cuts


@dataclass(frozen=True)
class Draft:
    """One rank's streams as the batcher cut them, before the steps are evened.

    Attributes:
        order: the rank's shards that hold a sample to serve, in dealing order (shard ``j`` goes
            to worker ``j % K``).
        shards: ``shards[w]``: worker ``w``'s shards, in reading order.
        raw: per worker ``(seq, pos, cuts)``: int32/int64 ``[M]`` sample numbers (``None`` where
            only the counts are kept), int ``[M]`` positions, int64 ``[B + 1]`` batch bounds.
        samples: samples the rank's shards hold for this segment.
    """

    order: list[int]
    shards: list[list[int]]
    raw: list[tuple[np.ndarray | None, np.ndarray | None, np.ndarray]]
    samples: int

    @property
    def batches(self) -> int:
        return sum(int(cuts.shape[0]) - 1 for _, _, cuts in self.raw)

    @property
    def served(self) -> int:
        """Samples the batcher put in a batch (``samples`` less those it left out)."""
        return sum(int(cuts[-1]) for _, _, cuts in self.raw)

    def summary(self) -> list[int]:
        """``[batches, served, samples]``: what the other ranks need to know of this one."""
        return [self.batches, self.served, self.samples]


def draft_rank(
    shards: Sequence[int],
    remaining: Callable[[int], np.ndarray],
    sizes: np.ndarray,
    workers: int,
    batcher: Any,
    seed_of: Callable[[int], int],
    keep: bool,
    describe: Callable[[list[int]], str] = str,
) -> Draft:
    """Deal a rank's ``shards`` to its ``workers`` and dry-run the batcher on each stream.

    Args:
        shards: the rank's shards, in dealing order (those with nothing left are passed over).
        remaining: ``k -> int64 [m_k]`` the global numbers of shard ``k``'s samples to serve,
            ascending.
        sizes: ``[N]`` every sample's size (the batcher's input).
        seed_of: ``worker -> seed`` of that stream's batcher.
        keep: keep the sample numbers (else only the batch bounds).
        describe: names a list of shards in errors.
    """
    order = [k for k in shards if remaining(k).size]
    dealt = [order[w::workers] for w in range(workers)]
    raw = []
    samples = 0
    for w in range(workers):
        parts = [remaining(k) for k in dealt[w]]
        seq = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        samples += seq.shape[0]
        try:
            pos, cuts = dry_run(batcher, sizes[seq], seed_of(w))
        except ValueError as exc:
            raise ValueError(
                f"ShardStream: planning the batches of {describe(dealt[w])}: {exc}"
            ) from None
        if keep and sizes.shape[0] < 2**31:  # int32 numbers: half the bytes per sample
            seq, pos = seq.astype(np.int32), pos.astype(np.int32)
        raw.append((seq if keep else None, pos if keep else None, cuts))
    return Draft(order, dealt, raw, samples)


@dataclass(frozen=True)
class Evened:
    """One rank's streams once its steps are evened to the segment's count.

    Attributes:
        shards: ``shards[w]``: worker ``w``'s shards, in reading order.
        streams: ``streams[w]``: its :class:`StreamBatches`.
        repeated, dropped, split: this rank's share of :class:`StreamPlan`'s counts
            (``dropped``: by ``even="truncate"`` only; the batcher's are ``samples - served``).
    """

    shards: list[list[int]]
    streams: list[StreamBatches]
    repeated: int
    dropped: int
    split: int

    @property
    def quota(self) -> list[int]:
        return [len(s) for s in self.streams]

    def consumed(self, step: int) -> list[np.ndarray]:
        """Per worker, bool ``[M]`` over its ``seq`` positions: the samples its batches
        delivered (repeats left out) once the rank has taken ``step`` steps."""
        taken = np.bincount(interleave(self.quota)[:step], minlength=len(self.streams))
        out = []
        for stream, t in zip(self.streams, taken.tolist()):
            m = 0 if stream.seq is None else stream.seq.shape[0]
            mark = np.zeros(m + 1, dtype=np.int64)
            own = ~stream.repeat[:t]
            # each batch is a contiguous run of ``pos``: mark the runs, then read them off
            np.add.at(mark, stream.lo[:t][own], 1)
            np.add.at(mark, stream.hi[:t][own], -1)
            covered = np.cumsum(mark[:-1]) > 0
            done = np.zeros(m, dtype=bool)
            if m:
                done[stream.pos[covered]] = True
            out.append(done)
        return out


def even_rank(
    draft: Draft,
    target: int,
    even: Even,
    borrow: Callable[[bool], tuple[int, np.ndarray | None]],
) -> Evened:
    """Even ``draft`` to ``target`` steps (module doc, step 3).

    ``borrow(keep) -> (shard, sample numbers [1] or None)``: the sample a rank with nothing to
    serve repeats (the epoch's first).
    """
    raw = list(draft.raw)
    shards = [list(s) for s in draft.shards]
    counts = [int(cuts.shape[0]) - 1 for _, _, cuts in raw]
    lows = [cuts[:-1].tolist() for _, _, cuts in raw]
    highs = [cuts[1:].tolist() for _, _, cuts in raw]
    flags = [[False] * len(lo) for lo in lows]
    short = target - sum(counts)
    repeated = dropped = split = 0
    if even == "truncate":
        for w, q in enumerate(_share(counts, target)):
            dropped += sum(h - lo for lo, h in zip(lows[w][q:], highs[w][q:]))
            del lows[w][q:], highs[w][q:], flags[w][q:]
    elif short > 0 and even == "exact":
        split = _split(lows, highs, flags, short)
        short = target - sum(len(lo) for lo in lows)
    if short > 0:
        if not any(lows):
            # a rank with nothing to serve repeats the epoch's first sample, ``short`` times
            shard, first = borrow(raw[0][0] is not None)
            shards[0] = [shard]
            pos0 = None if first is None else np.zeros(1, dtype=np.int64)
            raw[0] = (first, pos0, np.array([0, 1], dtype=np.int64))
            lows[0], highs[0], flags[0] = [0] * short, [1] * short, [True] * short
            repeated = short
        else:
            repeated = _repeat(lows, highs, flags, short, whole=even == "pad")
    streams = [
        StreamBatches(
            seq,
            pos,
            np.asarray(lows[w], dtype=np.int64),
            np.asarray(highs[w], dtype=np.int64),
            np.asarray(flags[w], dtype=bool),
        )
        for w, (seq, pos, _) in enumerate(raw)
    ]
    return Evened(shards, streams, repeated, dropped, split)


@dataclass(frozen=True)
class Totals:
    """What every rank must agree on for a segment: ``steps`` per rank, and the counts of
    :class:`StreamPlan` over all ranks."""

    steps: int
    samples: int
    repeated: int
    dropped: int
    split: int


def steps_of(summaries: np.ndarray, even: Even) -> int:
    """The segment's steps per rank from every rank's ``[batches, served, samples]``
    (int64 ``[W, 3]``): the largest count, the smallest under ``even="truncate"``."""
    if summaries.shape[0] == 0:
        return 0
    counts = summaries[:, 0]
    return int(counts.min() if even == "truncate" else counts.max())


def exact_totals(summaries: np.ndarray) -> Totals:
    """:class:`Totals` of ``even="exact"`` from the summaries alone (no rank's batches): a rank
    ``b`` batches short of ``T`` splits ``min(T - b, served - b)`` times (until every batch is
    one sample) and repeats one sample for each step still missing, ``max(0, T - served)``."""
    target = steps_of(summaries, "exact")
    batches, served, samples = (summaries[:, i].astype(np.int64) for i in range(3))
    split = np.maximum(0, np.minimum(target - batches, served - batches))
    return Totals(
        steps=target,
        samples=int(samples.sum()),
        repeated=int(np.maximum(0, target - served).sum()),
        dropped=int((samples - served).sum()),
        split=int(split.sum()),
    )


def _split(lows: list[list[int]], highs: list[list[int]], flags: list[list[bool]], n: int) -> int:
    """Split the batches with the most samples in two, ``n`` times at most (in place: the
    halves stay consecutive in their worker's order). Returns the splits made."""
    heap = [
        (-(h - lo), w, lo, h)
        for w in range(len(lows))
        for lo, h in zip(lows[w], highs[w])
        if h - lo > 1
    ]
    heapq.heapify(heap)
    cuts: list[list[int]] = [[] for _ in lows]
    made = 0
    while made < n and heap:
        _, w, lo, h = heapq.heappop(heap)
        mid = lo + (h - lo) // 2
        cuts[w].append(mid)
        made += 1
        for a, b in ((lo, mid), (mid, h)):
            if b - a > 1:
                heapq.heappush(heap, (-(b - a), w, a, b))
    for w, extra in enumerate(cuts):
        if not extra:
            continue
        extra_set = set(extra)
        new_lo, new_hi = [], []
        for lo, h in zip(lows[w], highs[w]):
            inner = sorted(c for c in extra_set if lo < c < h)
            bounds = [lo, *inner, h]
            new_lo += bounds[:-1]
            new_hi += bounds[1:]
        lows[w], highs[w], flags[w] = new_lo, new_hi, [False] * len(new_lo)
    return made


def _repeat(
    lows: list[list[int]], highs: list[list[int]], flags: list[list[bool]], n: int, whole: bool
) -> int:
    """Add ``n`` repeat batches, each right after the batch it repeats (its samples are still
    held there): the workers with the fewest batches first, their batches from the first on.
    ``whole`` repeats whole batches; otherwise only the batch's first sample. Returns the
    samples repeated."""
    repeated = 0
    base = [list(zip(lo, h)) for lo, h in zip(lows, highs)]
    extra: list[dict[int, int]] = [{} for _ in lows]
    size = [len(b) for b in base]
    for _ in range(n):
        w = min((w for w in range(len(base)) if base[w]), key=lambda j: (size[j], j))
        b = sum(extra[w].values()) % len(base[w])
        extra[w][b] = extra[w].get(b, 0) + 1
        size[w] += 1
        lo, h = base[w][b]
        repeated += (h - lo) if whole else 1
    for w in range(len(base)):
        if not extra[w]:
            continue
        new_lo, new_hi, new_flags = [], [], []
        for b, (lo, h) in enumerate(base[w]):
            new_lo.append(lo)
            new_hi.append(h)
            new_flags.append(False)
            for _ in range(extra[w].get(b, 0)):
                new_lo.append(lo)
                new_hi.append(h if whole else lo + 1)
                new_flags.append(True)
        lows[w], highs[w], flags[w] = new_lo, new_hi, new_flags
    return repeated


def _share(counts: list[int], target: int) -> list[int]:
    """Per-worker quotas summing to ``target`` <= ``sum(counts)``: cut from the longest streams
    first, so the workers of a rank stay as even as possible."""
    quota = list(counts)
    total = sum(quota)
    while total > target:
        w = max(range(len(quota)), key=lambda j: (quota[j], j))
        quota[w] -= 1
        total -= 1
    return quota


def plan_iter(stream: StreamBatches, start: int) -> Iterator[tuple[int, np.ndarray, bool]]:
    """``(batch number, global sample numbers, repeat)`` from batch ``start`` on."""
    for b in range(start, len(stream)):
        yield b, stream.batch(b), bool(stream.repeat[b])
