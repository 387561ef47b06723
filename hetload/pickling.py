"""How a batch and a ``Ragged`` pickle: as whole storages plus a table of the views on them.

A batch's tensors are views of one buffer at different dtypes (:mod:`hetload.arena`).
``torch.save`` refuses such tensors one by one ("multiple tensors ... view the same data as
different types"), and sending them one by one across processes would share the storage once per
tensor. So a batch pickles as each distinct storage once, as a ``uint8`` tensor, and a table of
``(storage, byte offset, shape, stride, dtype)`` per tensor: self-contained under ``torch.save``,
one shared storage for ``multiprocessing``, and tensors that were one (an index field's
``index_base`` *is* its target's ``offsets``) are one again after loading.
"""

from __future__ import annotations

from typing import Any

import torch

from hetload.ragged import Ragged

__all__ = ["Table", "decode_fields", "encode_fields"]

#: ``(storage, byte offset, shape, stride, dtype)``; the dtype may be its number in
#: :data:`DTYPES` (the worker-to-main form, where both sides run the same code)
View = tuple[int, int, tuple[int, ...], tuple[int, ...], torch.dtype | int]

#: every torch dtype, in an order fixed by their names: a view table names a dtype by its
#: position here when both sides run the same torch (a small int pickles and loads in a
#: fraction of the time of a ``torch.dtype``, and this is paid per batch)
DTYPES = tuple(sorted({v for v in vars(torch).values() if isinstance(v, torch.dtype)}, key=str))
_CODE = {dtype: k for k, dtype in enumerate(DTYPES)}


class Table:
    """Tensors noted as views of a few storages (each noted once, by identity).

    ``codes``: note dtypes by their number in :data:`DTYPES` (only for a table read back by
    the same torch version: the worker-to-main handoff, never a saved file)."""

    def __init__(self, codes: bool = False) -> None:
        self.storages: list[torch.UntypedStorage] = []
        self.views: list[View] = []
        self._memo: dict[int, int] = {}
        self._index: dict[int, int] = {}
        self._codes = codes

    def note(self, t: torch.Tensor) -> int:
        """The number of ``t`` in the table (the same for the same tensor object)."""
        known = self._memo.get(id(t))
        if known is not None:
            return known
        s = t.untyped_storage()
        k = self._index.setdefault(s._cdata, len(self.storages))
        if k == len(self.storages):
            self.storages.append(s)
        dtype = t.dtype
        # plain tuples, not torch.Size: they pickle and load several times faster
        self.views.append(
            (
                k,
                t.storage_offset() * dtype.itemsize,
                tuple(t.shape),
                t.stride(),
                _CODE.get(dtype, dtype) if self._codes else dtype,
            )
        )
        n = self._memo[id(t)] = len(self.views) - 1
        return n


def plain(t: Any) -> bool:
    """A tensor the table may hold: a plain dense CPU/GPU tensor outside autograd."""
    return type(t) is torch.Tensor and t.layout == torch.strided and not t.requires_grad


def encode_fields(fields: Any, present: dict[str, torch.Tensor], table: Table) -> tuple:
    """``(fields, present)`` with every plain tensor replaced by its number in ``table``."""
    out = []
    note = table.note
    for name, value in fields.items():
        if type(value) is Ragged:
            values, offsets, index_base = value.values, value.offsets, value.index_base
            if plain(values) and plain(offsets) and (index_base is None or plain(index_base)):
                base = -1 if index_base is None else note(index_base)
                refs = (note(values), note(offsets), base, value.name, value._max_len)
                out.append((name, "R", refs))
                continue
        elif plain(value):
            out.append((name, "T", note(value)))
            continue
        out.append((name, "M", value))  # metadata, and tensors that keep their own pickling
    flags = [
        (name, "T", note(value)) if plain(value) else (name, "M", value)
        for name, value in present.items()
    ]
    return out, flags


