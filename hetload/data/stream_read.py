"""Large reads of a local shard for :class:`~hetload.data.ShardStream`.

A shard's tar members are contiguous and the index lists each one's offset and size, so a local
shard is read in chunks of whole samples (``os.preadv`` into one buffer per chunk) and each
sample's members are handed out as views of that buffer, instead of WebDataset's stream of
``tarfile`` members (one Python ``bytes`` per member).

The walk is strict: every member's tar header must sit exactly where the previous member's
padded data ends, carry the name ``<key>.<suffix>`` and the size the index lists, in the
writer's exact form (ustar, regular file, valid checksum), and the file must end with the tar's
zero blocks. At the first thing that differs (or a short read), :class:`LocalShard` stops; the
caller reads the rest of the shard with WebDataset, whose errors and the index checks of
``ShardStream`` then report it exactly as they always did.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from hetload.guards import NotRegularFile, open_regular_fd
from hetload.shards.format import BLOCK

__all__ = ["CHUNK", "LocalShard"]

#: bytes per read (whole samples; a larger sample is one read). A sample the stream holds
#: for a later batch keeps its chunk alive, so this bounds what one held sample can pin: with
#: the default 2,048 held samples at most 512 MiB, whatever the sample size (no slower than
#: 2 MiB chunks here: a 256 KiB read from the page cache costs ~40 us, its syscall ~1 us).
CHUNK = 256 << 10


class LocalShard:
    """The samples of a local shard, in order, as WebDataset's ``{"__key__": key, suffix:
    bytes}`` dicts whose members are ``memoryview`` s of chunk buffers.

    Args:
        path: the shard file.
        entry: its :class:`~hetload.shards.index.ShardEntry` (keys, offsets, sizes per suffix).

    After iteration, :attr:`complete` says whether every sample and the tar's end were read
    and checked; otherwise :attr:`served` samples were yielded and the caller reads the rest.
    """

    def __init__(self, path: str, entry: Any, chunk: int = CHUNK) -> None:
        self.path = path
        self.entry = entry
        self.chunk = chunk
        self.served = 0
        self.complete = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        entry = self.entry
        n = entry.nsamples
        try:
            fd = open_regular_fd(self.path)
        except (OSError, NotRegularFile):
            return  # the WebDataset path names the problem
        try:
            # per sample: its members (offset, suffix, size) in file order
            members = [
                sorted(
                    (column[p], suffix, entry.size[suffix][p])
                    for suffix, column in entry.offset.items()
                    if column[p] >= 0
                )
                for p in range(n)
            ]
            pos = 0  # where the next tar header must be
            p = 0
            while p < n:
                # a chunk of whole samples from sample p: [lo, hi)
                lo = entry.start[p]
                if lo != pos:
                    return
                q = p + 1
                while q < n and entry.end[q] - lo <= self.chunk:
                    q += 1
                hi = _padded(entry.end[q - 1])
                buffer = np.empty(hi - lo, dtype=np.uint8)
                try:
                    if os.preadv(fd, [buffer], lo) != hi - lo:
                        return
                except OSError:
                    return  # an I/O error: WebDataset's reader meets it again and reports it
                view = memoryview(buffer)
                for s in range(p, q):
                    sample: dict[str, Any] = {"__key__": entry.keys[s]}
                    for offset, suffix, size in members[s]:
                        if offset - BLOCK != pos or not _header_ok(
                            view[pos - lo : offset - lo], f"{entry.keys[s]}.{suffix}", size
                        ):
                            return
                        sample[suffix] = view[offset - lo : offset - lo + size]
                        pos = _padded(offset + size)
                    if pos > hi:
                        return
                    yield sample
                    self.served += 1
                p = q
            try:
                self.complete = _zeros_to_end(fd, pos)
            except OSError:
                return
        finally:
            os.close(fd)


def _padded(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


#: the ustar prefix field of a member written without one (155 zero bytes)
_NO_PREFIX = bytes(155)


def _header_ok(header: memoryview, name: str, size: int) -> bool:
    """The ustar header the writer makes for a regular member ``name`` of ``size`` bytes,
    with a valid checksum."""
    if len(header) != BLOCK or header[:100] != name.encode().ljust(100, b"\0"):
        return False
    if header[124:135] != b"%011o" % size or header[156:157] not in (b"0", b"\0"):
        return False
    if header[345:500] != _NO_PREFIX:  # a ustar prefix would change the name
        return False
    try:
        stored = int(bytes(header[148:156]).rstrip(b"\0 ") or b"-1", 8)
    except ValueError:
        return False
    # the checksum counts its own 8 bytes as spaces (one numpy sum; the 8 bytes in Python)
    total = int(np.frombuffer(header, dtype=np.uint8).sum(dtype=np.int64))
    return total - sum(header[148:156]) + 8 * 32 == stored


def _zeros_to_end(fd: int, pos: int) -> bool:
    """Whether the file holds only zero bytes from ``pos`` on (the tar's end blocks)."""
    size = os.fstat(fd).st_size
    if size - pos < 2 * BLOCK:
        return False
    tail = np.empty(size - pos, dtype=np.uint8)
    return os.preadv(fd, [tail], pos) == len(tail) and not tail.any()
