"""A substitute from outside a worker's shards, for :class:`~hetload.data.ShardStream`.

A planned batch with no readable sample gets a substitute so that the rank keeps its step
count (the DDP ranks step together): the last sample the worker served, else the next readable
one of its own plan. Where a worker has no readable sample at all (its only shard missing,
truncated to its first header, a folder, a FIFO...) it would have nothing to stand in, and under
``on_error="skip"`` one damaged shard would stop the whole job. Then the substitute is borrowed:
the first readable sample of the other shards, in index order. The choice depends only on the
index and on which files are readable, so every worker in that situation makes the same one; it
is marked ``is_repeat`` and named in the report like any substitute. Samples of other shards
found unreadable here are not reported (the worker that owns them reports them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hetload.data.shard_dataset import ShardDataset
from hetload.guards import NotRegularFile, open_regular_fd
from hetload.shards.format import ShardError
from hetload.shards.index import is_url

__all__ = ["MAX_BORROW_TRIES", "borrow", "lent_from"]

#: the most samples of other shards read to find a substitute (a systematic failure, such as
#: every shard gone, is raised rather than searched through the whole index)
MAX_BORROW_TRIES = 256


def borrow(stream: Any, own: list[int]) -> tuple[int, str, dict[str, Any]] | None:
    """``(global number, key, sample)`` of the first readable sample of ``stream``'s shards
    outside ``own``, in index order, or ``None`` (none among :data:`MAX_BORROW_TRIES`).

    ``stream`` is the :class:`~hetload.data.ShardStream` (its ``index``, ``urls``, ``fields``,
    ``size_field`` and ``_starts``); each candidate is read by ``ShardDataset``'s per-sample
    path with a private ``on_error="skip"`` policy and its rows checked against the index.
    """
    # (imported here: the sequential read imports this module)
    from hetload.data.stream_sequential import _check_rows

    quiet = stream.__dict__.get("_borrow_source")
    if quiet is None:
        quiet = ShardDataset(
            stream.index,
            fields=stream.fields,
            size_field=stream.size_field,
            on_error="skip",  # private: the owner of a damaged shard reports it
            check=False,
        )
        quiet._urls = [url.removeprefix("file://") for url in stream.urls]
        stream.__dict__["_borrow_source"] = quiet
    mine = set(own)
    tries = 0
    for k, entry in enumerate(stream.index.shards):
        if k in mine or entry.nsamples == 0 or not _intact(stream.urls[k], entry.filesize):
            continue
        for g in range(int(stream._starts[k]), int(stream._starts[k + 1])):
            if tries == MAX_BORROW_TRIES:
                return None
            tries += 1
            sample = quiet[g]
            if sample is None:
                continue
            key = quiet._keys[g]
            try:
                _check_rows(entry, g - int(stream._starts[k]), sample, stream.urls[k], key)
            except ShardError:
                continue
            return g, key, sample
    return None


def lent_from(stream: Any, g: int, own: list[int]) -> str:
    """For a substitute ``g`` from outside the shards ``own``: where it was borrowed (the
    report's words), else ``""``."""
    k = int(np.searchsorted(stream._starts, g, side="right")) - 1
    if k in own:
        return ""
    return f", borrowed from {stream.urls[k]}: no sample of this worker's shards is readable"


def _intact(url: str, expected: int) -> bool:
    """Whether a shard can serve as a lender: a regular file of the index's size (a remote
    one is taken as it comes; its per-sample read checks it)."""
    from hetload.data.stream_sequential import _size_mismatch

    if is_url(url):
        return True
    try:
        fd = open_regular_fd(url.removeprefix("file://"))
    except (OSError, NotRegularFile):
        return False
    try:
        return _size_mismatch(os.fstat(fd).st_size, expected) is None
    finally:
        os.close(fd)
