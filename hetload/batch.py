"""``HeteroBatch``: a batch of heterogeneous samples, one entry per field.

Each field is one of:

- a :class:`~hetload.Ragged` (packed values + offsets; index fields such as faces re-based to
  global numbering);
- a ``Tensor [B, *shape]`` (fixed-size fields, stacked);
- a ``list`` of ``B`` Python objects (strings, paths, metadata).

Fields are reached as ``batch.verts`` or ``batch["verts"]``; ``batch[i]`` (an int) and iteration
give samples, so ``len(batch)`` is ``B``, the number of samples.

A field only some samples held (see :func:`hetload.collate`) records which ones:
``batch.present(name)`` is a bool ``[B]``, and ``batch.sample(i)`` leaves the field out where
sample ``i`` lacked it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping
from typing import Any

import torch

# imported here, not per call: pickling a batch runs once per batch a worker sends
from hetload.handoff import reduce_batch
from hetload.pickling import reduce_batch_plain
from hetload.ragged import Ragged, casts_float_only, device_only, shift_indices

__all__ = ["HeteroBatch"]


class HeteroBatch:
    """A mapping from field name to ``Ragged`` / ``Tensor [B, ...]`` / ``list`` of ``B`` items."""

    __slots__ = ("_batch_size", "_fields", "_present")

    def __init__(
        self,
        fields: Mapping[str, Any],
        batch_size: int | None = None,
        present: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """``present``: for each field some samples lack, bool ``[B]``, True where a sample
        holds it (fields not named are in every sample)."""
        self._fields: dict[str, Any] = dict(fields)
        if batch_size is None:
            batch_size = _infer_batch_size(self._fields)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"a batch size is an int >= 0, got {batch_size!r:.60}")
        for name in self._fields:
            if not isinstance(name, str):
                raise TypeError(f"field names are str, got {name!r:.60}")
        for name, value in self._fields.items():
            size = len(value) if not isinstance(value, torch.Tensor) else value.shape[0]
            if size != batch_size:
                raise ValueError(f"field {name!r} has {size} items, the batch has {batch_size}")
        self._batch_size = batch_size
        self._present: dict[str, torch.Tensor] = {}
        for name, flags in (present or {}).items():
            if name not in self._fields:
                raise ValueError(f"present: the batch has no field {name!r}")
            flags = torch.as_tensor(flags, dtype=torch.bool)
            if flags.shape != (batch_size,):
                raise ValueError(
                    f"present[{name!r}] has shape {tuple(flags.shape)}, expected ({batch_size},)"
                )
            self._present[name] = flags

    @classmethod
    def _trusted(
        cls, fields: dict[str, Any], batch_size: int, present: dict[str, torch.Tensor]
    ) -> HeteroBatch:
        """A batch of parts this library built and checked already (a batch a DataLoader
        worker sent, rebuilt for every batch the main process gets), with no check at all."""
        self = cls.__new__(cls)
        self._fields, self._batch_size, self._present = fields, batch_size, present
        return self

    def present(self, name: str) -> torch.Tensor:
        """bool ``[B]``: True where the sample held field ``name``: all True for a field every
        sample held, all False for one no sample of this batch held (a batch of files without
        colors has no ``colors`` field). An absent ragged item is empty, an absent fixed row a
        missing value (see :func:`hetload.collate`)."""
        flags = self._present.get(name)
        if flags is not None:
            return flags
        return torch.full((self._batch_size,), name in self._fields, dtype=torch.bool)

    # ------------------------------------------------------------------ mapping of fields
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(
                f"the batch has no field {name!r} (fields: {', '.join(self._fields)})"
            ) from None

    def __getitem__(self, key: str | int) -> Any:
        """``batch["verts"]`` is a field; ``batch[i]`` is sample ``i`` (see :meth:`sample`)."""
        if isinstance(key, str):
            if key not in self._fields:
                fields = ", ".join(self._fields)
                raise KeyError(f"the batch has no field {key!r} (fields: {fields})")
            return self._fields[key]
        if not isinstance(key, torch.Tensor) and hasattr(key, "__index__"):
            return self.sample(operator.index(key))
        raise TypeError(f"index a batch with a field name or a sample number, not {type(key)}")

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def keys(self):
        return self._fields.keys()

    def values(self):
        return self._fields.values()

    def items(self):
        return self._fields.items()

    def get(self, name: str, default: Any = None) -> Any:
        return self._fields.get(name, default)

    def __len__(self) -> int:
        """``B``, the number of samples."""
        return self._batch_size

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Iterate over samples (not field names: use :meth:`keys` for those)."""
        return (self.sample(i) for i in range(self._batch_size))

    # ------------------------------------------------------------------ samples
    def sample(self, i: int) -> dict[str, Any]:
        """Sample ``i`` as the dict it came from: ragged fields as views ``[N_i, *D]``, index
        fields in the sample's own (local) numbering, fixed fields ``tensor[i]``, metadata as is;
        fields sample ``i`` lacked are left out.
        """
        b = self._batch_size
        if not -b <= i < b:
            raise IndexError(f"sample {i} out of range for a batch of {b}")
        i %= b
        out: dict[str, Any] = {}
        for name, value in self._fields.items():
            flags = self._present.get(name)
            if flags is not None and not bool(flags[i]):
                continue
            if isinstance(value, Ragged):
                item = value[i]
                if value.index_base is not None:
                    item = shift_indices(item, int(value.index_base[i]))
                out[name] = item
            else:
                out[name] = value[i]
        return out

    # ------------------------------------------------------------------ movement
    def to(self, *args: Any, non_blocking: bool = False, **kwargs: Any) -> HeteroBatch:
        """Move every tensor like ``Tensor.to``; only packed bytes (and offsets) are copied.

        Index fields reuse their target's moved offsets, so each offsets tensor crosses once.
        A dtype (``to(torch.float16)``, or another tensor's in ``to(other)``) casts
        floating-point fields only, as ``nn.Module.to`` does: index fields, integer and bool
        fields keep their dtype.
        """
        moved: dict[str, Any] = {}
        moved_offsets: dict[int, torch.Tensor] = {}
        for name, value in self._fields.items():
            if isinstance(value, Ragged) and value.index_base is None:
                a, kw = casts_float_only(args, kwargs, value.values)
                moved[name] = value.to(*a, non_blocking=non_blocking, **kw)
                moved_offsets[id(value.offsets)] = moved[name].offsets
        device_args, device_kwargs = device_only(args, kwargs)
        for name, value in self._fields.items():
            if name in moved:
                continue
            if isinstance(value, Ragged):
                values = value.values.to(*device_args, non_blocking=non_blocking, **device_kwargs)
                moved[name] = Ragged(
                    values,
                    _move(value.offsets, moved_offsets, values.device, non_blocking),
                    name=value.name,
                    index_base=_move(value.index_base, moved_offsets, values.device, non_blocking),
                    max_len=value.max_len,
                    validate=False,
                )
            elif isinstance(value, torch.Tensor):
                a, kw = casts_float_only(args, kwargs, value)
                moved[name] = value.to(*a, non_blocking=non_blocking, **kw)
            else:
                moved[name] = value
        present = {
            name: flags.to(*device_args, non_blocking=non_blocking, **device_kwargs)
            for name, flags in self._present.items()
        }
        return HeteroBatch({name: moved[name] for name in self._fields}, self._batch_size, present)

    def pin_memory(self, device: Any = None) -> HeteroBatch:
        """Page-locked copies of every tensor (called by ``DataLoader(pin_memory=True)``).

        An offsets tensor shared by several fields (an index field's ``index_base`` is its
        target's ``offsets``) is pinned once and stays shared, so the relation survives."""
        from hetload.handoff import poll

        # the batch before this one was dropped by now: its worker slot goes back at once
        poll()
        pinned: dict[str, Any] = {}
        done: dict[int, torch.Tensor] = {}

        def pin(t: torch.Tensor) -> torch.Tensor:
            if id(t) not in done:
                done[id(t)] = t.pin_memory()
            return done[id(t)]

        for name, value in self._fields.items():
            if isinstance(value, Ragged):
                base = None if value.index_base is None else pin(value.index_base)
                pinned[name] = value._derive(pin(value.values), pin(value.offsets), base)
            elif isinstance(value, torch.Tensor):
                pinned[name] = pin(value)
            else:
                pinned[name] = value
        present = {name: flags.pin_memory() for name, flags in self._present.items()}
        return HeteroBatch(pinned, self._batch_size, present)

    def __repr__(self) -> str:
        lines = [f"HeteroBatch(B={self._batch_size}"]
        for name, value in self._fields.items():
            if isinstance(value, Ragged):
                kind = "index" if value.index_base is not None else "ragged"
                desc = f"{kind} {tuple(value.values.shape)} {value.values.dtype}"
            elif isinstance(value, torch.Tensor):
                desc = f"fixed {tuple(value.shape)} {value.dtype}"
            else:
                desc = f"list[{len(value)}]"
            if name in self._present:
                desc += f", in {int(self._present[name].sum())} of {self._batch_size} samples"
            lines.append(f"  {name}: {desc}")
        return "\n".join(lines) + "\n)"

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Inside a DataLoader worker, a batch carved from the worker's ring travels as the
        ring slot's descriptor and its layout (:mod:`hetload.handoff`); everywhere else (and
        under ``torch.save``) as each storage once plus the views on it
        (:mod:`hetload.pickling`: the fields of one batch buffer differ in dtype)."""
        form = reduce_batch(self, protocol)
        return form if form is not None else reduce_batch_plain(self)

    def __getstate__(self) -> dict[str, Any]:
        return {"fields": self._fields, "batch_size": self._batch_size, "present": self._present}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._fields = state["fields"]
        self._batch_size = state["batch_size"]
        self._present = state.get("present", {})


def _infer_batch_size(fields: Mapping[str, Any]) -> int:
    for value in fields.values():
        return len(value) if not isinstance(value, torch.Tensor) else value.shape[0]
    raise ValueError("a HeteroBatch needs at least one field or an explicit batch_size")


def _move(
    offsets: torch.Tensor, moved: dict[int, torch.Tensor], device: torch.device, non_blocking: bool
) -> torch.Tensor:
    """``offsets`` on ``device``, reusing a copy already made for another field."""
    already = moved.get(id(offsets))
    if already is not None and already.device == device:
        return already
    out = offsets.to(device, non_blocking=non_blocking)
    moved[id(offsets)] = out
    return out
