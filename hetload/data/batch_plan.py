"""A batch's layout, known from the index before reading it (see :mod:`hetload.data.batch_read`).

The index gives every member's offset and size and every array's rows; each shard's first
``.npy`` header of a field gives its dtype and trailing shape (read once per process, shard and
field). From those, field by field over the whole batch (numpy columns; per sample only its
shape and expected header are made): each sample's shape, the ``.npy`` header numpy's writer
gives that shape (:mod:`hetload.data.npy_header`), its data bytes and place in the batch buffer
(:class:`~hetload.packed.PackedField`), and the index fields the read re-bases in place.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from hetload.arena import aligned
from hetload.data.leases import Leases
from hetload.data.npy_header import NpyHeaders, npy_headers
from hetload.packed import PackedField
from hetload.schema import DEFAULT_SCHEMA
from hetload.shards.format import ShardError, member_name

__all__ = ["BatchPlan", "FieldPlan", "Rebase", "plan_batch"]

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
    """One array field over a batch of ``B`` samples, member suffix ``suffixes[row]``.

    ``held``: ``bool [B]``, the samples holding it; ``counts``: ``int64 [B]``, its rows as an
    index field's target (0 where absent or 0-d); ``headers``: the expected ``.npy`` headers
    (``None``: absent); ``dtype``: the holders' one dtype (``None`` where they differ)."""

    name: str
    row: int
    held: np.ndarray
    counts: np.ndarray
    headers: list[bytes | None]
    dtype: np.dtype | None


class Rebase(NamedTuple):
    """How the read re-bases one index field: into ``target``; per sample its ``bases`` (the
    target's rows before it) and ``counts`` (its target's rows); ``item``: index bytes."""

    target: str
    bases: list[int]
    counts: np.ndarray
    item: int


@dataclass
class BatchPlan:
    """A batch's layout, per member suffix (``suffixes``, the tar's order) and sample: the
    member's data ``offset`` and ``size`` (``int64 [S, B]``, -1: absent, from the index), its
    ``.npy`` header bytes ``npy`` (0: absent or not an array) and the data's place ``dst`` in
    the buffer; per array field some sample holds, its :class:`FieldPlan` and
    :class:`~hetload.packed.PackedField`; the buffer's ``nbytes``."""

    suffixes: list[str]
    offset: np.ndarray
    size: np.ndarray
    npy: np.ndarray
    dst: np.ndarray
    fields: dict[str, FieldPlan]
    packed: dict[str, PackedField]
    nbytes: int


