"""The segments of one :class:`~hetload.data.ShardStream` epoch, planned rank by rank.

**The elastic rule.** Segment 0 deals the epoch's shard order round-robin to its ``W`` ranks
(:mod:`hetload.data.stream_plan`). A state saved at step ``s`` of segment ``g`` (world ``W``,
``K`` workers, ``T`` steps per rank) is resumed at ``(W', K')`` as segment ``g + 1``:

- old rank ``r``'s *carried shards* are its shards of segment ``g`` that still hold a sample
  after its first ``s`` steps, in its dealing order; a shard carries only those samples.
- ``W' <= W``: new rank ``r'`` takes the carried shards of the old ranks ``r' , r' + W', ...``
  (``r % W' == r'``), in old-rank order.
- ``W' > W``: old rank ``r`` is shared by the new ranks ``r, r + W, ...`` (``r' % W == r``):
  the ``i``-th of them takes its carried shards ``j`` with ``j % m == i`` (``m`` of them).
- a new rank deals its shards round-robin to its ``K'`` workers; the batcher cuts each stream
  with the seed of ``(seed, epoch, r', w', g + 1)`` and the steps are evened as in segment 0.

So a new rank needs the plans of the old ranks it takes over only (each is that rank's own dry
run and ``T``, which the state records): ``W / W'`` old ranks, not the whole job, and the
chain of segments is followed the same way. Every sample not consumed before the step is in
exactly one carried shard, so the epoch still serves every sample once. When ``W`` is not a
multiple of ``W'`` (or the reverse) the new ranks carry unequal parts; the lighter ones split
batches to keep the steps equal (``even="exact"``), as any rank short of steps does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hetload.data.stream_plan import (
    Draft,
    Even,
    Evened,
    Totals,
    draft_rank,
    even_rank,
    exact_totals,
    shard_order,
    steps_of,
    stream_seed,
)

__all__ = ["EpochPlanner", "sources"]

_EMPTY = np.zeros(0, dtype=np.int64)


def sources(old_world: int, world: int, rank: int) -> list[tuple[int, int, int]]:
    """``(old rank, slot, share)`` triples: ``rank`` of ``world`` takes the carried shards
    ``j`` of each old rank with ``j % share == slot`` (module doc)."""
    if world <= old_world:
        return [(r, 0, 1) for r in range(rank, old_world, world)]
    old = rank % old_world
    return [(old, rank // old_world, len(range(old, world, old_world)))]


class EpochPlanner:
    """The ranks' drafts of every segment of one epoch, computed on demand.

    Args:
        starts: int64 ``[S + 1]``: shard ``k`` holds samples ``starts[k]:starts[k + 1]``.
        sizes: ``[N]`` every sample's size.
        history: the epoch's completed segments, ``[world, workers, steps, steps per rank]``.
        describe: names a list of shards in errors.
    """

    def __init__(
        self,
        *,
        starts: np.ndarray,
        sizes: np.ndarray,
        batcher: Any,
        seed: int,
        epoch: int,
        shuffle: bool,
        even: Even,
        history: Sequence[Sequence[int]],
        describe: Callable[[list[int]], str] = str,
    ) -> None:
        self.starts, self.sizes, self.batcher = starts, sizes, batcher
        self.seed, self.epoch, self.even, self.describe = seed, epoch, even, describe
        self.history = [tuple(int(v) for v in seg) for seg in history]
        order = shard_order(starts.shape[0] - 1, seed, epoch, 0, shuffle)
        self._live0: list[int] = order[(np.diff(starts) > 0)[order]].tolist()
        # _left[g][k]: shard k's samples at the start of segment g (g >= 1, shards carried)
        self._left: list[dict[int, np.ndarray]] = [{} for _ in range(len(self.history) + 1)]
        self._carry: dict[tuple[int, int], list[int]] = {}

    def left(self, g: int, k: int) -> np.ndarray:
        """int64 ``[m]``: shard ``k``'s samples segment ``g`` serves, ascending."""
        if g == 0:
            return np.arange(self.starts[k], self.starts[k + 1], dtype=np.int64)
        return self._left[g].get(k, _EMPTY)

    def shards_of(self, g: int, world: int, rank: int) -> list[int]:
        """Rank ``rank``'s shards in segment ``g`` (at ``world`` ranks), in dealing order."""
        if g == 0:
            return self._live0[rank::world]
        old_world = self.history[g - 1][0]
        out: list[int] = []
        for old, slot, share in sources(old_world, world, rank):
            out += self._carried(g, old)[slot::share]
        return out

    def draft(self, g: int, world: int, workers: int, rank: int, keep: bool) -> Draft:
        """Rank ``rank``'s streams of segment ``g`` cut by the batcher (numbers if ``keep``)."""
        return draft_rank(
            self.shards_of(g, world, rank),
            lambda k: self.left(g, k),
            self.sizes,
            workers,
            self.batcher,
            lambda w: stream_seed(self.seed, self.epoch, rank, w, g),
            keep,
            self.describe,
        )

    def evened(self, draft: Draft, steps: int) -> Evened:
        """``draft`` evened to ``steps`` by the epoch's ``even`` rule."""
        return even_rank(draft, steps, self.even, self.borrow)

    def borrow(self, keep: bool) -> tuple[int, np.ndarray | None]:
        """The sample a rank with nothing to serve repeats: the epoch's first (shard order)."""
        if not self._live0:
            raise ValueError("ShardStream: no sample left to plan")
        k = self._live0[0]
        return k, (np.array([self.starts[k]], dtype=np.int64) if keep else None)

    def totals(
        self, world: int, workers: int, keep: frozenset[int] | None
    ) -> tuple[Totals, dict[int, Draft]]:
        """The current segment's :class:`Totals` by a dry run of every rank (what
        ``share_plan`` learns by one all-gather instead), and the drafts of the ranks in
        ``keep`` (``None``: all) with their numbers."""
        g = len(self.history)
        drafts = {
            r: self.draft(g, world, workers, r, keep is None or r in keep) for r in range(world)
        }
        summaries = np.asarray([d.summary() for d in drafts.values()], dtype=np.int64)
        summaries = summaries.reshape(-1, 3)
        kept = {r: d for r, d in drafts.items() if keep is None or r in keep}
        if self.even == "exact":
            return exact_totals(summaries), kept
        steps = steps_of(summaries, self.even)
        evened = [self.evened(d, steps) for d in drafts.values()]
        return totals_of(summaries, steps, [[e.repeated, e.dropped, e.split] for e in evened]), kept

    def _carried(self, g: int, old: int) -> list[int]:
        """Old rank ``old``'s shards still holding a sample after its steps of segment
        ``g - 1``, in its dealing order; records their samples in ``_left[g]``."""
        key = (g, old)
        if key in self._carry:
            return self._carry[key]
        world, workers, steps, target = self.history[g - 1]
        draft = self.draft(g - 1, world, workers, old, keep=True)
        evened = self.evened(draft, target)
        done = evened.consumed(steps)
        left = self._left[g]
        for w, (seq, _, _) in enumerate(draft.raw):
            if evened.streams[w].seq is not seq:  # (a borrowed sample: nothing of its own)
                done[w] = np.zeros(0 if seq is None else seq.shape[0], dtype=bool)
            offset = 0
            for k in draft.shards[w]:
                n = self.left(g - 1, k).shape[0]
                part = seq[offset : offset + n]
                rest = part[~done[w][offset : offset + n]]
                offset += n
                if rest.size:
                    left[k] = rest.astype(np.int64)
        self._carry[key] = [k for k in draft.order if k in left]
        return self._carry[key]


def totals_of(summaries: np.ndarray, steps: int, evened: Sequence[Sequence[int]]) -> Totals:
    """:class:`Totals` from every rank's ``[batches, served, samples]`` and its evened
    ``[repeated, dropped, split]`` (summed)."""
    rep, drop, split = (int(v) for v in np.asarray(evened, dtype=np.int64).reshape(-1, 3).sum(0))
    samples = int(summaries[:, 2].sum())
    return Totals(
        steps=steps,
        samples=samples,
        repeated=rep,
        dropped=samples - int(summaries[:, 1].sum()) + drop,
        split=split,
    )
