"""``collate``: a drop-in ``collate_fn`` that builds a :class:`~hetload.HeteroBatch`.

Copies, counted (counts of copies are part of the design, not an accident):

- a ragged field: exactly one copy of each sample's bytes, into one preallocated buffer
  (``torch.cat(..., out=buffer)``); numpy inputs are wrapped, not copied, first;
- an index field: the same single copy, written already re-based (``out = faces + offset``) and
  range checked in the same pass (:func:`hetload.ops.rebase_index_`);
- inside a DataLoader worker the buffers are allocated in shared memory, so sending the batch to
  the main process moves a file descriptor, not the bytes (as PyG and ``default_collate`` do).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import accumulate, pairwise
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from hetload.batch import HeteroBatch
from hetload.ops import rebase_index_
from hetload.packed import PackedSamples
from hetload.ragged import Ragged
from hetload.sample_values import check_column, check_field_names, fixed_column, ragged_tensor
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
    for i, sample in enumerate(samples):
        if not isinstance(sample, Mapping):
            raise TypeError(f"collate: sample {i} is a {type(sample).__name__}, expected a dict")
    names = _field_names(samples)
    check_field_names(names)
    shared = get_worker_info() is not None
    # which samples hold each field, for the fields some samples lack
    present = {
        name: flags for name in names if not all(flags := [name in sample for sample in samples])
    }
    first = {name: next(s[name] for s in samples if name in s) for name in names}
    specs = {name: schema.field(name, first[name]) for name in names}
    fields: dict[str, Any] = {}
    # index fields need their target's offsets, so they go last
    for name in sorted(names, key=lambda n: specs[n].kind == "index"):
        spec = specs[name]
        if name in present:
            if spec.kind == "fixed":
                fields[name] = _collate_fixed_partial(name, samples, present[name], shared)
                continue
            column = _filled_column(name, samples, first[name], spec)
        else:
            column = [sample[name] for sample in samples]
        if spec.kind == "ragged":
            fields[name] = _collate_ragged(name, column, shared)
        elif spec.kind == "index":
            fields[name] = _collate_index(name, column, spec, fields, shared)
        elif spec.kind == "fixed":
            fields[name] = _collate_fixed(name, column, shared)
        else:
            fields[name] = column
    return HeteroBatch(
        {name: fields[name] for name in names},
        batch_size=len(samples),
        present={name: _flags(flags, shared) for name, flags in present.items()},
    )


def _flags(flags: list[bool], shared: bool) -> torch.Tensor:
    """bool ``[B]``, in shared memory inside workers (like every other tensor of the batch)."""
    out = _empty((len(flags),), torch.bool, shared)
    out.numpy()[:] = flags
    return out


def _field_names(samples: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every field name of any sample, in order of first appearance."""
    names = dict.fromkeys(samples[0].keys())
    for sample in samples[1:]:
        if sample.keys() != names.keys():
            names.update(dict.fromkeys(sample.keys()))
    return list(names)


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


def _collate_fixed_partial(
    name: str, samples: Sequence[Mapping[str, Any]], flags: list[bool], shared: bool
) -> torch.Tensor:
    """A fixed field some samples lack: the others stacked, absent rows a missing value."""
    column = [sample[name] for sample in samples if name in sample]
    try:
        stacked = _collate_fixed(name, column, shared=False)
    except ValueError as exc:
        raise ValueError(
            f"{exc} (sample numbers count only the {len(column)} samples holding {name!r})"
        ) from None
    out = _empty((len(samples), *stacked.shape[1:]), stacked.dtype, shared)
    out.fill_(missing_value(stacked.dtype))
    out[torch.tensor(flags, dtype=torch.bool)] = stacked
    return out


