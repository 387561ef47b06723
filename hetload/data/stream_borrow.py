"""A borrowed substitute for :class:`~hetload.data.ShardStream`.

A planned batch with no readable sample gets a substitute so that the rank keeps its step
count (the DDP ranks step together): the last sample the worker served, else the next readable
one of its own plan. Where neither exists (the worker's only shard missing, cut at its first
header, a folder, a FIFO...; or, after a resume, every batch still due unreadable while the
worker's readable samples were served before the checkpoint) it would have nothing to stand in,
and under ``on_error="skip"`` one damaged shard would stop the whole job. Then the substitute is
borrowed: the first readable sample of the index, in index order. The choice depends only on
the index and on which files are readable, so every worker in that situation makes the same
one; it is marked ``is_repeat`` and named in the report like any substitute. Samples found
unreadable here are not reported (the worker that reads them reports them).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from hetload.data.shard_dataset import ShardDataset
from hetload.guards import NotRegularFile, open_regular_fd
from hetload.shards.format import ShardError
from hetload.shards.index import is_url

__all__ = ["MAX_BORROW_TRIES", "borrow", "lent_from"]

#: the most samples read to find a borrowed substitute (a systematic failure, such as every
#: shard gone, is raised rather than searched through the whole index)
MAX_BORROW_TRIES = 256


def borrow(stream: Any, exclude: set[int]) -> tuple[int, str, dict[str, Any]] | None:
    """``(global number, key, sample)`` of the first readable sample of ``stream``'s shards
    in index order, passing over the numbers in ``exclude`` (known unreadable), or ``None``
    (none among :data:`MAX_BORROW_TRIES`). The worker's own shards count too: after a resume
    its samples served before the checkpoint may be the only readable ones.

    ``stream`` is the :class:`~hetload.data.ShardStream` (its ``index``, ``urls``, ``fields``,
    ``size_field`` and ``_starts``). A local shard's candidates are read by ``ShardDataset``'s
    per-sample path with a private ``on_error="skip"`` policy; a URL or ``pipe:`` shard's by
    WebDataset's tar reader from its start, stopping at its first error or difference from the
    index. Each candidate's rows are checked against the index.
    """
    tries = [MAX_BORROW_TRIES]
    for k, entry in enumerate(stream.index.shards):
        if entry.nsamples == 0:
            continue
        url = stream.urls[k]
        if is_url(url):
            found = _first_streamed(stream, k, tries, exclude)
        elif _intact(url, entry.filesize):
            found = _first_local(stream, k, tries, exclude)
        else:
            continue
        if found is not None:
            return found
        if tries[0] <= 0:
            return None
    return None


def index_source(stream: Any, on_error: str) -> ShardDataset:
    """A ``ShardDataset`` over the stream's index that reads the stream's own shard URLs (they
    may differ from the index's folder), without checking shards up front (each is checked by
    the worker that reads it)."""
    source = ShardDataset(
        stream.index,
        fields=stream.fields,
        size_field=stream.size_field,
        on_error=on_error,
        check=False,
    )
    source._urls = [url.removeprefix("file://") for url in stream.urls]
    return source


def _first_local(
    stream: Any, k: int, tries: list[int], exclude: set[int]
) -> tuple[int, str, dict] | None:
    """The first readable sample of local shard ``k`` by per-sample reads (``tries[0]`` is
    the budget of reads left, counted down)."""
    # (imported here: the sequential read imports this module)
    from hetload.data.stream_sequential import _check_rows

    quiet = stream.__dict__.get("_borrow_source")
    if quiet is None:
        quiet = index_source(stream, "skip")  # private: the owner of a damaged shard reports it
        stream.__dict__["_borrow_source"] = quiet
    entry, first = stream.index.shards[k], int(stream._starts[k])
    for g in range(first, int(stream._starts[k + 1])):
        if g in exclude:
            continue
        if tries[0] <= 0:
            return None
        tries[0] -= 1
        sample = quiet[g]
        if sample is None:
            continue
        key = quiet._keys[g]
        try:
            _check_rows(entry, g - first, sample, stream.urls[k], key)
        except ShardError:
            continue
        return g, key, sample
    return None


def _first_streamed(
    stream: Any, k: int, tries: list[int], exclude: set[int]
) -> tuple[int, str, dict] | None:
    """The first readable sample of URL (or ``pipe:``) shard ``k``, read from its start by
    WebDataset, stopping quietly at its first error or difference from the index."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    from hetload.data.stream_sequential import _check_rows, _entry_mismatch, _open
    from hetload.shards.format import decode_sample

    url, entry, first = stream.urls[k], stream.index.shards[k], int(stream._starts[k])
    try:
        handle = _open(url)
    except Exception:  # (any failure to open: the owner of the shard reports it)
        return None

    def stop(exn: BaseException) -> bool:
        return False  # WebDataset stops at the first error

    try:
        files = tar_file_expander([{"url": url, "stream": handle}], handler=stop)
        for position, raw in enumerate(group_by_keys(files, lcase=False, handler=stop)):
            if tries[0] <= 0:
                return None
            tries[0] -= 1
            key = raw["__key__"]
            members = {name: data for name, data in raw.items() if not name.startswith("__")}
            if _entry_mismatch(entry, position, key, members) is not None:
                return None  # the rest of the shard cannot be placed in the index
            if first + position in exclude:
                continue
            try:
                sample = decode_sample(members, url, key, stream.fields)
                _check_rows(entry, position, sample, url, key)
            except ShardError:
                continue
            return first + position, key, sample
        return None
    except Exception:  # a damaged tar WebDataset did not hand to the handler
        return None
    finally:
        with contextlib.suppress(Exception):  # (a pipe: command's exit status: its owner's)
            handle.close()


def lent_from(stream: Any, g: int, own: list[int]) -> str:
    """For a substitute ``g`` from outside the shards ``own``: where it was borrowed (the
    report's words), else ``""``."""
    k = int(np.searchsorted(stream._starts, g, side="right")) - 1
    if k in own:
        return ""
    return f", borrowed from {stream.urls[k]}: no sample due in this worker's shards is readable"


def _intact(url: str, expected: int) -> bool:
    """Whether a local shard can serve as a lender: a regular file of the index's size (URL
    shards are read as they come, each sample checked: :func:`_first_streamed`)."""
    from hetload.data.stream_sequential import _size_mismatch

    try:
        fd = open_regular_fd(url.removeprefix("file://"))
    except (OSError, NotRegularFile):
        return False
    try:
        return _size_mismatch(os.fstat(fd).st_size, expected) is None
    finally:
        os.close(fd)
