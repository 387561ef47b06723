"""``PackedSamples``: a batch whose array data was read straight into its batch buffer.

A dataset that knows a batch's layout before reading it (:class:`~hetload.data.ShardDataset`,
through :mod:`hetload.data.batch_read`) returns this object from ``__getitems__``. It is a
sequence of sample dicts, like the list it replaces, so any ``collate_fn`` works on it; but
:func:`hetload.collate` recognises it and builds the :class:`~hetload.HeteroBatch` around the
buffer it already holds: ragged and index fields are views of that buffer (index fields re-based
in place), with no per-sample arrays and no second copy of their bytes.

The result is the one ``collate`` would build from the samples as a plain list, bit for bit
(values, offsets, ``present`` flags, field order, labels, keys, metadata); anything this fast
path does not cover (a dtype or trailing shape differing between samples, a non-native byte
order, a field the schema does not batch as ragged, an index out of range) is batched by the
plain ``collate`` on the same samples, so results and errors are the plain path's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Any

import numpy as np
import torch

from hetload.arena import carve, private
from hetload.batch import HeteroBatch
from hetload.ops import rebase_index_
from hetload.ragged import Ragged
from hetload.schema import DEFAULT_SCHEMA, Schema

__all__ = ["PackedField", "PackedSamples"]

# index fields the in-place rebase handles here; others go through the plain collate
_INDEX_DTYPES = (torch.int32, torch.int64)


@dataclass
class PackedField:
    """One array field of a packed batch.

    ``values`` is the field's byte region of the batch buffer: each holder's data, in batch
    order, back to back. Per sample ``j``: ``dtypes[j]`` / ``shapes[j]`` (``None`` where
    sample ``j`` lacks the field) and ``starts[j]``, its first byte inside ``values``.
    ``offsets_at`` / ``flags_at``: byte offsets in the batch buffer reserved for the field's
    ``int64 [B+1]`` offsets and ``bool [B]`` presence flags.
    """

    name: str
    values_at: int
    nbytes: int
    dtypes: list[np.dtype | None]
    shapes: list[tuple[int, ...] | None]
    starts: list[int]
    offsets_at: int
    flags_at: int

    def array(self, buffer: np.ndarray, j: int) -> np.ndarray:
        """Sample ``j``'s array: a numpy view of ``buffer`` (``uint8``), its stored shape."""
        dtype, shape = self.dtypes[j], self.shapes[j]
        assert dtype is not None and shape is not None
        lo = self.values_at + self.starts[j]
        return buffer[lo : lo + math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)