def views(
    storages: list[torch.UntypedStorage],
    table: list[View],
    bases: list[torch.Tensor | None] | None = None,
) -> list[torch.Tensor]:
    """The tensors of ``table`` over ``storages`` (no copy).

    ``bases``: for each storage, an ``uint8`` tensor over it from its start when the caller
    has one already. Each tensor is one call on a typed view of its storage, made once per
    (storage, dtype) of the table (a slice for a contiguous 1-d tensor, else ``as_strided``),
    not a fresh tensor plus ``set_`` per entry: this runs for every batch the main process
    receives."""
    out = []
    typed: dict[tuple[int, Any], torch.Tensor | None] = {}
    for k, offset, shape, stride, dtype in table:
        if type(dtype) is int:
            dtype = DTYPES[dtype]
        key = (k, dtype)
        base = typed.get(key, False)
        if base is False:
            base = typed[key] = _typed(storages[k], dtype, None if bases is None else bases[k])
        size = dtype.itemsize
        if base is not None and offset % size == 0:
            start = offset // size
            # a contiguous 1-d tensor (offsets, labels, flags) is a slice: unlike as_strided,
            # indexing keeps the GIL, which a queue's feeder thread would otherwise take here
            if len(shape) == 1 and stride == (1,) and start + shape[0] <= base.shape[0]:
                out.append(base[start : start + shape[0]])
                continue
            try:
                out.append(base.as_strided(shape, stride, start))
                continue
            except RuntimeError:  # past the typed view's whole elements: the exact way says why
                pass
        t = torch.empty((0,), dtype=dtype, device=storages[k].device)
        out.append(t.set_(storages[k], offset // size, shape, stride))
    return out


def _typed(
    s: torch.UntypedStorage, dtype: torch.dtype, base: torch.Tensor | None
) -> torch.Tensor | None:
    """A 1-d ``dtype`` tensor over the whole elements of ``s`` from its start, or ``None`` for
    a dtype no tensor can be made of this way. ``base`` (a tensor over ``s``) reinterpreted
    when it can be: one call instead of two."""
    if base is not None and base.storage_offset() == 0:  # slices index from the start
        try:
            return base.view(dtype)
        except RuntimeError:  # its size is not a whole number of elements
            pass
    try:
        t = torch.empty((0,), dtype=dtype, device=s.device)
        return t.set_(s, 0, (s.nbytes() // dtype.itemsize,))
    except RuntimeError:
        return None


def decode_fields(
    encoded: tuple, tensors: list[torch.Tensor], trusted: bool = False
) -> tuple[dict, dict]:
    """Inverse of :func:`encode_fields`. ``trusted``: the encoding is this same code's, made
    from a batch it built (the worker-to-main handoff): its ragged fields skip even the type
    checks of ``Ragged(validate=False)``."""
    fields_in, flags_in = encoded
    fields: dict[str, Any] = {}
    for name, kind, payload in fields_in:
        if kind == "R":
            values, offsets, base, rname, max_len = payload
            index_base = None if base < 0 else tensors[base]
            if trusted:
                fields[name] = Ragged._trusted(
                    tensors[values], tensors[offsets], rname, index_base, max_len
                )
                continue
            fields[name] = Ragged(
                tensors[values],
                tensors[offsets],
                name=rname,
                index_base=index_base,
                max_len=max_len,
                validate=False,
            )
        elif kind == "T":
            fields[name] = tensors[payload]
        else:
            fields[name] = payload
    present = {name: tensors[p] if kind == "T" else p for name, kind, p in flags_in}
    return fields, present


def storage_tensor(s: torch.UntypedStorage) -> torch.Tensor:
    """The whole storage as ``uint8 [nbytes]`` (what gets pickled: torch shares or saves it)."""
    return torch.empty((0,), dtype=torch.uint8, device=s.device).set_(s, 0, (s.nbytes(),))


def reduce_batch_plain(batch: Any) -> tuple:
    """``(rebuild, args)`` of a batch for ordinary pickling (``torch.save``, queues)."""
    table = Table()
    encoded = encode_fields(batch._fields, batch._present, table)
    buffers = [storage_tensor(s) for s in table.storages]
    return _rebuild_batch, (buffers, table.views, len(batch), encoded)


def _rebuild_batch(buffers: list[torch.Tensor], table: list[View], size: int, encoded: tuple):
    from hetload.batch import HeteroBatch

    tensors = views([b.untyped_storage() for b in buffers], table, buffers)
    fields, present = decode_fields(encoded, tensors)
    return HeteroBatch(fields, size, present)


def reduce_ragged(r: Ragged) -> tuple | None:
    """``(rebuild, args)`` of a ``Ragged`` for ordinary pickling, or ``None`` for the default
    one (tensors that are not plain)."""
    if not all(t is None or plain(t) for t in (r.values, r.offsets, r.index_base)):
        return None
    table = Table()
    encoded = encode_fields({"r": r}, {}, table)
    buffers = [storage_tensor(s) for s in table.storages]
    return _rebuild_ragged, (buffers, table.views, encoded)


def _rebuild_ragged(buffers: list[torch.Tensor], table: list[View], encoded: tuple) -> Ragged:
    tensors = views([b.untyped_storage() for b in buffers], table, buffers)
    return decode_fields(encoded, tensors)[0]["r"]