def _empty(shape: tuple[int, ...], dtype: torch.dtype, shared: bool) -> torch.Tensor:
    """An uninitialised tensor, in shared memory when ``shared`` (inside DataLoader workers)."""
    if not shared:
        return torch.empty(shape, dtype=dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    storage = torch.UntypedStorage._new_shared(max(nbytes, 1))
    return torch.empty((0,), dtype=dtype).set_(storage, 0, shape)


def _offsets_of(lengths: list[int], shared: bool) -> torch.Tensor:
    offsets = _empty((len(lengths) + 1,), torch.int64, shared)
    # a batch's few dozen Python ints: summed in Python, written in one assignment (a numpy
    # cumsum of a list converts it to an array first, several times slower at this size)
    offsets.numpy()[:] = [0, *accumulate(lengths)]
    return offsets


def _ragged_column(name: str, column: list[Any]) -> list[torch.Tensor]:
    # every conversion and refusal of a sample value is in hetload.sample_values
    tensors = [ragged_tensor(name, i, value) for i, value in enumerate(column)]
    check_column(name, tensors)
    return tensors


def _concat(tensors: list[torch.Tensor], shared: bool) -> tuple[torch.Tensor, list[int]]:
    lengths = [t.shape[0] for t in tensors]
    out = _empty((sum(lengths), *tensors[0].shape[1:]), tensors[0].dtype, shared)
    if out.numel():
        torch.cat(tensors, out=out)
    return out, lengths


def _collate_ragged(name: str, column: list[Any], shared: bool) -> Ragged:
    tensors = _ragged_column(name, column)
    values, lengths = _concat(tensors, shared)
    return Ragged(
        values,
        _offsets_of(lengths, shared),
        name=name,
        max_len=max(lengths),
        validate=False,
    )


def _collate_index(
    name: str, column: list[Any], spec: Field, done: dict[str, Any], shared: bool
) -> Ragged:
    target = done.get(spec.index_of)  # type: ignore[arg-type]
    if not isinstance(target, Ragged):
        raise ValueError(
            f"field {name!r} indexes into {spec.index_of!r}, which the samples do not hold "
            "as a ragged field"
        )
    tensors = _ragged_column(name, column)
    if tensors[0].is_floating_point() or tensors[0].is_complex() or tensors[0].dtype == torch.bool:
        raise ValueError(
            f"field {name!r}: an index field must have an integer dtype, got {tensors[0].dtype}"
        )
    # from the host offsets, without a tensor subtraction (collate's fixed cost is per field)
    bases = target.offsets.tolist()
    counts = [hi - lo for lo, hi in pairwise(bases)]
    top = torch.iinfo(tensors[0].dtype).max
    if bases[-1] - 1 > top:
        raise ValueError(
            f"field {name!r}: {tensors[0].dtype} cannot hold indices into the {bases[-1]} packed "
            f"rows of {spec.index_of!r} (at most {top + 1}); store it as a wider integer dtype"
        )
    lengths = [t.shape[0] for t in tensors]
    values = _empty((sum(lengths), *tensors[0].shape[1:]), tensors[0].dtype, shared)
    # one pass per sample writes the re-based copy and checks the range (hetload.ops)
    bad = rebase_index_(tensors, values, bases[:-1], counts)
    if bad >= 0:
        source = tensors[bad].numpy()
        low, high = int(source.min()), int(source.max())
        raise ValueError(
            f"field {name!r}: sample {bad} has index {low if low < 0 else high}, outside "
            f"[0, {counts[bad]}) for its {counts[bad]} rows of {spec.index_of!r}"
        )
    return Ragged(
        values,
        _offsets_of(lengths, shared),
        name=name,
        index_base=target.offsets,
        max_len=max(lengths),
        validate=False,
    )


def _collate_fixed(name: str, column: list[Any], shared: bool) -> torch.Tensor:
    tensors = fixed_column(name, column)
    if isinstance(tensors, torch.Tensor):
        return tensors
    out = _empty((len(tensors), *tensors[0].shape), tensors[0].dtype, shared)
    torch.stack(tensors, out=out)
    return out
