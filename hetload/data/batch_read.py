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
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from hetload.arena import batch_buffer
from hetload.data.batch_meta import decode_metas, sample_layouts
from hetload.data.batch_plan import BatchPlan, plan_batch, rebase_plan
from hetload.data.leases import Leases
from hetload.data.substitute import getitems
from hetload.packed import PackedSamples
from hetload.shards.columns import KeyColumn
from hetload.shards.format import BLOCK, ShardError
from hetload.shards.index import is_url

__all__ = ["read_batch", "read_stored"]

# the descriptor leases, by their former name here (ShardDataset's per-sample reads use them)
_Leases = Leases
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
    shards = np.asarray(dataset._shard_of)[positions]
    if _remote(dataset)[shards].any():
        return None
    try:
        reader = _Reader(dataset, positions, shards.tolist(), allocate, rebase=not stored)
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
    ``shards``: per sample its row of the index and its shard."""

    def __init__(
        self,
        dataset: Any,
        positions: Sequence[int] | np.ndarray,
        shards: list[int],
        allocate: Callable[[int], torch.Tensor],
        rebase: bool = True,
    ) -> None:
        self.ds = dataset
        self.positions = np.asarray(positions, dtype=np.int64)
        self.shards = [int(s) for s in shards]
        self.allocate = allocate
        self.rebase = rebase
        #: (sample, reason) where the compiled read refused the batch (for diagnostics, tests)
        self.refusal: tuple[int, str] | None = None

    def read(self, indices: Sequence[int]) -> PackedSamples | None:
        ds = self.ds
        plan = plan_batch(ds, self.positions, self.shards)
        if plan is None:
            return None
        buffer = self.allocate(plan.nbytes)
        keys = _key_bytes(ds, self.positions)
        with Leases(ds) as leases:
            fd_of = {shard: leases.fd(shard) for shard in dict.fromkeys(self.shards)}
            fds = [fd_of[shard] for shard in self.shards]
            if _compiled():
                got = self._read_compiled(plan, buffer, fds, keys)
            else:
                got = self._read_python(plan, buffer, fds, keys)
        if got is None:
            return None
        payloads, shifted = got
        metas = decode_metas(payloads)
        if metas is None:
            return None
        names = tuple(plan.fields)
        if all(field.held.all() for field in plan.fields.values()):
            holds = [names] * len(self.shards)
        else:
            held = np.stack([field.held for field in plan.fields.values()], axis=1).tolist()
            holds = [tuple(n for n, h in zip(names, row, strict=True) if h) for row in held]
        layouts = sample_layouts(metas, ds.fields, holds)
        if layouts is None:
            return None
        packed = PackedSamples(buffer, plan.packed, *layouts, lambda: getitems(ds, indices))
        packed.rebased_at_read(shifted)
        return packed

    def _read_compiled(
        self, plan: BatchPlan, buffer: torch.Tensor, fds: list[int], keys: list[bytes]
    ) -> tuple[list[memoryview], dict[str, tuple[str, list[int]]]] | None:
        """Read and check every sample with ``torch.ops.hetload.read_members_`` (one call,
        no GIL): array data into ``buffer``, the rest into a scratch buffer; index fields of the
        default schema re-based in place.
        The ``.json`` members' bytes and, per field re-based, its target and the base each
        sample was shifted by; ``None`` where the per-sample path must read the batch."""
        ds, count = self.ds, len(self.shards)
        bases = rebase_plan(plan.fields) if self.rebase else {}
        suffixes = plan.suffixes
        # the tar names the checks expect, "<key>.<suffix>", suffix by suffix; the .npy
        # headers, field by field: each blob in [S, B] order, as the plan's columns
        tails = [f".{suffix}".encode() for suffix in suffixes]
        names = b"".join([key + tail for tail in tails for key in keys])
        name_len = np.fromiter(map(len, keys), np.int64, count) + np.array(
            [[len(tail)] for tail in tails], dtype=np.int64
        )
        expect = b"".join(
            [h for field in plan.fields.values() for h in field.headers if h is not None]
        )
        # the members table, [B, S, _COLUMNS] from the plan's [S, B] columns, then the
        # members samples hold, in sample order and within a sample in suffix (= tar) order
        table = np.empty((count, len(suffixes), _COLUMNS), dtype=np.int64)
        table[:, :, _SAMPLE] = np.arange(count)[:, None]
        table[:, :, _OFFSET] = plan.offset.T
        table[:, :, _SIZE] = plan.size.T
        is_array = np.array([[suffix[-4:] == ".npy"] for suffix in suffixes])
        table[:, :, _NPY] = np.where(is_array, plan.npy, -1).T
        table[:, :, _DST] = plan.dst.T
        table[:, :, _NAME_AT] = (np.cumsum(name_len) - name_len.ravel()).reshape(name_len.shape).T
        table[:, :, _NAME_LEN] = name_len.T
        table[:, :, _EXPECT_AT] = (np.cumsum(plan.npy) - plan.npy.ravel()).reshape(name_len.shape).T
        table[:, :, _BASE : _ITEM + 1] = -1
        for name, rebase in bases.items():
            row = table[:, plan.fields[name].row]
            row[:, _BASE] = rebase.bases
            row[:, _COUNT] = rebase.counts
            row[:, _ITEM] = rebase.item
        table[:, :, _JSON] = [suffix == "json" for suffix in suffixes]
        members = table[plan.offset.T >= 0]
        spans = np.empty((count, 3), dtype=np.int64)
        spans[:, 0] = ds._start[self.positions]
        spans[:, 1] = ds._end[self.positions]
        spans[:, 2] = fds
        # scratch: every byte of the samples but their array data
        data = sum(field.nbytes for field in plan.packed.values())
        scratch = torch.empty(int((spans[:, 1] - spans[:, 0]).sum()) - data, dtype=torch.uint8)
        json_at = torch.empty((count, 2), dtype=torch.int64)
        failed = torch.ops.hetload.read_members_(
            buffer,
            scratch,
            torch.from_numpy(spans),
            torch.from_numpy(members),
            _bytes_tensor(names),
            _bytes_tensor(expect),
            json_at,
        )
        if failed >= 0:
            self.refusal = (failed // 8, _REASONS.get(failed % 8, "unknown"))
            return None  # the per-sample path reads the batch and names what is wrong
        raw = memoryview(scratch.numpy())
        payloads = []
        for at, size in json_at.tolist():
            if at < 0:
                return None  # no .json: the per-sample path names it
            payloads.append(raw[at : at + size])
        return payloads, {name: (r.target, r.bases) for name, r in bases.items()}

    def _read_python(
        self, plan: BatchPlan, buffer: torch.Tensor, fds: list[int], keys: list[bytes]
    ) -> tuple[list[memoryview], dict[str, tuple[str, list[int]]]] | None:
        """:meth:`_read_compiled` in Python, sample by sample (no re-base at read: collate
        re-bases)."""
        raw = memoryview(buffer.numpy())
        columns = dict(
            zip(
                plan.suffixes,
                zip(plan.offset.tolist(), plan.size.tolist(), strict=True),
                strict=True,
            )
        )
        starts = self.ds._start[self.positions].tolist()
        ends = self.ds._end[self.positions].tolist()
        payloads = []
        for j, fd in enumerate(fds):
            payload = self._read_one(j, starts[j], ends[j], fd, keys[j], plan, columns, raw)
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


def _positions(ds: Any, indices: Sequence[int]) -> np.ndarray:
    """``int64 [B]``: the index rows of ``indices``, as ``ds._position`` gives them (one numpy
    pass for plain ints of a ``ShardDataset``); raises its ``TypeError`` / ``IndexError``."""
    from hetload.data.shard_dataset import ShardDataset

    if type(ds)._position is ShardDataset._position and set(map(type, indices)) <= {int}:
        n = len(ds._keys)
        try:
            at = np.array(indices, dtype=np.int64)
        except OverflowError:
            raise IndexError("sample index out of range") from None
        if ((at < -n) | (at >= n)).any():
            raise IndexError("sample index out of range")
        return at % n
    return np.array([ds._position(i) for i in indices], dtype=np.int64)


def _remote(ds: Any) -> np.ndarray:
    """``bool [S]``: which of the dataset's shards are URLs (read once per dataset)."""
    remote = ds.__dict__.get("_batch_remote")
    if remote is None:
        remote = ds.__dict__["_batch_remote"] = np.array(
            [is_url(url) for url in ds._urls], dtype=bool
        )
    return remote


def _key_bytes(ds: Any, positions: np.ndarray) -> list[bytes]:
    """The keys of samples ``positions``, UTF-8 (one gather from the index's key column)."""
    keys = ds._keys
    if not isinstance(keys, KeyColumn):
        return [keys[p].encode() for p in positions.tolist()]
    lo, hi = keys.offsets[positions], keys.offsets[positions + 1]
    lengths = hi - lo
    ends = np.cumsum(lengths)
    gathered = keys.blob[np.repeat(lo - (ends - lengths), lengths) + np.arange(ends[-1])]
    blob = gathered.tobytes()
    if len(blob.decode("utf-8")) != len(blob):  # not ASCII: each key must decode alone
        return [keys[p].encode() for p in positions.tolist()]
    return [blob[a:b] for a, b in pairwise([0, *ends.tolist()])]