class PackedSamples(Sequence):
    """``B`` samples whose arrays live in one batch buffer (see the module docstring).

    Args:
        buffer: ``uint8 [nbytes]`` from :func:`hetload.arena.batch_buffer`.
        fields: ``{name: PackedField}``, the array fields read into ``buffer``.
        orders: per sample, its field names in the order its dict has them.
        values: per sample, its non-array values (``{name: value}``: metadata, labels, key).
        reread: reads the batch again by the plain per-sample path (a list of sample dicts);
            used when an in-place rebase found an index out of range (the buffer is then
            partly re-based), so the plain ``collate`` raises its own error.

    Items are sample dicts of fresh numpy arrays (copies: collating re-bases index fields in
    the buffer, and an item must not change under its holder). Pickling gives a plain list.
    """

    def __init__(
        self,
        buffer: torch.Tensor,
        fields: dict[str, PackedField],
        orders: list[list[str]],
        values: list[dict[str, Any]],
        reread: Callable[[], list[Any]],
    ) -> None:
        self.buffer = buffer
        self.fields = fields
        self.orders = orders
        self.values = values
        self._reread = reread
        self._bytes = buffer.numpy()
        self._batch: HeteroBatch | None = None
        # the schema (as plain data) self._batch was collated under
        self._batch_schema: tuple[Any, ...] | None = None
        # per index field collated in place: the base each sample's indices were shifted by
        self._shifted: dict[str, list[int]] = {}
        # set when an in-place rebase stopped half way: items then come from a fresh read
        self._spoiled: list[Any] | None = None
        # index fields the read already re-based under the default schema: name -> target
        self._prebased: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.orders)

    def __getitem__(self, j: int) -> dict[str, Any]:  # type: ignore[override]
        if isinstance(j, slice):
            return [self[k] for k in range(len(self))[j]]  # type: ignore[return-value]
        j = range(len(self))[j]
        if self._spoiled is not None:
            return self._spoiled[j]
        sample: dict[str, Any] = {}
        for name in self.orders[j]:
            field = self.fields.get(name)
            if field is None or field.dtypes[j] is None:
                sample[name] = self.values[j][name]
                continue
            array = field.array(self._bytes, j).copy()
            shift = self._shifted.get(name)
            if shift is not None and shift[j] and array.size:
                # the base in the index dtype's wrapping arithmetic, as it was added (a sample
                # with no target rows may sit at a base past the dtype: its array is empty)
                array -= np.array(shift[j], dtype=np.int64).astype(array.dtype)
            sample[name] = array
        return sample

    def stored_item(self, j: int) -> dict[str, Any]:
        """Sample ``j`` as stored, its arrays writable views of the buffer (no copy). Only for
        a batch no read re-based and no collate touched (the transform path of
        :class:`~hetload.data.ShardDataset` reads it so)."""
        if self._shifted or self._batch is not None:
            raise RuntimeError("PackedSamples.stored_item: the buffer was re-based or collated")
        return dict(self._items(j))

    def rebased_at_read(self, shifted: dict[str, tuple[str, list[int]]]) -> None:
        """Record index fields the read re-based in place as the default schema batches them
        (``{name: (target, per-sample base)}``): collate keeps them when its schema agrees,
        and items (and any other schema, by the plain path) see the stored indices."""
        for name, (target, bases) in shifted.items():
            self._shifted[name] = bases
            self._prebased[name] = target

    def with_value(self, name: str, value: Any) -> PackedSamples:
        """Every sample with ``name`` set to ``value``, as ``{**sample, name: value}`` would
        (e.g. ``is_repeat``); ``name`` must not be an array field. Returns ``self``."""
        if name in self.fields or self._batch is not None:
            raise ValueError(f"PackedSamples.with_value: {name!r} is an array field, or collated")
        for order, values in zip(self.orders, self.values, strict=True):
            if name not in values:
                order.append(name)
            values[name] = value
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))

    def __repr__(self) -> str:
        return f"PackedSamples({len(self)} samples, {self.buffer.numel()} bytes)"

    # ------------------------------------------------------------------------------ collate
    def collate(self, schema: Schema | None = None) -> HeteroBatch:
        """The :class:`~hetload.HeteroBatch` ``hetload.collate(list(self), schema)`` returns,
        built around the buffer (called by :func:`hetload.collate`). A second call under the
        same schema returns the same batch; under another schema, the plain ``collate`` of the
        items (the buffer belongs to the first batch, whose index fields it may have re-based
        for that first schema)."""
        schema = DEFAULT_SCHEMA if schema is None else schema
        if self._spoiled is not None:
            # an earlier collate stopped half way through an in-place re-base (an index out of
            # range): the buffer is no longer the stored samples, the fresh read is
            return self._plain(schema)
        key = _schema_key(schema)
        if self._batch is None:
            self._batch = self._collate(schema)
            self._batch_schema = key
            return self._batch
        if key == self._batch_schema:
            return self._batch
        return self._plain(schema)

    def _plain(self, schema: Schema) -> HeteroBatch:
        from hetload.collate import collate

        return collate(list(self), schema)

    def _collate(self, schema: Schema) -> HeteroBatch:
        from hetload.collate import collate

        count = len(self)
        names = list(dict.fromkeys(name for order in self.orders for name in order))
        sets = [set(order) for order in self.orders]
        holds = {name: [name in held for held in sets] for name in names}
        first: dict[str, Any] = {}
        for name in names:
            j = holds[name].index(True)
            field = self.fields.get(name)
            is_array = field is not None and field.dtypes[j] is not None
            first[name] = field.array(self._bytes, j) if is_array else self.values[j][name]
        specs = {name: schema.field(name, first[name]) for name in names}
        fast = {name for name in names if self._fast(name, holds[name], specs[name].kind)}
        for name in names:
            spec = specs[name]
            if spec.kind == "index" and (name not in fast or spec.index_of not in fast):
                return self._plain(schema)  # its target may be batched elsewhere
        for name, target in self._prebased.items():
            if name not in fast or specs[name].index_of != target or target not in fast:
                return self._plain(schema)  # re-based at read for another schema than this
        done: dict[str, Any] = {}
        light = None
        if any(name not in fast for name in names):
            # every other field (metadata, labels, fixed fields, odd dtypes) by the plain path
            # in ordinary memory: small, it travels inline beside the buffer's ring slot
            with private():
                light = collate(
                    [dict(self._items(j, skip=fast)) for j in range(count)],
                    schema,
                )
            done.update(light.items())
        for name in sorted(fast, key=lambda n: specs[n].kind == "index"):
            spec = specs[name]
            if spec.kind == "ragged":
                done[name] = self._ragged(name)
                continue
            rebased = self._index(name, done[spec.index_of])
            if rebased is None:
                self._spoiled = self._reread()
                return collate(self._spoiled, schema)
            done[name] = rebased
        present = {}
        for name in names:
            if all(holds[name]):
                continue
            if name in fast:
                flags = carve(self.buffer, self.fields[name].flags_at, (count,), torch.bool)
                flags.numpy()[:] = holds[name]
                present[name] = flags
            else:
                assert light is not None
                present[name] = light.present(name)
        return HeteroBatch({name: done[name] for name in names}, count, present)

    def _items(self, j: int, skip: set[str] | frozenset[str] = frozenset()):
        """Sample ``j``'s ``(name, value)`` pairs but those in ``skip``, arrays as views (for
        the plain collate)."""
        values = self.values[j]
        for name in self.orders[j]:
            if name in skip:
                continue
            field = self.fields.get(name)
            if field is None or field.dtypes[j] is None:
                yield name, values[name]
            else:
                yield name, field.array(self._bytes, j)

    def _fast(self, name: str, holds: list[bool], kind: str) -> bool:
        """Whether field ``name`` is packed as it lies: ragged or index, an array in every
        sample holding it, one native numeric dtype and one trailing shape."""
        field = self.fields.get(name)
        if kind not in ("ragged", "index") or field is None:
            return False
        kinds = {(field.dtypes[j], field.shapes[j][1:] if field.shapes[j] else None)
                 for j, held in enumerate(holds) if held}  # fmt: skip
        if len(kinds) != 1 or any(held and field.dtypes[j] is None for j, held in enumerate(holds)):
            return False
        dtype, _ = kinds.pop()
        shapes = [s for s in field.shapes if s is not None]
        if any(len(s) == 0 for s in shapes) or not dtype.isnative or dtype.kind not in "biufc":
            return False
        if sum(s[0] for s in shapes) > _INT64_MAX:
            # rows past int64 (e.g. [2**62, 0] arrays): no offsets can hold them; the plain
            # collate's error, not an overflow inside torch
            return False
        torch_dtype = _torch_dtype(dtype)
        if torch_dtype is None:
            return False
        return kind == "ragged" or torch_dtype in _INDEX_DTYPES

    def _packed(self, name: str) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """The field's ``values [sum N_i, *D]`` and ``offsets int64 [B+1]`` views, and the
        per-sample row counts."""
        field = self.fields[name]
        holder = next(j for j, d in enumerate(field.dtypes) if d is not None)
        dtype = _torch_dtype(field.dtypes[holder])  # type: ignore[arg-type]
        assert dtype is not None
        tail = field.shapes[holder][1:]  # type: ignore[index]
        lengths = [0 if s is None else s[0] for s in field.shapes]
        values = carve(self.buffer, field.values_at, (sum(lengths), *tail), dtype)
        offsets = carve(self.buffer, field.offsets_at, (len(lengths) + 1,), torch.int64)
        offsets.numpy()[:] = [0, *accumulate(lengths)]
        return values, offsets, lengths

    def _ragged(self, name: str) -> Ragged:
        values, offsets, lengths = self._packed(name)
        return Ragged(values, offsets, name=name, max_len=max(lengths), validate=False)

    def _index(self, name: str, target: Any) -> Ragged | None:
        """The index field re-based in place against ``target``'s offsets, as ``collate``
        does; ``None`` when the plain path must decide (an index out of range, a dtype too
        narrow for the packed rows)."""
        values, offsets, lengths = self._packed(name)
        if name in self._prebased:  # re-based and range-checked by the read, against target
            return Ragged(values, offsets, name=name, index_base=target.offsets,
                          max_len=max(lengths), validate=False)  # fmt: skip
        bases = target.offsets.tolist()
        counts = [hi - lo for lo, hi in pairwise(bases)]
        if bases[-1] - 1 > torch.iinfo(values.dtype).max:
            return None
        rows = [values[lo:hi] for lo, hi in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        if rebase_index_(rows, values, bases[:-1], counts) >= 0:
            return None
        self._shifted[name] = bases[:-1]
        return Ragged(
            values,
            offsets,
            name=name,
            index_base=target.offsets,
            max_len=max(lengths),
            validate=False,
        )


_INT64_MAX = 2**63 - 1


def _schema_key(schema: Schema) -> tuple[Any, ...]:
    """``schema`` as plain, comparable data (a ``Schema`` has no equality of its own, and may
    be changed after a collate). A subclass may decide in code of its own: only the same
    object is the same schema (the key holds it, so its id is not reused)."""
    if type(schema) is not Schema:
        return (schema,)
    return (schema.unknown, tuple(sorted((n, str(f)) for n, f in schema.fields.items())))


_TORCH_DTYPES: dict[np.dtype, torch.dtype | None] = {}


def _torch_dtype(dtype: np.dtype) -> torch.dtype | None:
    """The torch dtype ``torch.from_numpy`` gives ``dtype`` (``None``: it has none)."""
    if dtype not in _TORCH_DTYPES:
        try:
            _TORCH_DTYPES[dtype] = torch.from_numpy(np.empty(0, dtype)).dtype
        except TypeError:
            _TORCH_DTYPES[dtype] = None
    return _TORCH_DTYPES[dtype]
