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

View = tuple[int, int, tuple[int, ...], tuple[int, ...], torch.dtype]


class Table:
    """Tensors noted as views of a few storages (each noted once, by identity)."""

    def __init__(self) -> None:
        self.storages: list[torch.UntypedStorage] = []
        self.views: list[View] = []
        self._memo: dict[int, int] = {}
        self._index: dict[int, int] = {}

    def note(self, t: torch.Tensor) -> int:
        """The number of ``t`` in the table (the same for the same tensor object)."""
        if id(t) in self._memo:
            return self._memo[id(t)]
        s = t.untyped_storage()
        k = self._index.setdefault(s._cdata, len(self.storages))
        if k == len(self.storages):
            self.storages.append(s)
        self.views.append((k, t.storage_offset() * t.element_size(), t.shape, t.stride(), t.dtype))
        self._memo[id(t)] = len(self.views) - 1
        return self._memo[id(t)]


def plain(t: Any) -> bool:
    """A tensor the table may hold: a plain dense CPU/GPU tensor outside autograd."""
    return type(t) is torch.Tensor and t.layout == torch.strided and not t.requires_grad


def encode_fields(fields: Any, present: dict[str, torch.Tensor], table: Table) -> tuple:
    """``(fields, present)`` with every plain tensor replaced by its number in ``table``."""
    out = []
    for name, value in fields.items():
        if type(value) is Ragged and all(
            t is None or plain(t) for t in (value.values, value.offsets, value.index_base)
        ):
            base = -1 if value.index_base is None else table.note(value.index_base)
            refs = (table.note(value.values), table.note(value.offsets), base)
            out.append((name, "R", (*refs, value.name, value._max_len)))
        elif plain(value):
            out.append((name, "T", table.note(value)))
        else:  # metadata, and tensors that keep their own pickling
            out.append((name, "M", value))
    flags = []
    for name, value in present.items():
        flags.append((name, "T", table.note(value)) if plain(value) else (name, "M", value))
    return out, flags


def views(storages: list[torch.UntypedStorage], table: list[View]) -> list[torch.Tensor]:
    """The tensors of ``table`` over ``storages`` (no copy)."""
    out = []
    for k, offset, shape, stride, dtype in table:
        t = torch.empty((0,), dtype=dtype, device=storages[k].device)
        out.append(t.set_(storages[k], offset // dtype.itemsize, shape, stride))
    return out


def decode_fields(encoded: tuple, tensors: list[torch.Tensor]) -> tuple[dict, dict]:
    """Inverse of :func:`encode_fields`."""
    fields_in, flags_in = encoded
    fields: dict[str, Any] = {}
    for name, kind, payload in fields_in:
        if kind == "R":
            values, offsets, base, rname, max_len = payload
            fields[name] = Ragged(
                tensors[values],
                tensors[offsets],
                name=rname,
                index_base=None if base < 0 else tensors[base],
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

    tensors = views([b.untyped_storage() for b in buffers], table)
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
    tensors = views([b.untyped_storage() for b in buffers], table)
    return decode_fields(encoded, tensors)[0]["r"]
