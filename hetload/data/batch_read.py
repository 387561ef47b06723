"""Batch-level reads of a :class:`~hetload.data.ShardDataset`: a batch's array data read
straight into its batch buffer, one ``preadv`` per sample.

The batch's layout is known before reading (:mod:`hetload.data.batch_plan`): one buffer from
:func:`hetload.arena.batch_buffer`, each field's samples back to back in it. One ``preadv`` per
sample reads its byte range ``[start, end)``: the tar headers, ``.npy`` headers and ``.json``
into a small scratch buffer, each array's data into its place in the batch buffer. The compiled
read (``torch.ops.hetload.read_members_``, ``cuda/read_cpu.cpp``) does it for the whole batch
without the GIL; a pure-Python read of the same plan serves where the extension is absent.

Every byte skipped over is then checked as :meth:`ShardDataset.__getitem__` checks it: each tar
header's member name and size against the index, each ``.npy`` header against the one the
layout assumed (byte for byte: same dtype, shape, C order), the read's length (truncation), the
``.json`` (valid, listing exactly the arrays read: :mod:`hetload.data.batch_meta`). On any
mismatch or error the batch is read again by the per-sample path (:func:`read_batch` returns
``None``), so the ``on_error`` policies, substitutes and reports behave exactly as without this
module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import accumulate, chain
from typing import Any

import numpy as np
import torch

from hetload.arena import batch_buffer
from hetload.data.batch_index import BatchIndex, gather
from hetload.data.batch_meta import sample_layouts
from hetload.data.batch_plan import BatchPlan, plan_batch, rebase_plan
from hetload.data.leases import Leases
from hetload.data.substitute import getitems
from hetload.packed import PackedSamples
from hetload.shards.format import BLOCK, ShardError
from hetload.shards.index import is_url

__all__ = ["read_batch", "read_stored"]

#: the most iovecs one preadv takes (Linux: 1024)
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def read_batch(
    dataset: Any,
    indices: Sequence[int],
    allocate: Callable[[int], torch.Tensor] = batch_buffer,
    *,
    stored: bool = False,
) -> PackedSamples | None:
    """The samples ``indices`` of ``dataset`` (a ``ShardDataset`` without a transform) read
    into one buffer from ``allocate(nbytes)`` (``uint8 [nbytes]``), or ``None`` where the
    per-sample path must read this batch (a URL shard, a check that failed, a read error).

    ``stored=True`` reads the samples as stored whatever the dataset's transform (no index
    field re-based at read), for :func:`read_stored`."""
    if (dataset.transform is not None and not stored) or len(indices) == 0:
        return None
    try:
        positions = _positions(dataset, indices)
    except (TypeError, IndexError):
        return None  # the per-sample path raises its own error
    try:
        reader = _Reader(dataset, positions, None, allocate, rebase=not stored)
        return reader.read(indices)
    except (ShardError, OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # the per-sample path reads this batch and reports what is wrong


def read_stored(dataset: Any, indices: Sequence[int]) -> list[dict[str, Any]] | None:
    """The stored samples ``indices`` of ``dataset`` (a ``ShardDataset``, before its
    transform), as :meth:`ShardDataset.__getitem__` decodes them, read by one batch read into
    one ordinary buffer: each sample's arrays are writable views of its own bytes there (a
    repeated index is read into a place of its own, as the per-sample path reads it again).
    ``None`` where the per-sample path must read the batch."""
    packed = read_batch(dataset, indices, lambda n: torch.empty(n, dtype=torch.uint8), stored=True)
    if packed is None:
        return None
    return [packed.stored_item(j) for j in range(len(packed))]


class _Reader:
    """One batch: its layout from the index, the reads, the checks. ``positions`` and
    ``shards``: per sample its row of the index and its shard (``None``: from the index)."""

    def __init__(
        self,
        dataset: Any,
        positions: Sequence[int] | np.ndarray,
        shards: list[int] | None,
        allocate: Callable[[int], torch.Tensor],
        rebase: bool = True,
    ) -> None:
        self.ds = dataset
        self.positions = np.asarray(positions, dtype=np.int64)
        self.shards = None if shards is None else [int(s) for s in shards]
        self.allocate = allocate
        self.rebase = rebase
        #: (sample, reason) where the compiled read refused the batch (for diagnostics, tests)
        self.refusal: tuple[int, str] | None = None

    def read(self, indices: Sequence[int]) -> PackedSamples | None:
        ds, count = self.ds, len(self.positions)
        index = gather(ds, self.positions)
        shards = index.shard if self.shards is None else self.shards
        remote = _remote(ds)
        if any(remote[shard] for shard in set(shards)):
            return None  # fsspec reads: the per-sample path
        plan = plan_batch(ds, index, shards)
        if plan is None:
            return None
        buffer = self.allocate(plan.nbytes)
        keys = _key_bytes(ds, self.positions, index)
        with Leases(ds) as leases:
            fd_of = leases.many(set(shards))
            triples = zip(index.start, index.end, shards, strict=True)
            spans = [(start, end, fd_of[shard]) for start, end, shard in triples]
            read = self._read_compiled if _compiled() else self._read_python
            got = read(plan, buffer, spans, keys)
        if got is None:
            return None
        payloads, shifted = got
        names = tuple(plan.fields)
        if all(field.held is None for field in plan.fields.values()):
            holds = [names] * count
        else:
            held = [[True] * count if f.held is None else f.held for f in plan.fields.values()]
            holds = [tuple(n for n, h in zip(names, row, strict=True) if h) for row in zip(*held)]
        layouts = sample_layouts(payloads, ds.fields, holds)
        if layouts is None:
            return None
        packed = PackedSamples(buffer, plan.packed, *layouts, lambda: getitems(ds, indices))
        packed.rebased_at_read(shifted)
        return packed

    def _read_compiled(
        self, plan: BatchPlan, buffer: torch.Tensor, spans: list[tuple[int, int, int]],
        keys: list[bytes],
    ) -> tuple[list[memoryview], dict[str, tuple[str, list[int]]]] | None:  # fmt: skip
        """Read and check every sample (``spans``: its bytes ``[start, end)`` and file
        descriptor) with ``torch.ops.hetload.read_members_`` (one call, no GIL): array data
        into ``buffer``, the rest into a scratch buffer; index fields of the default schema
        re-based in place.
        The ``.json`` members' bytes and, per field re-based, its target and the base each
        sample was shifted by; ``None`` where the per-sample path must read the batch."""
        count = len(spans)
        bases = rebase_plan(plan.fields) if self.rebase else {}
        suffixes = plan.suffixes
        # the expected tar names "<key>.<suffix>" then the .npy headers, in one blob
        tails = [f".{suffix}".encode() for suffix in suffixes]
        names = [key + tail for tail in tails for key in keys]
        headers = [h for field in plan.fields.values() for h in field.headers if h is not None]
        blob = b"".join(names + headers)
        # the members table's columns over [S, B] (suffix by suffix, its samples), as lists
        nothing, absent = [-1] * count, [0] * count
        npy, expect, dst, base, rows, item = [], [], [], [], [], []
        for suffix in suffixes:
            field = plan.fields.get(suffix[:-4]) if suffix[-4:] == ".npy" else None
            if field is None:  # a .json, or an array no sample of the batch holds
                npy.append(nothing if suffix[-4:] != ".npy" else absent)
                expect.append(absent)
                dst.append(nothing)
            else:
                npy.append(field.npy)
                expect.append(field.npy)
                values = plan.packed[field.name]
                dst.append([values.values_at + start for start in values.starts])
            rebase = bases.get(suffix[:-4])
            base.append(nothing if rebase is None else rebase.bases)
            rows.append(nothing if rebase is None else rebase.counts)
            item.append(nothing if rebase is None else [rebase.item] * count)
        name_len = [len(name) for name in names]
        expect_len = list(chain.from_iterable(expect))
        columns = [
            list(range(count)) * len(suffixes),  # _SAMPLE
            list(chain.from_iterable(plan.offset)),
            list(chain.from_iterable(plan.size)),
            list(chain.from_iterable(npy)),
            list(chain.from_iterable(dst)),
            list(accumulate(name_len, initial=0))[:-1],  # _NAME_AT
            name_len,
            [len(blob) - sum(expect_len) + at for at in accumulate(expect_len, initial=0)][:-1],
            list(chain.from_iterable(base)),
            list(chain.from_iterable(rows)),
            list(chain.from_iterable(item)),
            [int(suffix == "json") for suffix in suffixes for _ in range(count)],  # _JSON
        ]
        # [B, S, _COLUMNS]: the members samples hold, in sample order and within a sample in
        # suffix (= tar) order
        table = np.array(columns, dtype=np.int64).reshape(_COLUMNS, len(suffixes), count).T
        if min(chain.from_iterable(plan.offset)) >= 0:
            members = np.ascontiguousarray(table).reshape(-1, _COLUMNS)
        else:
            members = table[np.array(plan.offset).T >= 0]
        # scratch: every byte of the samples but their array data
        data = sum(field.nbytes for field in plan.packed.values())
        scratch = torch.empty(sum(e - s for s, e, _ in spans) - data, dtype=torch.uint8)
        json_at = torch.empty((count, 2), dtype=torch.int64)
        expected = _bytes_tensor(blob)
        failed = torch.ops.hetload.read_members_(
            buffer,
            scratch,
            torch.from_numpy(
                np.fromiter(chain.from_iterable(spans), np.int64, 3 * count).reshape(count, 3)
            ),
            torch.from_numpy(members),
            expected,
            expected,
            json_at,
        )
        if failed >= 0:
            self.refusal = (failed // 8, _REASONS.get(failed % 8, "unknown"))
            return None  # the per-sample path reads the batch and names what is wrong
        spans = json_at.tolist()
        if min(spans)[0] < 0:
            return None  # no .json: the per-sample path names it
        raw = memoryview(scratch.numpy())
        payloads = [raw[at : at + size] for at, size in spans]
        return payloads, {name: (r.target, r.bases) for name, r in bases.items()}

    def _read_python(
        self, plan: BatchPlan, buffer: torch.Tensor, spans: list[tuple[int, int, int]],
        keys: list[bytes],
    ) -> tuple[list[memoryview], dict[str, tuple[str, list[int]]]] | None:  # fmt: skip
        """:meth:`_read_compiled` in Python, sample by sample (no re-base at read: collate
        re-bases)."""
        raw = memoryview(buffer.numpy())
        columns = dict(zip(plan.suffixes, zip(plan.offset, plan.size, strict=True), strict=True))
        payloads = []
        for j, (start, end, fd) in enumerate(spans):
            payload = self._read_one(j, start, end, fd, keys[j], plan, columns, raw)
            if payload is None:
                return None
            payloads.append(payload)
        return payloads, {}

    def _read_one(
        self,
        j: int,
        start: int,
        end: int,
        fd: int,
        key: bytes,
        plan: BatchPlan,
        columns: dict[str, tuple[list[int], list[int]]],
        raw: memoryview,
    ) -> memoryview | None:
        """Read sample ``j`` (bytes ``[start, end)`` of ``fd``) and check it; its ``.json``
        member's bytes, or ``None`` when the per-sample path must decide."""
        # the iovecs: scratch for headers, json and members not read, data into the buffer;
        # members in suffix order, which is their order in the tar (checked: cur only grows)
        pieces: list[tuple[int, Any]] = []  # (length, destination view or None: scratch)
        checks: list[tuple[int, str, int, bytes | None]] = []  # scratch pos, suffix, size, npy
        json_at: tuple[int, int] | None = None
        scratch_len, cur = 0, start
        for suffix, (offsets, sizes) in columns.items():
            offset = offsets[j]
            if offset < 0:
                continue
            size = sizes[j]
            if offset - BLOCK < cur or offset + size > end:
                return None
            gap = offset - cur  # other members' bytes, padding, then this member's tar header
            header_at = scratch_len + gap - BLOCK
            if suffix[-4:] == ".npy":
                name = suffix[:-4]
                npy = plan.fields[name].headers[j]
                assert npy is not None
                field = plan.packed[name]
                lo = field.values_at + field.starts[j]
                pieces.append((gap + len(npy), None))
                pieces.append((size - len(npy), raw[lo : lo + size - len(npy)]))
                checks.append((header_at, suffix, size, npy))
                scratch_len += gap + len(npy)
            else:
                pieces.append((gap + size, None))
                json_at = (scratch_len + gap, size)
                checks.append((header_at, suffix, size, None))
                scratch_len += gap + size
            cur = offset + size
        if json_at is None:
            return None
        pieces.append((end - cur, None))
        scratch = memoryview(bytearray(scratch_len + end - cur))
        iovecs, pos = [], 0
        for length, view in pieces:
            if view is None:
                if length:
                    iovecs.append(scratch[pos : pos + length])
                    pos += length
            elif length:
                iovecs.append(view)
        if len(iovecs) > _IOV_MAX:
            return None
        if os.preadv(fd, iovecs, start) != end - start:
            return None  # truncated: the per-sample path names it
        for header_at, suffix, size, npy in checks:
            # the writer's exact name and size fields (any other form: the per-sample path)
            if scratch[header_at : header_at + 100] != (key + b"." + suffix.encode()).ljust(
                100, b"\0"
            ):
                return None
            if scratch[header_at + 124 : header_at + 135] != b"%011o" % size:
                return None
            at = header_at + BLOCK
            if npy is not None and scratch[at : at + len(npy)] != npy:
                return None
        lo, size = json_at
        return scratch[lo : lo + size]


