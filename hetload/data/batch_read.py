"""Batch-level reads of a :class:`~hetload.data.ShardDataset`: a batch's array data read
straight into its batch buffer, one ``os.preadv`` per sample.

The index gives every member's offset and size and every array's rows; each shard's first
``.npy`` header of a field gives its dtype and trailing shape (read once per shard and field).
So the batch's layout is known before reading: one buffer from
:func:`hetload.arena.batch_buffer`, each field's samples back to back in it. One ``preadv`` per
sample reads its byte range ``[start, end)``: the tar headers, ``.npy`` headers and ``.json``
into a small scratch buffer, each array's data into its place in the batch buffer.

Every byte skipped over is then checked as :meth:`ShardDataset.__getitem__` checks it: each tar
header's member name and size against the index, each ``.npy`` header against the one the
layout assumed (byte for byte: same dtype, shape, C order), the read's length (truncation), the
``.json`` (valid, listing exactly the arrays read). On any mismatch or error the batch is read
again by the per-sample path (:func:`read_batch` returns ``None``), so the ``on_error``
policies, substitutes and reports behave exactly as without this module.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import accumulate
from typing import Any, NamedTuple

import numpy as np
import torch

from hetload.arena import aligned, batch_buffer
from hetload.data.substitute import getitems
from hetload.packed import PackedField, PackedSamples
from hetload.schema import DEFAULT_SCHEMA
from hetload.shards.format import (
    BLOCK,
    ShardError,
    decode_meta,
    member_name,
    npy_header,
    stored_key,
)
from hetload.shards.index import is_url

__all__ = ["read_batch", "read_stored"]

#: the most iovecs one preadv takes (Linux: 1024)
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
#: bytes read to learn a field's dtype and trailing shape from a shard's first ``.npy`` header
_PROBE = 4096


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
        positions = [dataset._position(i) for i in indices]
    except (TypeError, IndexError):
        return None  # the per-sample path raises its own error
    shards = [int(dataset._shard_of[p]) for p in positions]
    if any(is_url(dataset._urls[s]) for s in set(shards)):
        return None
    try:
        return _Reader(dataset, positions, shards, allocate, rebase=not stored).read(indices)
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


@lru_cache(maxsize=4096)
def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header (magic to newline) numpy writes for a C-order array."""
    out = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue()


