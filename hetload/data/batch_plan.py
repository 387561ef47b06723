"""A batch's layout, known from the index before reading it (see :mod:`hetload.data.batch_read`).

The index gives every member's offset and size and every array's rows; each shard's first
``.npy`` header of a field gives its dtype and trailing shape (read once per process, shard and
field). From those, field by field over the whole batch: each sample's shape, the ``.npy``
header numpy's writer gives that shape (:mod:`hetload.data.npy_header`), its data bytes and
place in the batch buffer (:class:`~hetload.packed.PackedField`), and the index fields the read
re-bases in place.

A batch is small (tens of samples) and its plan is built between two reads that have just
streamed megabytes through the CPU's caches: there a numpy call on a few dozen numbers costs
several microseconds, a Python loop over them less. So the index columns are gathered with
numpy once each and everything after works on Python lists.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NamedTuple

import numpy as np

from hetload.arena import aligned
from hetload.data.batch_index import BatchIndex
from hetload.data.leases import Leases
from hetload.data.npy_header import NpyHeaders, npy_headers
from hetload.packed import PackedField
from hetload.schema import DEFAULT_SCHEMA
from hetload.shards.format import ShardError, member_name, read_npy_header

__all__ = ["BatchPlan", "FieldPlan", "Rebase", "plan_batch", "rebase_plan"]

#: bytes read to learn a field's dtype and trailing shape from a shard's first ``.npy`` header
_PROBE = 4096


class FieldInfo(NamedTuple):
    """A field's arrays in one shard: ``dtype``, trailing shape ``tail`` (``None``: stored
    0-d), bytes per first-dimension row, and their ``.npy`` headers."""

    dtype: np.dtype
    tail: tuple[int, ...] | None
    row_bytes: int
    headers: NpyHeaders


@dataclass
class FieldPlan:
    """One array field over a batch of ``B`` samples, member suffix ``suffixes[row]``; per
    sample (lists of ``B``): ``held``, whether it holds the field (``None``: all do);
    ``counts``, its rows as an index field's target (0 where absent or 0-d); ``headers``, the
    expected ``.npy`` header (``None``: absent); ``npy``, that header's bytes (0: absent);
    ``dtype``: the holders' one dtype (``None`` where they differ)."""

    name: str
    row: int
    held: list[bool] | None
    counts: list[int]
    headers: list[bytes | None]
    npy: list[int]
    dtype: np.dtype | None


class Rebase(NamedTuple):
    """How the read re-bases one index field: into ``target``; per sample its ``bases`` (the
    target's rows before it) and ``counts`` (its target's rows); ``item``: index bytes."""

    target: str
    bases: list[int]
    counts: list[int]
    item: int


@dataclass
class BatchPlan:
    """A batch's layout: per member suffix (``suffixes``, the tar's order) and sample
    (``[S][B]`` lists) the member's data ``offset`` and ``size`` (-1: absent; from the index);
    per array field some sample holds, its :class:`FieldPlan` and
    :class:`~hetload.packed.PackedField` (in suffix order); the buffer's ``nbytes``."""

    suffixes: list[str]
    offset: list[list[int]]
    size: list[list[int]]
    fields: dict[str, FieldPlan]
    packed: dict[str, PackedField]
    nbytes: int


def plan_batch(ds: Any, index: BatchIndex, shards: list[int]) -> BatchPlan | None:
    """The layout of the samples whose ``index`` rows were gathered (in shards ``shards``)
    from ``ds`` (a ``ShardDataset``), or ``None`` where the per-sample path must read the
    batch (a row count or member size the index and the shard's dtype cannot both hold).

    Raises ``ShardError``, ``OSError``, ``ValueError`` where a shard's first header of a field
    cannot be read (the caller leaves the batch to the per-sample path)."""
    count = len(shards)
    suffixes = list(ds._suffixes)
    offset, size = index.offset, index.size
    fields: dict[str, FieldPlan] = {}
    packed: dict[str, PackedField] = {}
    at = 0
    for k, suffix in enumerate(suffixes):
        offsets = offset[k]
        if suffix[-4:] != ".npy" or max(offsets) < 0:
            continue  # not an array, or no sample of this batch holds it
        name = suffix[:-4]
        got = _field(ds, name, k, shards, offsets, size[k], index.rows[name])
        if got is None:
            return None
        field, dtypes, shapes, data = got
        starts = list(accumulate(data, initial=0))
        total = starts.pop()
        fields[name] = field
        # the batch buffer: per field its values, then its offsets [B+1] and flags [B]
        packed[name] = PackedField(
            name=name,
            values_at=at,
            nbytes=total,
            dtypes=dtypes,
            shapes=shapes,
            starts=starts,
            offsets_at=at + aligned(total),
            flags_at=at + aligned(total) + aligned(8 * (count + 1)),
        )
        at = packed[name].flags_at + aligned(count)
    return BatchPlan(suffixes, offset, size, fields, packed, at)


