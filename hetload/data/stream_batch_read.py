"""Batch reads of local shards for :class:`~hetload.data.ShardStream`: each planned batch read
through the index, as :class:`~hetload.data.ShardDataset` reads one.

The plan (:mod:`hetload.data.stream_plan`) names every batch's samples before a byte is read, and
the index gives every member's offset and size. So where a worker's shards are local files, each
batch is read by :func:`hetload.data.batch_read.read_batch`: one
positioned read per sample straight into the batch buffer (a DataLoader worker's reused shared
segment), every tar header, ``.npy`` header and row count checked against the index, index fields
re-based in place. That is one copy from the page cache to the batch, where the sequential read
(:mod:`hetload.data.stream_sequential`) makes two (into a chunk, then ``collate``'s copy), and no
sample is held in memory waiting for the rest of its batch.

A batch the batch read refuses (a member that differs from the index, a read error) is read
sample by sample (``ShardDataset``'s per-sample read and the stream's row check): each unreadable
sample is reported under ``on_error`` and left out, and only it. A sample's bytes are located by
the index and checked on their own, so one damaged sample does not cost the rest of its shard (the
sequential read stops a shard at its first difference from the index, since it finds samples by
walking the tar). A batch without a readable sample gets the stream's substitute (the last sample
served, else the next readable one of the plan, else the index's first readable one:
:mod:`hetload.data.stream_borrow`), marked ``is_repeat`` and named in the report.

Each worker checks its shards once before reading (after a resume, those with samples still
due): a shard that cannot be opened is reported with the keys it loses; one whose byte size
differs from the index is reported and still read, each of its samples checked where the index
puts it. So nothing here holds samples, whatever the shards: a large bucketer buffer costs no
memory (``ShardStream``'s ``buffer_size``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from hetload.data.batch_read import read_batch, read_stored
from hetload.data.shard_dataset import ShardDataset
from hetload.data.stream_borrow import borrow, index_source, lent_from
from hetload.data.stream_sequential import _check_rows, _size_mismatch
from hetload.guards import NotRegularFile, open_regular_fd
from hetload.shards.format import ShardError
from hetload.shards.index import is_url

__all__ = ["READS", "BatchReads", "Reads"]

#: how ``ShardStream`` reads local shards that match the index
Reads = Literal["batch", "sequential"]
READS: tuple[str, ...] = ("batch", "sequential")


class BatchReads:
    """The batch reads of :class:`~hetload.data.ShardStream` (a mixin: it uses the stream's
    ``urls``, ``index``, ``fields``, ``size_field``, ``policy``, ``reads``, ``transform``,
    ``collate_fn``, ``_starts`` and ``_finish``)."""

    def _batch_source(self, shards: list[int]) -> ShardDataset | None:
        """A ``ShardDataset`` over the stream's shards where ``reads="batch"`` and every shard
        of ``shards`` is local; else ``None``: the sequential read serves them."""
        if self.reads != "batch" or any(is_url(self.urls[k]) for k in shards):
            return None
        source = self.__dict__.get("_by_index")
        if source is None:
            source = index_source(self, self.policy)  # the same report file
            self.__dict__["_by_index"] = source
        return source

    def _open_shards(self, shards: list[int], due: np.ndarray | None = None) -> set[int]:
        """Check each shard of ``shards`` once before reading, each problem one report entry
        (``on_error``) naming the samples it loses; returns the numbers of those samples. A
        shard that cannot be opened loses all; one shorter than the index says, the samples
        past its end; the others of a shard whose size differs are still read, each checked
        where the index puts it. ``due`` (sorted global numbers; ``None``: all): the samples
        the worker still serves (after a resume, in an elastic segment); a shard without one is
        not checked, and only they are counted lost (those served before were not lost)."""
        lost: set[int] = set()
        for k in shards:
            lo, hi = int(self._starts[k]), int(self._starts[k + 1])
            if due is not None:
                mine = due[np.searchsorted(due, lo) : np.searchsorted(due, hi)]
                if not mine.size:
                    continue  # no sample of it is due (served before, or left out)
            url, entry = self.urls[k], self.index.shards[k]
            first = 0  # the first sample lost
            try:
                fd = open_regular_fd(url.removeprefix("file://"))  # a FIFO: refused, no wait
            except NotRegularFile as exc:
                problem: str | None = f"is {exc.kind}, not a regular file"
            except OSError as exc:
                problem = f"cannot open: {exc.strerror or exc}"
            else:
                try:
                    size = os.fstat(fd).st_size
                finally:
                    os.close(fd)
                problem = _size_mismatch(size, entry.filesize)
                if problem is None:
                    continue
                first = int(np.searchsorted(np.asarray(entry.end, np.int64), size, side="right"))
            gone = np.arange(lo + first, hi)
            if due is not None:
                gone = np.intersect1d(gone, mine)
            if gone.size:
                a, b = entry.keys[int(gone[0]) - lo], entry.keys[int(gone[-1]) - lo]
                named = f"key {a}" if gone.size == 1 else f"keys {a}..{b}"
                if due is not None and gone.size < hi - lo - first:
                    named += ", those still due"
                problem += f"; {gone.size} samples not served ({named})"
            self.policy.handle(url, ShardError(url, None, problem))
            lost.update(gone.tolist())
        return lost

    def _serve_batches(
        self,
        source: ShardDataset,
        stream: Any,
        shards: list[int],
        skip: int,
        epoch: int,
        who: str,
    ) -> Iterator[Any]:
        """Yield the planned batches of ``stream`` (over ``shards``) from batch ``skip`` on,
        each read through the index (see the module docstring)."""
        n = len(stream)
        spare: int | None = None  # the last sample served: a substitute
        # samples found unreadable (reported once) this epoch: left out of their batches
        # the samples of the batches still to serve (a resumed or elastic segment's shards may
        # hold samples served before; the batcher may leave some out): only they can be lost
        skipped = self._open_shards(shards, _due(stream, skip)) if skip < n else set()
        for b in range(skip, n):
            numbers = stream.batch(b).tolist()
            repeat = bool(stream.repeat[b])
            batch = None
            if skipped.isdisjoint(numbers):
                batch = self._read_whole(source, numbers, repeat, epoch)
            if batch is None:
                items = self._read_each(source, numbers, skipped)
                if not items:
                    items = [self._substitute(source, stream, shards, b, spare, skipped, who)]
                    self.policy.note(
                        f"{who} epoch {epoch}",
                        f"batch {b} of its plan has no readable sample; sample {items[0][1]} "
                        f"stands in for it (is_repeat=True){lent_from(self, items[0][0], shards)}",
                    )
                    repeat = True
                spare = items[-1][0]
                batch = self._finish([(key, sample) for _, key, sample in items], repeat, epoch)
            else:
                spare = numbers[-1]
            yield batch

    def _read_whole(
        self, source: ShardDataset, numbers: list[int], repeat: bool, epoch: int
    ) -> Any | None:
        """Batch ``numbers`` by one batch read, or ``None`` where it was refused."""
        if self.transform is None and self.collate_fn is not None:
            # a PackedSamples, as ShardDataset hands any collate_fn: a sequence of the sample
            # dicts, which hetload.collate batches around the buffer the read filled
            packed = read_batch(source, numbers)
            if packed is None:
                return None
            return self.collate_fn(packed.with_value("is_repeat", repeat))
        # plain sample dicts (views of one buffer) for the transform, or yielded as a list
        stored = read_stored(source, numbers)
        if stored is None:
            return None
        keys = source._keys
        return self._finish(
            [(keys[g], sample) for g, sample in zip(numbers, stored, strict=True)], repeat, epoch
        )

    def _read_each(
        self, source: ShardDataset, numbers: list[int], skipped: set[int]
    ) -> list[tuple[int, str, dict[str, Any]]]:
        """``(number, key, sample)`` of the readable samples of ``numbers``, each read on its
        own; an unreadable one is reported (``on_error``) and added to ``skipped``."""
        items = []
        for g in numbers:
            if g in skipped:
                continue
            sample = self._read_one(source, g)
            if sample is None:
                skipped.add(g)
                continue
            items.append((g, source._keys[g], sample))
        return items

    def _read_one(self, source: ShardDataset, g: int) -> dict[str, Any] | None:
        """Sample ``g`` by ``ShardDataset``'s per-sample read, its rows checked against the
        index (the plan was cut on them); ``None`` where it is unreadable (reported)."""
        sample = source[g]
        if sample is None:
            return None
        k = int(source._shard_of[g])
        try:
            _check_rows(
                self.index.shards[k],
                g - int(self._starts[k]),
                sample,
                self.urls[k],
                source._keys[g],
            )
        except ShardError as exc:
            self.policy.handle(exc.source, exc)
            return None
        return sample

    def _substitute(
        self,
        source: ShardDataset,
        stream: Any,
        shards: list[int],
        b: int,
        spare: int | None,
        skipped: set[int],
        who: str,
    ) -> tuple[int, str, dict[str, Any]]:
        """The sample that stands in for batch ``b``, as the sequential read picks it: the
        last one served, else the next readable one in reading order after the batch's last
        sample (among those the batches from ``b`` on serve), else the index's first readable
        one (:mod:`hetload.data.stream_borrow`)."""
        seq, pos, lo, hi = stream.seq, stream.pos, stream.lo, stream.hi
        due = int(pos[lo[b] : hi[b]].max())
        wanted = np.zeros(seq.shape[0], dtype=bool)
        wanted[pos[lo[b] : hi[-1]]] = True
        later = (int(seq[a]) for a in np.flatnonzero(wanted[due + 1 :]) + due + 1)
        for g in itertools.chain([] if spare is None else [spare], later):
            if g in skipped:
                continue
            sample = self._read_one(source, g)
            if sample is not None:
                return g, source._keys[g], sample
            skipped.add(g)
        # nothing due of this worker's is readable: the index's first readable sample stands in
        borrowed = borrow(self, skipped)
        if borrowed is None:
            raise ShardError(
                ", ".join(self.urls[k] for k in shards),
                None,
                f"no sample could be read, but {who} owes {len(stream) - b} batches",
            )
        return borrowed


def _due(stream: Any, skip: int) -> np.ndarray:
    """int64 sorted global numbers of the samples batches ``skip:`` of ``stream`` serve."""
    m = stream.pos.shape[0]
    mark = np.zeros(m + 1, dtype=np.int64)
    # each batch is a contiguous run of ``pos``: mark the runs, then read them off
    np.add.at(mark, stream.lo[skip:], 1)
    np.add.at(mark, stream.hi[skip:], -1)
    covered = np.cumsum(mark[:-1]) > 0
    return np.unique(stream.seq[stream.pos[covered]]).astype(np.int64)