class _Reader:
    """One batch: its layout from the index, the reads, the checks."""

    def __init__(
        self,
        dataset: Any,
        positions: list[int],
        shards: list[int],
        allocate: Callable[[int], torch.Tensor],
        rebase: bool = True,
    ) -> None:
        self.ds = dataset
        self.positions = positions
        self.shards = shards
        self.allocate = allocate
        self.rebase = rebase
        #: (sample, reason) where the compiled read refused the batch (for diagnostics, tests)
        self.refusal: tuple[int, str] | None = None

    def read(self, indices: Sequence[int]) -> PackedSamples | None:
        ds, count = self.ds, len(self.positions)
        at_rows = np.asarray(self.positions, dtype=np.int64)
        # the index columns of this batch, as Python ints (one lookup per column and batch)
        self.start = ds._start[at_rows].tolist()
        self.end = ds._end[at_rows].tolist()
        self.offset = {s: ds._offset[s][at_rows].tolist() for s in ds._suffixes}
        self.size = {s: ds._size[s][at_rows].tolist() for s in ds._suffixes}
        # per field and sample: (dtype, shape, header bytes) or None where the sample lacks it
        plan: dict[str, list[tuple[np.dtype, tuple[int, ...], bytes] | None]] = {}
        for suffix in ds._suffixes:
            if not suffix.endswith(".npy"):
                continue
            name = suffix[: -len(".npy")]
            offsets, sizes = self.offset[suffix], self.size[suffix]
            rows = _rows(ds, name)[at_rows].tolist()
            column: list[tuple[np.dtype, tuple[int, ...], bytes] | None] = []
            info: dict[int, tuple[np.dtype, str, tuple[int, ...] | None, int]] = {}
            for j, shard in enumerate(self.shards):
                if offsets[j] < 0:
                    column.append(None)
                    continue
                field = info.get(shard)
                if field is None:  # once per shard and batch
                    dtype, descr, tail = _field_info(ds, shard, name)
                    row_items = math.prod(tail) if tail is not None else 1
                    field = info[shard] = (dtype, descr, tail, row_items * dtype.itemsize)
                dtype, descr, tail, row_bytes = field
                n = rows[j]
                if tail is None:
                    if n != 1:
                        return None
                    shape: tuple[int, ...] = ()
                else:
                    if n < 0:
                        return None
                    shape = (n, *tail)
                header = _npy_header(descr, shape)
                if len(header) + n * row_bytes != sizes[j]:
                    return None
                column.append((dtype, shape, header))
            if any(c is not None for c in column):
                plan[name] = column
        # the batch buffer: per field its values, then its offsets [B+1] and flags [B]
        fields: dict[str, PackedField] = {}
        at = 0
        for name, column in plan.items():
            starts, total = [], 0
            for item in column:
                starts.append(total)
                if item is not None:
                    total += math.prod(item[1]) * item[0].itemsize
            fields[name] = PackedField(
                name=name,
                values_at=at,
                nbytes=total,
                dtypes=[None if c is None else c[0] for c in column],
                shapes=[None if c is None else c[1] for c in column],
                starts=starts,
                offsets_at=at + aligned(total),
                flags_at=at + aligned(total) + aligned(8 * (count + 1)),
            )
            at = fields[name].flags_at + aligned(count)
        buffer = self.allocate(at)
        orders, values = [], []
        shifted: dict[str, tuple[str, list[int]]] = {}
        with _Leases(ds) as leases:
            if _compiled():
                metas = self._read_compiled(leases, plan, fields, buffer, shifted)
                if metas is None:
                    return None
                for meta, holds in metas:
                    sample = _sample_layout(meta, ds.fields, holds)
                    if sample is None:
                        return None
                    orders.append(sample[0])
                    values.append(sample[1])
            else:
                raw = memoryview(buffer.numpy())
                for j, p in enumerate(self.positions):
                    sample = self._read_one(j, p, leases.fd(self.shards[j]), plan, fields, raw)
                    if sample is None:
                        return None
                    orders.append(sample[0])
                    values.append(sample[1])
        packed = PackedSamples(buffer, fields, orders, values, lambda: getitems(ds, indices))
        packed.rebased_at_read(shifted)
        return packed

    def _read_compiled(
        self,
        leases: _Leases,
        plan: dict[str, list[Any]],
        fields: dict[str, PackedField],
        buffer: torch.Tensor,
        shifted: dict[str, tuple[str, list[int]]],
    ) -> list[tuple[dict[str, Any], set[str]]] | None:
        """Read and check every sample with ``torch.ops.hetload.read_members_`` (one call,
        no GIL): array data into ``buffer``, the rest into a scratch buffer; index fields of the
        default schema re-based in place (``shifted``: per field, its target and the base each
        sample was shifted by).
        Per sample its parsed ``.json`` and the names of the arrays it holds; ``None`` where the
        per-sample path must read the batch."""
        ds, count = self.ds, len(self.positions)
        bases = _rebase_plan(plan) if self.rebase else {}
        suffixes = list(self.offset)
        keys = [ds._keys[p] for p in self.positions]
        # the members table, built a column (suffix) at a time: [B, S, _COLUMNS], then the
        # members samples hold, in sample order and within a sample in suffix (= tar) order
        table = np.full((count, len(suffixes), _COLUMNS), -1, dtype=np.int64)
        table[:, :, _SAMPLE] = np.arange(count)[:, None]
        table[:, :, _JSON] = 0
        for k, suffix in enumerate(suffixes):
            column = table[:, k]
            column[:, _OFFSET] = self.offset[suffix]
            column[:, _SIZE] = self.size[suffix]
            name = suffix[:-4] if suffix[-4:] == ".npy" else None
            if name is None:
                column[:, _JSON] = suffix == "json"
                continue
            if name not in plan:
                continue  # no sample of this batch holds it
            items, field = plan[name], fields[name]
            column[:, _NPY] = [0 if item is None else len(item[2]) for item in items]
            column[:, _DST] = [field.values_at + at for at in field.starts]
            rebase = bases.get(name)
            if rebase is not None:
                column[:, _BASE] = rebase.bases
                column[:, _COUNT] = rebase.counts
                column[:, _ITEM] = rebase.item
        held = table[:, :, _OFFSET] >= 0
        members = table[held]
        # the tar names and .npy headers the checks expect, in the members' order
        # per suffix: its name bytes and, for an array, its field's plan column
        kinds = [
            (f".{suffix}".encode(), suffix[:-4], plan.get(suffix[:-4]))
            if suffix[-4:] == ".npy"
            else (f".{suffix}".encode(), None, None)
            for suffix in suffixes
        ]
        names, expect = [], []
        holds: list[set[str]] = []
        for j, (key, row) in enumerate(zip(keys, held.tolist(), strict=True)):
            key_bytes = key.encode()
            holding = set()
            for (suffix_bytes, field, column), present in zip(kinds, row, strict=True):
                if not present:
                    continue
                names.append(key_bytes + suffix_bytes)
                if field is not None:
                    holding.add(field)
                    expect.append(column[j][2])
            holds.append(holding)
        lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
        members[:, _NAME_LEN] = lengths
        members[:, _NAME_AT] = np.cumsum(lengths) - lengths
        npy = members[:, _NPY]
        is_array = npy >= 0
        npy_lengths = np.where(is_array, npy, 0)
        members[:, _EXPECT_AT] = np.cumsum(npy_lengths) - npy_lengths
        spans = np.empty((count, 3), dtype=np.int64)
        spans[:, 0] = self.start
        spans[:, 1] = self.end
        spans[:, 2] = [leases.fd(shard) for shard in self.shards]
        # scratch: every byte of the samples but their array data
        data = int((members[is_array, _SIZE] - npy[is_array]).sum())
        scratch = torch.empty(int((spans[:, 1] - spans[:, 0]).sum()) - data, dtype=torch.uint8)
        json_at = torch.empty((count, 2), dtype=torch.int64)
        failed = torch.ops.hetload.read_members_(
            buffer,
            scratch,
            torch.from_numpy(spans),
            torch.from_numpy(members),
            _bytes_tensor(b"".join(names)),
            _bytes_tensor(b"".join(expect)),
            json_at,
        )
        if failed >= 0:
            self.refusal = (failed // 8, _REASONS.get(failed % 8, "unknown"))
            return None  # the per-sample path reads the batch and names what is wrong
        raw = scratch.numpy()
        metas = []
        for j, (at, size) in enumerate(json_at.tolist()):
            if at < 0:
                return None
            meta = decode_meta(raw[at : at + size], ds._urls[self.shards[j]], keys[j])
            metas.append((meta, holds[j]))
        shifted.update({name: (r.target, r.bases) for name, r in bases.items()})
        return metas

    def _read_one(
        self,
        j: int,
        p: int,
        fd: int,
        plan: dict[str, list[Any]],
        fields: dict[str, PackedField],
        raw: memoryview,
    ) -> tuple[list[str], dict[str, Any]] | None:
        """Read sample ``j`` (position ``p``) and check it; its field order and non-array
        values, or ``None`` when the per-sample path must decide."""
        ds = self.ds
        start, end = self.start[j], self.end[j]
        key = ds._keys[p]
        # the iovecs: scratch for headers, json and members not read, data into the buffer;
        # members in suffix order, which is their order in the tar (checked: cur only grows)
        pieces: list[tuple[int, Any]] = []  # (length, destination view or None: scratch)
        checks: list[tuple[int, str, int, bytes | None]] = []  # scratch pos, suffix, size, npy
        json_at: tuple[int, int] | None = None
        scratch_len, cur = 0, start
        for suffix, column in self.offset.items():
            offset = column[j]
            if offset < 0:
                continue
            size = self.size[suffix][j]
            if offset - BLOCK < cur or offset + size > end:
                return None
            gap = offset - cur  # other members' bytes, padding, then this member's tar header
            header_at = scratch_len + gap - BLOCK
            if suffix[-4:] == ".npy":
                name = suffix[:-4]
                npy = plan[name][j][2]
                field = fields[name]
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
            if scratch[header_at : header_at + 100] != f"{key}.{suffix}".encode().ljust(100, b"\0"):
                return None
            if scratch[header_at + 124 : header_at + 135] != b"%011o" % size:
                return None
            at = header_at + BLOCK
            if npy is not None and scratch[at : at + len(npy)] != npy:
                return None
        lo, size = json_at
        meta = decode_meta(scratch[lo : lo + size], ds._urls[self.shards[j]], key)
        return _sample_layout(meta, ds.fields, {n for n in plan if plan[n][j] is not None})


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


class _Rebase(NamedTuple):
    """How the read re-bases one index field: into ``target``; per sample its ``bases`` (the
    target's rows before it) and ``counts`` (its target's rows); ``item``: index bytes."""

    target: str
    bases: list[int]
    counts: list[int]
    item: int


def _rebase_plan(plan: dict[str, list[Any]]) -> dict[str, _Rebase]:
    """The index fields the read re-bases in place, as :func:`hetload.collate` would under
    the default schema. Only int32 / int64 fields whose target was read too, with one dtype per
    field and every packed index representable."""
    out: dict[str, _Rebase] = {}
    for name, column in plan.items():
        spec = DEFAULT_SCHEMA.fields.get(name)
        if spec is None or spec.kind != "index" or spec.index_of not in plan:
            continue
        dtypes = {item[0] for item in column if item is not None}
        if len(dtypes) != 1:
            continue
        dtype = dtypes.pop()
        if dtype.kind != "i" or dtype.itemsize not in (4, 8) or not dtype.isnative:
            continue
        target = plan[spec.index_of]
        counts = [0 if t is None or not t[1] else t[1][0] for t in target]
        bases = [0, *accumulate(counts)]
        if bases[-1] - 1 > np.iinfo(dtype).max:
            continue
        out[name] = _Rebase(spec.index_of, bases[:-1], counts, dtype.itemsize)
    return out


def _sample_layout(
    meta: dict[str, Any], fields: list[str] | None, arrays: set[str]
) -> tuple[list[str], dict[str, Any]] | None:
    """The field order and non-array values ``decode_sample`` gives the sample; ``None``
    where it would raise or where the arrays read are not exactly those it returns."""
    extra = meta.get("extra", {})
    wanted = sorted(set(meta["arrays"]) | set(extra)) if fields is None else list(fields)
    order: list[str] = []
    values: dict[str, Any] = {}
    for name in wanted:
        if name in arrays:
            order.append(name)
        elif name in extra:
            order.append(name)
            values[name] = extra[name]
        else:
            return None  # a missing member: the per-sample path reports it
    if arrays - set(order):
        return None
    if "label" in extra and "label" not in values and "label" not in arrays:
        order.append("label")
        values["label"] = extra["label"]
    key = stored_key(meta)
    if key is not None and "key" not in values and "key" not in arrays:
        order.append("key")
        values["key"] = key
    return order, values


def _rows(ds: Any, name: str) -> np.ndarray:
    """``int64 [N]``: rows of field ``name`` per sample, from the index (``field_sizes``: the
    index's rows, 0 where absent, as there is no transform on this path)."""
    return ds.field_sizes[name]


def _field_info(ds: Any, shard: int, name: str) -> tuple[np.dtype, str, tuple[int, ...] | None]:
    """Field ``name``'s dtype, its ``.npy`` descr and trailing shape in ``shard`` (``None``:
    stored 0-d), from the
    first ``.npy`` header of the field in that shard (read once per process)."""
    cache = ds.__dict__.setdefault("_batch_fields", {})
    info = cache.get((shard, name))
    if info is not None:
        return info
    suffix = f"{name}.npy"
    # a shard's samples are one run of positions (_shard_of is sorted): search, do not scan N
    lo, hi = np.searchsorted(ds._shard_of, [shard, shard + 1])
    p = int(lo + np.flatnonzero(np.asarray(ds._offset[suffix][lo:hi]) >= 0)[0])
    offset, size = int(ds._offset[suffix][p]), int(ds._size[suffix][p])
    probe = np.empty(min(size, _PROBE), dtype=np.uint8)
    with _Leases(ds) as leases:
        got = os.preadv(leases.fd(shard), [probe], offset)
    # the per-sample path's own header parser: a damaged header is the same named ShardError
    where = ds._urls[shard], member_name(ds._keys[p], suffix)
    dtype, fortran, shape, _ = npy_header(probe[:got], *where)
    if fortran and len(shape) > 1:
        raise ShardError(*where, "Fortran order")
    tail = None if len(shape) == 0 else tuple(shape[1:])
    info = cache[(shard, name)] = (dtype, np.lib.format.dtype_to_descr(dtype), tail)
    return info


_LEASE_LOCK = threading.Lock()


class _Leases:
    """Duplicates of the dataset's shard descriptors, for the duration of one batch: a thread
    reading through a duplicate is unaffected when another thread's read evicts the original
    from the dataset's least-recently-used handles (it would otherwise read a closed, or
    reused, descriptor)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.fds: dict[int, int] = {}

    def fd(self, shard: int) -> int:
        fd = self.fds.get(shard)
        if fd is None:
            with _LEASE_LOCK:
                fd = self.fds[shard] = os.dup(self.ds._fd(shard))
        return fd

    def __enter__(self) -> _Leases:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds.values():
            os.close(fd)
