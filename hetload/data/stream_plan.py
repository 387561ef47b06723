"""The plan of one :class:`~hetload.data.ShardStream` epoch, computed from the index alone.

Samples are numbered globally in index order (shard 0's samples first). A *segment* is the
part of an epoch run at one world size ``W`` and worker count ``K``; an epoch that is never
resumed elsewhere is one segment. Segment ``g`` plans the samples the earlier segments left
(all of them for ``g = 0``), and every process computes the same plan without communicating:

1. **Shards.** The shards holding a remaining sample are permuted by ``(seed, epoch, g)`` (index
   order when ``shuffle=False``); shard ``i`` of that order goes to rank ``i % W``, and a rank's
   shards go round-robin to its ``K`` workers (``K = 1`` without workers).
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
   workers: the order a ``DataLoader`` delivers them in. So the state of one rank at step
   ``s`` (every rank is at the same step) tells exactly which samples every rank has consumed.

**Resume.** Continuing at the same ``(W, K)`` skips, per worker, the batches the step count
says it delivered (whole shards whose samples are all consumed are not read). At another
``(W', K')`` the consumed samples are taken out and the rest is planned as segment ``g + 1``
by the same rule: every sample still exactly once in the epoch.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["Even", "StreamBatches", "StreamPlan", "interleave", "plan_segment", "stream_seed"]

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
    """One segment of an epoch for every rank and worker (see the module doc).

    Attributes:
        shards: ``shards[r][w]``: shard numbers worker ``w`` of rank ``r`` reads, in order.
        counts: ``counts[r][w]``: batches the batcher cut from that stream.
        quota: ``quota[r][w]``: batches it yields after evening the steps.
        streams: ``streams[r][w]``: its :class:`StreamBatches`.
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
    segment: int
    samples: int
    repeated: int
    dropped: int
    split: int

    def batches_per_rank(self) -> int:
        return sum(self.quota[0]) if self.quota else 0

    def worker_steps(self, rank: int, step: int) -> list[int]:
        """Batches each worker of ``rank`` has delivered once the rank has taken ``step``."""
        order = interleave(self.quota[rank])
        return np.bincount(order[:step], minlength=len(self.quota[rank])).tolist()

    def consumed(self, step: int, total: int) -> np.ndarray:
        """bool ``[total]``: the samples every rank has consumed after ``step`` steps."""
        mask = np.zeros(total, dtype=bool)
        for rank, row in enumerate(self.streams):
            for worker, taken in enumerate(self.worker_steps(rank, step)):
                stream = row[worker]
                for b in range(taken):
                    mask[stream.batch(b)] = True
        return mask


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


def plan_segment(
    *,
    order: Iterable[int],
    remaining: Callable[[int], np.ndarray],
    sizes: np.ndarray,
    world: int,
    workers: int,
    batcher: Any,
    seed_of: Callable[[int, int], int],
    even: Even,
    segment: int,
    keep: Container[int] | None = None,
    describe: Callable[[list[int]], str] = str,
) -> StreamPlan:
    """Plan one segment (see the module doc).

    Args:
        order: shard numbers in the segment's order.
        remaining: ``k -> int64 [m_k]`` the global numbers of shard ``k``'s samples to serve,
            ascending (empty: the shard is not read).
        sizes: ``[N]`` every sample's size (the batcher's input).
        seed_of: ``(rank, worker) -> seed`` of that stream's batcher.
        keep: ranks whose sample numbers are kept (``None``: all); the others keep counts.
        describe: names a list of shards in errors.
    """
    # shards with something left; their sample numbers are made again per stream, so that
    # only one stream's are held at a time (the job's would be 8 bytes per sample)
    live = [(k, n) for k in order if (n := remaining(k).size)]
    shards: list[list[list[int]]] = []
    raw: list[list[tuple[np.ndarray | None, np.ndarray | None, np.ndarray]]] = []
    for r in range(world):
        mine = live[r::world]
        shards.append([[k for k, _ in mine[w::workers]] for w in range(workers)])
        row = []
        for w in range(workers):
            parts = [remaining(k) for k, _ in mine[w::workers]]
            seq = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            try:
                pos, cuts = dry_run(batcher, sizes[seq], seed_of(r, w))
            except ValueError as exc:
                raise ValueError(
                    f"ShardStream: planning the batches of {describe(shards[r][w])}: {exc}"
                ) from None
            kept = keep is None or r in keep
            if kept and sizes.shape[0] < 2**31:  # int32 numbers: half the bytes per sample
                seq, pos = seq.astype(np.int32), pos.astype(np.int32)
            row.append((seq if kept else None, pos if kept else None, cuts))
        raw.append(row)
    counts = [[int(cuts.shape[0] - 1) for _, _, cuts in row] for row in raw]
    totals = [sum(row) for row in counts]
    served = sum(int(cuts[-1]) for row in raw for _, _, cuts in row)
    total_samples = sum(n for _, n in live)
    target = (min(totals) if even == "truncate" else max(totals)) if totals else 0
    streams, quota = [], []
    repeated = split = 0
    dropped = total_samples - served
    for r, row in enumerate(raw):
        lows = [cuts[:-1].tolist() for _, _, cuts in row]
        highs = [cuts[1:].tolist() for _, _, cuts in row]
        flags = [[False] * len(lo) for lo in lows]
        short = target - totals[r]
        if even == "truncate":
            for w, q in enumerate(_share(counts[r], target)):
                dropped += sum(h - lo for lo, h in zip(lows[w][q:], highs[w][q:]))
                del lows[w][q:], highs[w][q:], flags[w][q:]
        elif short and even == "exact":
            split += _split(lows, highs, flags, short)
            short = target - sum(len(lo) for lo in lows)
        if short > 0:
            if not any(lows):
                # a rank with nothing left to serve repeats the segment's first sample
                if not live:
                    raise ValueError("ShardStream: no sample left to plan")  # pragma: no cover
                first_shard = live[0][0]
                shards[r][0] = [first_shard]
                seq0 = remaining(first_shard)[:1] if keep is None or r in keep else None
                pos0 = np.zeros(1, dtype=np.int64) if seq0 is not None else None
                row[0] = (seq0, pos0, np.array([0, 1], dtype=np.int64))
                lows[0], highs[0], flags[0] = [0] * short, [1] * short, [True] * short
            else:
                repeated += _repeat(lows, highs, flags, short, whole=even == "pad")
        stream_row = []
        for w, (seq, pos, _) in enumerate(row):
            stream_row.append(
                StreamBatches(
                    seq,
                    pos,
                    np.asarray(lows[w], dtype=np.int64),
                    np.asarray(highs[w], dtype=np.int64),
                    np.asarray(flags[w], dtype=bool),
                )
            )
        if short > 0 and not any(len(s) - int(s.repeat.sum()) for s in stream_row):
            repeated += short  # the borrowed sample above, ``short`` times
        streams.append(stream_row)
        quota.append([len(s) for s in stream_row])
    return StreamPlan(
        shards, counts, quota, streams, segment, total_samples, repeated, dropped, split
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
