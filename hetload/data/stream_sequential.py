"""Sequential reads of whole shards for :class:`~hetload.data.ShardStream`: WebDataset's tar
stream (URLs, ``pipe:`` commands, shards that differ from the index) or large chunked reads of a
local shard (:class:`~hetload.data.stream_read.LocalShard`), every sample checked against its
index entry, the planned batches served as their samples arrive.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from hetload.data.stream_borrow import borrow, lent_from
from hetload.data.stream_read import LocalShard
from hetload.guards import open_regular, shown
from hetload.shards.format import ShardError, decode_sample
from hetload.shards.index import is_url

__all__ = ["SequentialReads"]


class SequentialReads:
    """The sequential reading of :class:`~hetload.data.ShardStream` (a mixin: it uses the
    stream's ``urls``, ``index``, ``fields``, ``policy``, ``_starts`` and ``_finish``)."""

    def _serve_sequential(
        self, stream: Any, shards: list[int], skip: int, epoch: int, who: str
    ) -> Iterator[Any]:
        """Read ``shards`` and yield the planned batches from batch ``skip`` on, in order.

        A sample is held from its read until its last planned batch is served. Samples that
        cannot be read (``on_error`` skip/warn) leave their batch smaller; a batch none of
        whose samples could be read gets a substitute (the last sample served, or the next one
        read), marked ``is_repeat`` and named in the report, so no batch is empty and the rank
        keeps its step count.
        """
        n = len(stream)
        if skip >= n:
            return
        seq, pos, lo, hi = stream.seq, stream.pos, stream.lo, stream.hi
        uses = np.bincount(
            np.concatenate([pos[lo[b] : hi[b]] for b in range(skip, n)]), minlength=seq.shape[0]
        )
        ready = [int(pos[lo[b] : hi[b]].max()) for b in range(n)]
        # seq holds each shard's samples contiguously, shards in reading order
        shard_of = np.searchsorted(self._starts, seq, side="right") - 1
        needed_shards = set(shard_of[np.flatnonzero(uses)].tolist())
        change = np.flatnonzero(np.diff(shard_of)).tolist()
        last_of = dict(zip(shard_of[change].tolist(), change))
        if seq.size:
            last_of[int(shard_of[-1])] = seq.shape[0] - 1
        arrival = {int(g): a for a, g in enumerate(seq.tolist()) if uses[a]}
        held: dict[int, tuple[str, Any] | None] = {}
        spare: list[tuple[str, Any]] = []  # the last sample served: a substitute
        waiting = [False]
        lent = ""  # where a borrowed substitute comes from (stream_borrow)
        readable: set[int] = set()  # the global numbers of the samples due read and decoded
        b = skip

        def emit(frontier: int) -> Iterator[Any]:
            nonlocal b
            while b < n and ready[b] <= frontier:
                items = []
                for a in pos[lo[b] : hi[b]].tolist():
                    item = held.get(a)
                    if item is not None:
                        items.append(item)
                    uses[a] -= 1
                    if uses[a] <= 0:
                        held.pop(a, None)
                repeat = bool(stream.repeat[b])
                if not items:
                    if not spare:
                        waiting[0] = True
                        for a in pos[lo[b] : hi[b]].tolist():
                            uses[a] += 1  # undo: served when a substitute arrives
                        return
                    self.policy.note(
                        f"{who} epoch {epoch}",
                        f"batch {b} of its plan has no readable sample; sample "
                        f"{spare[-1][0]} stands in for it (is_repeat=True){lent}",
                    )
                    items, repeat = [spare[-1]], True
                waiting[0] = False
                spare[:] = [items[-1]]
                yield self._finish(items, repeat, epoch)
                b += 1

        frontier = -1
        for k in shards:
            if b >= n:
                break
            end = last_of.get(k, frontier)
            if k not in needed_shards:
                frontier = max(frontier, end)
                yield from emit(frontier)
                continue
            first = int(self._starts[k])
            for position, key, sample in self._samples(k, arrival, first):
                a = arrival.get(first + position)
                if a is None:
                    continue
                held[a] = None if sample is None else (key, sample)
                if sample is not None:
                    readable.add(first + position)
                if sample is not None and waiting[0]:
                    spare[:] = [(key, sample)]
                frontier = max(frontier, a)
                yield from emit(frontier)
            frontier = max(frontier, end)
            yield from emit(frontier)
        if b < n:
            # nothing due of this worker's is readable: the index's first readable sample stands in
            # (not one of this worker's samples the walk could not serve: it is reported lost)
            borrowed = borrow(self, set(arrival) - readable)
            if borrowed is None:
                names = ", ".join(self.urls[k] for k in shards)
                raise ShardError(
                    names, None, f"no sample could be read, but {who} owes {n - b} batches"
                )
            g, key, sample = borrowed
            spare[:] = [(key, sample)]
            lent = lent_from(self, g, shards)
            yield from emit(seq.shape[0])

    def _samples(
        self, k: int, wanted: Mapping[int, int], first: int
    ) -> Iterator[tuple[int, str, dict[str, Any] | None]]:
        """``(position, key, sample)`` of shard ``k``'s samples that match its index entry, in
        order; only those whose global number ``first + position`` is in ``wanted`` are decoded,
        ``None`` for one that could not be (reported)."""
        url, entry = self.urls[k], self.index.shards[k]
        mismatch = _local_size_mismatch(url, entry.filesize)
        if mismatch is not None:
            # raised under "raise"; else the shard is still read, each sample checked
            # against its index entry, up to the first that differs
            self.policy.handle(url, ShardError(url, None, mismatch))
        position = 0
        for raw in self._read_shard(k):
            key = raw["__key__"]
            members = {name: data for name, data in raw.items() if not name.startswith("__")}
            problem = _entry_mismatch(entry, position, key, members)
            if problem is not None:
                self._report_unserved(k, position, problem, wanted)
                return
            position += 1
            if first + position - 1 not in wanted:
                continue
            try:
                sample = decode_sample(members, url, key, self.fields)
                _check_rows(entry, position - 1, sample, url, key)
            except ShardError as exc:
                self.policy.handle(exc.source, exc)
                yield position - 1, key, None
                continue
            yield position - 1, key, sample
        if position < entry.nsamples:
            self._report_unserved(k, position, f"the shard ends after {position} samples", wanted)

    def _report_unserved(
        self, k: int, position: int, problem: str, wanted: Mapping[int, int]
    ) -> None:
        """The shard differs from its index from sample ``position`` on: every sample not
        served is named in one report entry (raised under ``on_error="raise"``). Only those
        still ``wanted`` (global numbers) were lost: after a resume, the shard's samples served
        before the checkpoint were not."""
        entry = self.index.shards[k]
        first = int(self._starts[k])
        after = range(position, entry.nsamples)
        lost = [entry.keys[p] for p in after if first + p in wanted]
        unserved = ""
        if lost:  # (none lost: the shard has a sample beyond those the index lists)
            named = f"key {lost[0]}" if len(lost) == 1 else f"keys {lost[0]}..{lost[-1]}"
            if len(lost) < len(after):
                named += ", those still due"
            unserved = f"; {len(lost)} samples not served ({named})"
        error = ShardError(
            self.urls[k],
            None,
            f"does not match the index at sample {position}: {problem}{unserved} "
            "(rebuilt, replaced or truncated since the index was written?)",
        )
        self.policy.handle(error.source, error)

    def _read_shard(self, k: int) -> Iterator[dict[str, Any]]:
        url, entry = self.urls[k], self.index.shards[k]
        if is_url(url) or _local_size_mismatch(url, entry.filesize) is not None:
            yield from self._read_tar(k)
            return
        # a local shard as the index describes it: large reads, members as views of them
        local = LocalShard(url.removeprefix("file://"), entry)
        yield from local
        if not local.complete:
            # something differs from the index: WebDataset reads (and names) the rest
            for i, raw in enumerate(self._read_tar(k)):
                if i >= local.served:
                    yield raw

    def _read_tar(self, k: int) -> Iterator[dict[str, Any]]:
        from webdataset.tariterators import group_by_keys, tar_file_expander

        url = self.urls[k]
        last_member: list[str | None] = [None]
        seen: list[BaseException | None] = [None]

        def handler(exn: BaseException) -> bool:
            if exn is seen[0]:  # wds reports one failure at each level it passes through
                return True
            seen[0] = exn
            after = f"after {last_member[0]}" if last_member[0] else "at the start"
            reason = str(exn.args[0]) if exn.args else type(exn).__name__
            reason = reason.split(" @ ")[0] + _size_hint(url, self.index.shards[k].filesize)
            error = ShardError(url, None, f"unreadable {after}: {reason}")
            self.policy.handle(error.source, error)
            return True

        def tracked(files: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for item in files:
                if "fname" in item:
                    last_member[0] = item["fname"]
                yield item

        try:
            stream = _open(url)
        except (OSError, ValueError) as exc:
            self.policy.handle(url, ShardError(url, None, f"cannot open: {exc}"))
            return
        try:
            files = tar_file_expander([{"url": url, "stream": stream}], handler=handler)
            yield from group_by_keys(tracked(files), lcase=False, handler=handler)
        finally:
            try:
                stream.close()  # a pipe: command's exit status is checked here
            except Exception as exc:
                self.policy.handle(url, ShardError(url, None, f"closing failed: {exc}"))


def _local_size_mismatch(url: str, expected: int) -> str | None:
    """For a local shard whose byte size differs from the index: the reason."""
    if is_url(url) or expected < 0:
        return None
    try:
        info = os.stat(url.removeprefix("file://"))
    except OSError:
        return None  # opening it reports the real problem
    if not stat.S_ISREG(info.st_mode):  # (a FIFO: refused on opening)
        return None
    return _size_mismatch(info.st_size, expected)


def _size_mismatch(size: int, expected: int) -> str | None:
    """How a shard of ``size`` bytes differs from the ``expected`` (-1: unknown), or ``None``."""
    if expected < 0 or size == expected:
        return None
    return f"is {size} bytes, the index says {expected}: truncated or replaced"


def _entry_mismatch(entry: Any, position: int, key: str, members: dict[str, Any]) -> str | None:
    """How streamed sample ``position`` (``key``, its member suffixes) differs from the
    index entry, or ``None``."""
    if position >= entry.nsamples:
        return f"a sample {shown(key)} beyond the {entry.nsamples} the index lists"
    if key != entry.keys[position]:
        return f"key {shown(key)} where the index has {entry.keys[position]}"
    expected = {suffix for suffix, column in entry.offset.items() if column[position] >= 0}
    if set(members) != expected:
        return f"sample {key} has members {sorted(members)}, the index lists {sorted(expected)}"
    for suffix, column in entry.size.items():
        if column[position] >= 0 and len(members[suffix]) != column[position]:
            return (
                f"member {key}.{suffix} has {len(members[suffix])} bytes, the index says "
                f"{column[position]}"
            )
    return None


def _check_rows(entry: Any, position: int, sample: dict[str, Any], url: str, key: str) -> None:
    """Each decoded array's first dimension must be the rows the index recorded (the plan
    was cut on them)."""
    for name, column in entry.rows.items():
        value = sample.get(name)
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] != column[position]:
            raise ShardError(
                url,
                f"{key}.{name}.npy",
                f"has {value.shape[0]} rows, the index says {column[position]}",
            )


def _size_hint(url: str, expected: int) -> str:
    """For a local shard whose size differs from the index: say so (the likely cause)."""
    if is_url(url) or not os.path.exists(url) or expected < 0:
        return ""
    size = os.path.getsize(url)
    if size == expected:
        return ""
    return f" (the file has {size} bytes, the index says {expected}: truncated or replaced)"


def _open(url: str):
    """A binary stream of ``url``: local paths and ``pipe:`` through WebDataset's ``gopen``,
    other schemes through fsspec when installed (else ``gopen``'s curl/gsutil handlers)."""
    from webdataset.gopen import gopen

    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme and scheme != "file" and not url.startswith("pipe:"):
        try:
            import fsspec
        except ImportError:
            return gopen(url, "rb")
        return fsspec.open(url, "rb").open()
    if not is_url(url):
        path = url.removeprefix("file://")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no shard at {url}")
        return open_regular(path)  # a FIFO or device listed as a shard would block or not end
    return gopen(url, "rb")
