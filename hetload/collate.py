"""``collate``: a drop-in ``collate_fn`` that builds a :class:`~hetload.HeteroBatch`.

Copies, counted (counts of copies are part of the design, not an accident):

- a ragged field: exactly one copy of each sample's bytes, into one preallocated buffer
  (``torch.cat(..., out=buffer)``); numpy inputs are wrapped, not copied, first;
- an index field: the same single copy, written already re-based (``out = faces + offset``) and
  range checked in the same pass (:func:`hetload.ops.rebase_index_`);
- the whole batch is ONE allocation (:mod:`hetload.arena`): collate first plans every output
  (each field's values and offsets, fixed rows, presence flags), then carves them all out of one
  buffer. Inside a DataLoader worker that buffer is a reused shared-memory segment of the
  worker's ring, so sending the batch to the main process moves one descriptor, not the bytes,
  and in steady state allocates nothing and faults no page.

Fixed cost per batch (issue 14: the copies are at the memory bus, so what is left is Python): a
field's values are checked in one pass over the column (:func:`hetload.sample_values.ragged_column`:
same type, dtype, layout, device, no grad, same trailing shape), falling back to the item-by-item
checks that name the sample only when that pass fails; the batch's tensors are carved from the
buffer by one ``set_`` each.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from itertools import accumulate
from operator import itemgetter
from typing import Any

import numpy as np
import torch

from hetload.arena import ALIGN, aligned, batch_buffer, carve
from hetload.batch import HeteroBatch
from hetload.ops import rebase_index_
from hetload.packed import PackedSamples
from hetload.ragged import Ragged
from hetload.sample_values import check_field_names, fixed_column, ragged_column
from hetload.schema import DEFAULT_SCHEMA, Field, Schema

__all__ = ["collate", "missing_value"]


def collate(samples: Sequence[Mapping[str, Any]], schema: Schema | None = None) -> HeteroBatch:
    """Batch ``B`` sample dicts into a :class:`~hetload.HeteroBatch`.

    Args:
        samples: dicts from field name to a numpy array / tensor (``[N_i, *D]`` for ragged
            fields), a number, or any other object (kept as metadata). Samples may differ in
            their fields (see "Fields some samples lack" below). ``None`` entries are samples
            a dataset dropped under ``on_error="skip"`` (it recorded why): they are left out of
            the batch, and a batch whose every sample was dropped is an empty ``HeteroBatch``
            (``len(batch) == 0``).
        schema: how each field batches; ``None`` uses :data:`~hetload.schema.DEFAULT_SCHEMA`.

    Fields some samples lack (a folder where only some files have colors, normals or uvs)
    batch without an error and without dropping the data of the samples that have them; the
    batch records which samples hold each such field (``batch.present(name)``: bool ``[B]``):

    - ragged and index fields: an absent item is an empty one, ``[0, *D]`` with the trailing
      shape and dtype of the samples that have the field (so ``offsets`` repeat there);
    - fixed fields: an absent row is a *missing value* that no real label is: NaN (floating),
      -1 (signed integers), the dtype's maximum (unsigned), ``False`` (bool);
    - metadata fields: ``None``.

    ``batch.sample(i)`` leaves out the fields sample ``i`` lacked, so it returns the input
    dict exactly.

    Returns:
        A ``HeteroBatch``: ragged fields as :class:`~hetload.Ragged` (``values [sum N_i, *D]``,
        ``offsets int64 [B+1]``), index fields re-based to global row numbers of their target,
        fixed fields stacked ``[B, *shape]``, metadata as lists.

    Raises:
        ValueError: naming the field and the sample index for a missing field, a dtype or
            trailing-shape mismatch, an index out of range, or a value that cannot be batched
            (:mod:`hetload.sample_values` lists them).
    """
    schema = DEFAULT_SCHEMA if schema is None else schema
    if not isinstance(schema, Schema):
        raise TypeError(
            f"collate(schema=...) takes a hetload Schema, got {type(schema).__name__}; "
            "wrap a dict as DEFAULT_SCHEMA.extend({...})"
        )
    if isinstance(samples, PackedSamples):  # read straight into its batch buffer (batch_read)
        return samples.collate(schema)
    if isinstance(samples, Mapping) or not isinstance(samples, Sequence):
        raise TypeError(f"collate expects a list of sample dicts, got {type(samples).__name__}")
    if len(samples) == 0:
        raise ValueError("collate: cannot batch an empty list of samples")
    samples = [sample for sample in samples if sample is not None]
    if not samples:
        return HeteroBatch({}, batch_size=0)
    if set(map(type, samples)) != {dict}:  # the usual case in one pass, else the reason
        for i, sample in enumerate(samples):
            if not isinstance(sample, Mapping):
                raise TypeError(
                    f"collate: sample {i} is a {type(sample).__name__}, expected a dict"
                )
    names, uniform = _field_names(samples)
    check_field_names(names)
    if uniform:  # every sample holds every field (the usual case: nothing to look up)
        present: dict[str, list[bool]] = {}
        first = {name: samples[0][name] for name in names}
    else:
        # which samples hold each field, for the fields some samples lack
        present = {
            name: flags
            for name in names
            if not all(flags := [name in sample for sample in samples])
        }
        first = {name: next(s[name] for s in samples if name in s) for name in names}
    specs = {name: schema.field(name, first[name]) for name in names}
    # 1. plan: every value converted and checked, every output's shape and dtype known, so the
    #    batch is one allocation (hetload.arena: one shared-memory segment inside a worker)
    plan = _Plan()
    jobs: dict[str, _Job] = {}
    # index fields need their target's offsets, so they go last
    order = sorted(names, key=lambda n: specs[n].kind == "index")
    for name in order:
        spec = specs[name]
        if name in present and spec.kind == "fixed":
            jobs[name] = _plan_fixed_partial(plan, name, samples, present[name])
            continue
        if name in present:
            column = _filled_column(name, samples, first[name], spec)
        else:
            column = list(map(itemgetter(name), samples))
        if spec.kind == "ragged":
            jobs[name] = _plan_ragged(plan, name, column)
        elif spec.kind == "index":
            jobs[name] = _plan_index(plan, name, column, spec, jobs)
        elif spec.kind == "fixed":
            jobs[name] = _plan_fixed(plan, name, column)
        else:
            jobs[name] = _Job("meta", column)
    flag_slots = {name: plan.add((len(samples),), torch.bool) for name in present}
    # 2. one buffer, every tensor a view of it; 3. one copy of each sample's bytes into it
    out = plan.carve_all()
    fields: dict[str, Any] = {}
    copies: list[Callable[[], None]] = []
    for name in order:
        fields[name] = jobs[name].fill(out, fields, copies)
    flags_out = {}
    for name, slot in flag_slots.items():
        flags_out[name] = out[slot]
        flags_out[name].numpy()[:] = present[name]
    # every field holds len(samples) items and every flag is bool [B], by construction
    batch = HeteroBatch._trusted({name: fields[name] for name in names}, len(samples), flags_out)
    # the large copies last, back to back: Python that ran after them would find its objects
    # evicted from the cache by the batch's bytes (measured: ~0.1 ms more per batch)
    for copy in copies:
        copy()
    return batch


_INT64_MAX = 2**63 - 1

#: a tensor of at least this many bytes starts at a 4 KiB multiple of the buffer (a field's
#: values): measured 2-6% faster copies for B=32 meshes than at the next ALIGN-ed byte
#: (interleaved runs, issue 14), at the cost of < 4 KiB of padding per such tensor
_PAGE_ALIGNED = 1 << 16


class _Plan:
    """The byte layout of a batch: each tensor at an :data:`~hetload.arena.ALIGN`-ed offset, the
    large ones at a page-multiple one."""

    def __init__(self) -> None:
        self.nbytes = 0
        self.slots: list[tuple[int, tuple[int, ...], torch.dtype]] = []

    def add(self, shape: tuple[int, ...], dtype: torch.dtype) -> int:
        """Reserve ``shape``/``dtype``; returns the slot's number (an index into carve_all)."""
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes >= _PAGE_ALIGNED:
            self.nbytes = -(-self.nbytes // 4096) * 4096
        self.slots.append((self.nbytes, shape, dtype))
        self.nbytes += aligned(nbytes)
        return len(self.slots) - 1

    def carve_all(self) -> list[torch.Tensor]:
        buffer = batch_buffer(self.nbytes)
        storage, start = buffer.untyped_storage(), buffer.storage_offset()
        if start % ALIGN:
            return [carve(buffer, offset, shape, dtype) for offset, shape, dtype in self.slots]
        # the views arena.carve makes (same storage, byte offset, shape, contiguous strides), each
        # in one set_ instead of a slice and two views: a third of the cost, collate's fixed cost
        # per batch; every offset is ALIGN-ed, so a whole number of elements of any dtype
        return [
            buffer.new_empty(0, dtype=dtype).set_(
                storage, (start + offset) // dtype.itemsize, shape
            )
            for offset, shape, dtype in self.slots
        ]


class _Job:
    """One field, planned: ``fill`` copies its samples into the carved tensors."""

    def __init__(self, kind: str, data: Any, **slots: Any) -> None:
        self.kind, self.data, self.slots = kind, data, slots

    def fill(
        self, out: list[torch.Tensor], done: dict[str, Any], copies: list[Callable[[], None]]
    ) -> Any:
        """The field's value in the batch; its ragged or index values' copy is appended to
        ``copies``, to run once the batch is assembled (an index copy raises if out of range)."""
        s = self.slots
        if self.kind == "meta":
            return self.data
        if self.kind == "fixed":
            target = out[s["values"]]
            if isinstance(self.data, torch.Tensor):
                target.copy_(self.data)
            else:
                torch.stack(self.data, out=target)
            return target
        if self.kind == "fixed_partial":
            target = out[s["values"]]
            target.fill_(missing_value(target.dtype))
            target[torch.tensor(s["flags"], dtype=torch.bool)] = self.data
            return target
        values, offsets = out[s["values"]], out[s["offsets"]]
        lengths = s["lengths"]
        # a batch's few dozen Python ints: summed in Python, written in one assignment (a numpy
        # cumsum of a list converts it to an array first, several times slower at this size)
        offsets.numpy()[:] = [0, *accumulate(lengths)]
        # parts built and checked here (shapes, dtypes, offsets from the lengths): no re-check
        if self.kind == "ragged":
            if values.numel():
                copies.append(partial(torch.cat, self.data, out=values))
            return Ragged._trusted(values, offsets, s["name"], None, max(lengths))
        copies.append(partial(_copy_index, self.data, values, s))
        return Ragged._trusted(values, offsets, s["name"], done[s["target"]].offsets, max(lengths))


def _copy_index(tensors: list[torch.Tensor], values: torch.Tensor, s: dict[str, Any]) -> None:
    """Write an index field's values: one pass per sample writes the re-based copy and checks
    the range (:func:`hetload.ops.rebase_index_`); an index out of range raises, naming it."""
    bases, counts = s["bases"], s["counts"]
    bad = rebase_index_(tensors, values, bases[:-1], counts)
    if bad >= 0:
        source = tensors[bad].numpy()
        low, high = int(source.min()), int(source.max())
        raise ValueError(
            f"field {s['name']!r}: sample {bad} has index {low if low < 0 else high}, outside "
            f"[0, {counts[bad]}) for its {counts[bad]} rows of {s['target']!r}"
        )


def _field_names(samples: Sequence[Mapping[str, Any]]) -> tuple[list[str], bool]:
    """Every field name of any sample, in order of first appearance; and whether every sample
    holds exactly these fields."""
    if len(set(map(tuple, samples))) == 1:  # one pass: the same keys in the same order
        return list(samples[0]), True
    names = dict.fromkeys(samples[0].keys())
    uniform = True
    for sample in samples[1:]:
        if sample.keys() != names.keys():
            names.update(dict.fromkeys(sample.keys()))
            uniform = False
    return list(names), uniform


def _filled_column(name: str, samples: Sequence[Mapping[str, Any]], like: Any, spec: Field) -> list:
    """The field's column with an absent item as an empty one (ragged / index: ``[0, *D]`` of
    ``like``'s trailing shape and dtype) or ``None`` (metadata)."""
    if spec.kind == "meta":
        return [sample.get(name) for sample in samples]
    if not isinstance(like, (np.ndarray, torch.Tensor)) or like.ndim == 0:
        where = next(i for i, s in enumerate(samples) if name in s)
        raise ValueError(
            f"field {name!r}: sample {where} holds a {type(like).__name__} of shape "
            f"{tuple(getattr(like, 'shape', ()))}, but the field is ragged ([N_i, ...])"
        )
    if isinstance(like, np.ndarray):
        empty: Any = np.empty((0, *like.shape[1:]), dtype=like.dtype)
    else:
        empty = like.new_empty((0, *like.shape[1:]), device="cpu")
    return [sample.get(name, empty) for sample in samples]


def missing_value(dtype: torch.dtype) -> bool | int | float:
    """The value an absent fixed field takes: one no real label is (see :func:`collate`)."""
    if dtype == torch.bool:
        return False
    if dtype.is_floating_point or dtype.is_complex:
        return math.nan
    info = torch.iinfo(dtype)
    return -1 if info.min < 0 else info.max


def _plan_fixed_partial(
    plan: _Plan, name: str, samples: Sequence[Mapping[str, Any]], flags: list[bool]
) -> _Job:
    """A fixed field some samples lack: the others stacked, absent rows a missing value."""
    column = [sample[name] for sample in samples if name in sample]
    try:
        stacked = _stack(fixed_column(name, column))
    except ValueError as exc:
        raise ValueError(
            f"{exc} (sample numbers count only the {len(column)} samples holding {name!r})"
        ) from None
    slot = plan.add((len(samples), *stacked.shape[1:]), stacked.dtype)
    return _Job("fixed_partial", stacked, values=slot, flags=flags)


def _stack(tensors: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    return tensors if isinstance(tensors, torch.Tensor) else torch.stack(tensors)


def _total_rows(name: str, lengths: list[int]) -> int:
    """The packed rows of field ``name``: its int64 offsets must count them."""
    total = sum(lengths)
    if total > _INT64_MAX:
        raise ValueError(
            f"field {name!r}: {total} rows in all (samples of rows but no bytes, e.g. "
            f"[{max(lengths)}, 0]) are more than its int64 offsets can count"
        )
    return total


def _plan_ragged(plan: _Plan, name: str, column: list[Any]) -> _Job:
    tensors, lengths = ragged_column(name, column)
    values = plan.add((_total_rows(name, lengths), *tensors[0].shape[1:]), tensors[0].dtype)
    offsets = plan.add((len(lengths) + 1,), torch.int64)
    return _Job("ragged", tensors, name=name, values=values, offsets=offsets, lengths=lengths)


@functools.cache
def _index_top(dtype: torch.dtype) -> int:
    """The largest value of an integer dtype (``torch.iinfo`` costs ~1.5 us a call)."""
    return torch.iinfo(dtype).max


def _plan_index(
    plan: _Plan, name: str, column: list[Any], spec: Field, jobs: dict[str, _Job]
) -> _Job:
    target = jobs.get(spec.index_of)  # type: ignore[arg-type]
    # the target may itself be an index field (rows marked by face number): any packed one
    if target is None or target.kind not in ("ragged", "index"):
        raise ValueError(
            f"field {name!r} indexes into {spec.index_of!r}, which the samples do not hold "
            "as a ragged field"
        )
    tensors, lengths = ragged_column(name, column)
    if tensors[0].is_floating_point() or tensors[0].is_complex() or tensors[0].dtype == torch.bool:
        raise ValueError(
            f"field {name!r}: an index field must have an integer dtype, got {tensors[0].dtype}"
        )
    # the target's offsets as host ints, known before any copy (collate's fixed cost is per field)
    counts = target.slots["lengths"]
    bases = [0, *accumulate(counts)]
    top = _index_top(tensors[0].dtype)
    if bases[-1] - 1 > top:
        raise ValueError(
            f"field {name!r}: {tensors[0].dtype} cannot hold indices into the {bases[-1]} packed "
            f"rows of {spec.index_of!r} (at most {top + 1}); store it as a wider integer dtype"
        )
    values = plan.add((_total_rows(name, lengths), *tensors[0].shape[1:]), tensors[0].dtype)
    offsets = plan.add((len(lengths) + 1,), torch.int64)
    return _Job(
        "index",
        tensors,
        name=name,
        target=spec.index_of,
        values=values,
        offsets=offsets,
        lengths=lengths,
        bases=bases,
        counts=counts,
    )


def _plan_fixed(plan: _Plan, name: str, column: list[Any]) -> _Job:
    tensors = fixed_column(name, column)
    first = tensors if isinstance(tensors, torch.Tensor) else tensors[0]
    shape = (
        tuple(first.shape) if isinstance(tensors, torch.Tensor) else (len(tensors), *first.shape)
    )
    return _Job("fixed", tensors, values=plan.add(shape, first.dtype))