def _field(
    ds: Any,
    name: str,
    row: int,
    shards: list[int],
    offsets: list[int],
    sizes: list[int],
    rows: list[int],
) -> tuple[FieldPlan, list[Any], list[Any], list[int]] | None:
    """Field ``name`` over the batch: its :class:`FieldPlan`, per sample its dtype, shape
    (``None``: absent) and data bytes; ``None`` where a holder's rows, shard dtype and member
    size disagree."""
    count = len(shards)
    everyone = min(offsets) >= 0
    holders = range(count) if everyone else [j for j in range(count) if offsets[j] >= 0]
    in_shards = set(shards) if everyone else {shards[j] for j in holders}
    # the shards known to hold the field in one form: no look-up per shard
    uniform = ds.__dict__.setdefault("_batch_uniform", {})
    known = uniform.get(name)
    if known is not None and known[1].issuperset(in_shards):
        infos = {known[0]}
    else:
        of_shard = {shard: _field_info(ds, shard, name) for shard in in_shards}
        infos = set(of_shard.values())
        if known is None and len(infos) == 1:
            uniform[name] = known = (next(iter(infos)), set())
        if known is not None:
            known[1].update(s for s, info in of_shard.items() if info == known[0])
    if len(infos) == 1:  # nearly always: one form in every shard
        (info,) = infos
        got = _group(info, rows if everyone else [rows[j] for j in holders],
                     sizes if everyone else [sizes[j] for j in holders])  # fmt: skip
        if got is None:
            return None
        if everyone:
            shapes, headers, npy, data, counts = got
            field = FieldPlan(name, row, None, counts, headers, npy, info.dtype)
            return field, [info.dtype] * count, shapes, data
        groups = [(info, list(holders), got)]
    else:
        by_info: dict[FieldInfo, list[int]] = {}
        for j in holders:
            by_info.setdefault(of_shard[shards[j]], []).append(j)
        groups = []
        for info, group in by_info.items():
            got = _group(info, [rows[j] for j in group], [sizes[j] for j in group])
            if got is None:
                return None
            groups.append((info, group, got))
    dtypes: list[np.dtype | None] = [None] * count
    shapes_all: list[tuple[int, ...] | None] = [None] * count
    headers_all: list[bytes | None] = [None] * count
    npy_all, data_all, counts_all = [0] * count, [0] * count, [0] * count
    for info, group, (shapes, headers, npy, data, counts) in groups:
        for i, j in enumerate(group):
            dtypes[j], shapes_all[j], headers_all[j] = info.dtype, shapes[i], headers[i]
            npy_all[j], data_all[j], counts_all[j] = npy[i], data[i], counts[i]
    kinds = {info.dtype for info, _, _ in groups}
    held = [offset >= 0 for offset in offsets]
    dtype = kinds.pop() if len(kinds) == 1 else None
    field = FieldPlan(name, row, held, counts_all, headers_all, npy_all, dtype)
    return field, dtypes, shapes_all, data_all


def _group(
    info: FieldInfo, rows: list[int], sizes: list[int]
) -> tuple[list[Any], list[bytes], list[int], list[int], list[int]] | None:
    """Holders of one field form ``info`` (their ``rows`` and member ``sizes``): per holder
    its shape, expected header, header bytes, data bytes and rows as a target; ``None`` where
    a member's size is not its header and rows."""
    if info.tail is None:
        if rows.count(1) != len(rows):
            return None  # a 0-d array is one row
        shapes: list[Any] = [()] * len(rows)
        counts = [0] * len(rows)
    else:
        if min(rows) < 0:
            return None
        tail = info.tail
        shapes = [(n, *tail) for n in rows]
        counts = rows
    headers = info.headers.many(rows)
    length = info.headers.length
    npy = [length] * len(rows) if length is not None else [len(h) for h in headers]
    row_bytes = info.row_bytes
    data = [n * row_bytes for n in rows]
    if any(h + d != s for h, d, s in zip(npy, data, sizes, strict=True)):
        return None
    return shapes, headers, npy, data, counts


def rebase_plan(fields: dict[str, FieldPlan]) -> dict[str, Rebase]:
    """The index fields the read re-bases in place, as :func:`hetload.collate` would under
    the default schema. Only int32 / int64 fields whose target was read too, with one dtype per
    field and every packed index representable."""
    out: dict[str, Rebase] = {}
    for name, field in fields.items():
        spec = DEFAULT_SCHEMA.fields.get(name)
        if spec is None or spec.kind != "index" or spec.index_of not in fields:
            continue
        dtype = field.dtype
        if dtype is None or dtype.kind != "i" or dtype.itemsize not in (4, 8):
            continue
        if not dtype.isnative:
            continue
        counts = fields[spec.index_of].counts
        bases = list(accumulate(counts, initial=0))
        if bases.pop() - 1 > np.iinfo(dtype).max:
            continue
        out[name] = Rebase(spec.index_of, bases, counts, dtype.itemsize)
    return out


def _field_info(ds: Any, shard: int, name: str) -> FieldInfo:
    """Field ``name``'s :class:`FieldInfo` in ``shard``, from the first ``.npy`` header of
    the field in that shard (read once per process)."""
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
    with Leases(ds) as leases:
        got = os.preadv(leases.fd(shard), [probe], offset)
    # the per-sample path's own header parser: a damaged header is the same named ShardError
    # (numpy's reader raised tokenize.TokenError on unbalanced brackets)
    where = ds._urls[shard], member_name(ds._keys[p], suffix)
    dtype, fortran, shape, _ = read_npy_header(probe[:got], *where)
    if fortran and len(shape) > 1:
        raise ShardError(*where, "Fortran order")
    tail = None if len(shape) == 0 else tuple(shape[1:])
    row_bytes = (math.prod(tail) if tail is not None else 1) * dtype.itemsize
    info = cache[(shard, name)] = FieldInfo(dtype, tail, row_bytes, npy_headers(dtype, tail))
    return info