#: the columns of the members table ``read_members_`` takes (the ``Col`` enum of
#: cuda/read_cpu.cpp): sample, member data offset and size, .npy header bytes (-1: the whole
#: member goes to scratch), data offset in the buffer, expected tar name and .npy header
#: positions, re-base (base, count, index width; -1: none), whether it is the .json
(_SAMPLE, _OFFSET, _SIZE, _NPY, _DST, _NAME_AT, _NAME_LEN, _EXPECT_AT, _BASE, _COUNT, _ITEM,
 _JSON, _COLUMNS) = range(13)  # fmt: skip
#: why ``read_members_`` refused a sample (its ``Reason`` enum)
_REASONS = {
    1: "layout",
    2: "short read",
    3: "tar name",
    4: "tar size",
    5: "npy header",
    6: "index range",
}


@lru_cache(maxsize=1)
def _compiled() -> bool:
    """Whether the compiled batch read is available (the pure-Python read serves otherwise)."""
    from hetload.ops.library import has_kernel

    return has_kernel("read_members_", "CPU")


def _bytes_tensor(data: bytes) -> torch.Tensor:
    """``uint8 [len(data)]`` over a copy of ``data``."""
    return (
        torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if data
        else torch.empty(0, dtype=torch.uint8)
    )


def _positions(ds: Any, indices: Sequence[int]) -> list[int]:
    """The index rows of ``indices``, as ``ds._position`` gives them (without a call each
    for plain ints of a ``ShardDataset``); raises its ``TypeError`` / ``IndexError``."""
    from hetload.data.shard_dataset import ShardDataset

    if type(ds)._position is ShardDataset._position and set(map(type, indices)) <= {int}:
        n = len(ds._keys)
        if min(indices) < -n or max(indices) >= n:
            raise IndexError("sample index out of range")
        return [i % n for i in indices]
    return [ds._position(i) for i in indices]


def _remote(ds: Any) -> list[bool]:
    """Per shard of the dataset, whether it is a URL (worked out once per dataset)."""
    remote = ds.__dict__.get("_batch_remote")
    if remote is None:
        remote = ds.__dict__["_batch_remote"] = [is_url(url) for url in ds._urls]
    return remote


def _key_bytes(ds: Any, positions: np.ndarray, index: BatchIndex) -> list[bytes]:
    """The keys of samples ``positions``, UTF-8 (sliced from the index's key column)."""
    keys = ds._keys
    if index.key_lo is None or index.key_hi is None:
        return [keys[p].encode() for p in positions.tolist()]
    blob = memoryview(keys.blob)
    out = [bytes(blob[lo:hi]) for lo, hi in zip(index.key_lo, index.key_hi, strict=True)]
    joined = b"".join(out)
    if len(joined.decode("utf-8")) != len(joined):  # not ASCII: each key must decode alone
        return [keys[p].encode() for p in positions.tolist()]
    return out