def plan_batch(ds: Any, positions: np.ndarray, shards: list[int]) -> BatchPlan | None:
    """The layout of samples ``positions`` (``int64 [B]``, in shards ``shards``) of ``ds`` (a
    ``ShardDataset``), or ``None`` where the per-sample path must read the batch (a row count
    or member size the index and the shard's dtype cannot both hold).

    Raises ``ShardError``, ``OSError``, ``ValueError`` where a shard's first header of a field
    cannot be read (the caller leaves the batch to the per-sample path)."""
    count = len(shards)
    suffixes = list(ds._suffixes)
    offset = np.empty((len(suffixes), count), dtype=np.int64)
    size = np.empty((len(suffixes), count), dtype=np.int64)
    for k, suffix in enumerate(suffixes):
        offset[k] = ds._offset[suffix][positions]
        size[k] = ds._size[suffix][positions]
    held = offset >= 0
    everywhere = held.all(axis=1).tolist()
    somewhere = held.any(axis=1).tolist()
    npy = np.zeros((len(suffixes), count), dtype=np.int64)
    data = np.zeros((len(suffixes), count), dtype=np.int64)
    all_shards = set(shards)
    fields: dict[str, FieldPlan] = {}
    shapes: dict[str, list[tuple[int, ...] | None]] = {}
    dtypes: dict[str, list[np.dtype | None]] = {}
    for k, suffix in enumerate(suffixes):
        if suffix[-4:] != ".npy" or not somewhere[k]:
            continue
        name = suffix[:-4]
        rows = np.asarray(ds.field_sizes[name][positions], dtype=np.int64)
        holders = range(count) if everywhere[k] else np.flatnonzero(held[k]).tolist()
        # the holders grouped by the field's form in their shard (one group, nearly always)
        of_shard = {
            s: _field_info(ds, s, name)
            for s in (all_shards if everywhere[k] else {shards[j] for j in holders})
        }
        if len(set(of_shard.values())) == 1:
            groups = {next(iter(of_shard.values())): list(holders)}
        else:
            groups = {}
            for j in holders:
                groups.setdefault(of_shard[shards[j]], []).append(j)
        field_dtypes: list[np.dtype | None] = [None] * count
        field_shapes: list[tuple[int, ...] | None] = [None] * count
        headers: list[bytes | None] = [None] * count
        counts = np.zeros(count, dtype=np.int64)
        for info, group in groups.items():
            whole = len(group) == count
            n = rows if whole else rows[group]
            group_rows = n.tolist()
            if info.tail is None:
                if (n != 1).any():
                    return None
                group_shapes: list[tuple[int, ...]] = [()] * len(group)
            else:
                # n * row_bytes below cannot overflow: no more rows than the member's bytes
                limit = size[k] if whole else size[k, group]
                if (n < 0).any() or (info.row_bytes and (n > limit).any()):
                    return None
                tail = info.tail
                group_shapes = [(r, *tail) for r in group_rows]
                counts[group] = n
            group_headers = info.headers.many(group_rows)
            if whole:
                npy[k] = info.headers.length or [len(h) for h in group_headers]
                data[k] = n * info.row_bytes
                field_dtypes, field_shapes, headers = (
                    [info.dtype] * count,
                    group_shapes,
                    group_headers,
                )
                continue
            npy[k, group] = [len(h) for h in group_headers]
            data[k, group] = n * info.row_bytes
            for j, shape, header in zip(group, group_shapes, group_headers, strict=True):
                field_dtypes[j], field_shapes[j], headers[j] = info.dtype, shape, header
        kinds = {info.dtype for info in groups}
        fields[name] = FieldPlan(
            name, k, held[k], counts, headers, kinds.pop() if len(kinds) == 1 else None
        )
        shapes[name], dtypes[name] = field_shapes, field_dtypes
    # every array member's bytes: its header, then its rows (absent members: 0 == 0)
    if ((npy + data != size) & (npy > 0)).any():
        return None
    # the batch buffer: per field its values, then its offsets [B+1] and flags [B]
    starts = np.cumsum(data, axis=1) - data
    totals = (starts[:, -1] + data[:, -1]).tolist()
    dst = np.full((len(suffixes), count), -1, dtype=np.int64)
    packed: dict[str, PackedField] = {}
    at = 0
    for name, field in fields.items():
        total = totals[field.row]
        dst[field.row] = starts[field.row] + at
        packed[name] = PackedField(
            name=name,
            values_at=at,
            nbytes=total,
            dtypes=dtypes[name],
            shapes=shapes[name],
            starts=starts[field.row].tolist(),
            offsets_at=at + aligned(total),
            flags_at=at + aligned(total) + aligned(8 * (count + 1)),
        )
        at = packed[name].flags_at + aligned(count)
    return BatchPlan(suffixes, offset, size, npy, dst, fields, packed, at)


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
        bases = np.cumsum(counts) - counts
        if int(bases[-1] + counts[-1]) - 1 > np.iinfo(dtype).max:
            continue
        out[name] = Rebase(spec.index_of, bases.tolist(), counts, dtype.itemsize)
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
    stream = io.BytesIO(probe[:got].tobytes())
    try:
        version = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(stream)
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise ShardError(ds._urls[shard], member_name(ds._keys[p], suffix), str(exc)) from None
    if fortran and len(shape) > 1:
        raise ShardError(ds._urls[shard], member_name(ds._keys[p], suffix), "Fortran order")
    tail = None if len(shape) == 0 else tuple(shape[1:])
    row_bytes = (math.prod(tail) if tail is not None else 1) * dtype.itemsize
    info = cache[(shard, name)] = FieldInfo(dtype, tail, row_bytes, npy_headers(dtype, tail))
    return info
