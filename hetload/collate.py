"""``collate``: a drop-in ``collate_fn`` that builds a :class:`~hetload.HeteroBatch`.

Copies, counted (DESIGN: counts of copies are part of the design):

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
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from hetload.batch import HeteroBatch
from hetload.ops import rebase_index_
from hetload.ragged import Ragged
from hetload.sample_values import check_column, check_field_names, fixed_column, ragged_tensor
from hetload.schema import DEFAULT_SCHEMA, Field, Schema

__all__ = ["collate"]


def collate(samples: Sequence[Mapping[str, Any]], schema: Schema | None = None) -> HeteroBatch:
    """Batch ``B`` sample dicts into a :class:`~hetload.HeteroBatch`.

    Args:
        samples: dicts from field name to a numpy array / tensor (``[N_i, *D]`` for ragged
            fields), a number, or any other object (kept as metadata). Every sample must have the
            same field names. ``None`` entries are samples a dataset dropped under
            ``on_error="skip"`` (it recorded why): they are left out of the batch, and a batch
            whose every sample was dropped is an empty ``HeteroBatch`` (``len(batch) == 0``).
        schema: how each field batches; ``None`` uses :data:`~hetload.schema.DEFAULT_SCHEMA`.

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
    names = list(samples[0].keys())
    check_field_names(names)
    _check_same_fields(samples, names)
    shared = get_worker_info() is not None

    specs = {name: schema.field(name, samples[0][name]) for name in names}
    fields: dict[str, Any] = {}
    # index fields need their target's offsets, so they go last
    for name in sorted(names, key=lambda n: specs[n].kind == "index"):
        spec = specs[name]
        column = [sample[name] for sample in samples]
        if spec.kind == "ragged":
            fields[name] = _collate_ragged(name, column, shared)
        elif spec.kind == "index":
            fields[name] = _collate_index(name, column, spec, fields, shared)
        elif spec.kind == "fixed":
            fields[name] = _collate_fixed(name, column, shared)
        else:
            fields[name] = column
    return HeteroBatch({name: fields[name] for name in names}, batch_size=len(samples))


def _check_same_fields(samples: Sequence[Mapping[str, Any]], names: list[str]) -> None:
    expected = set(names)
    for i, sample in enumerate(samples[1:], start=1):
        if sample.keys() != expected:
            missing = sorted(expected - set(sample.keys()))
            extra = sorted(set(sample.keys()) - expected)
            if missing:
                raise ValueError(
                    f"field {missing[0]!r} is missing from sample {i} (present in sample 0)"
                )
            raise ValueError(f"field {extra[0]!r} is in sample {i} but not in sample 0")


def _empty(shape: tuple[int, ...], dtype: torch.dtype, shared: bool) -> torch.Tensor:
    """An uninitialised tensor, in shared memory when ``shared`` (inside DataLoader workers)."""
    if not shared:
        return torch.empty(shape, dtype=dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    storage = torch.UntypedStorage._new_shared(max(nbytes, 1))
    return torch.empty((0,), dtype=dtype).set_(storage, 0, shape)


def _offsets_of(lengths: list[int], shared: bool) -> torch.Tensor:
    offsets = _empty((len(lengths) + 1,), torch.int64, shared)
    offsets.numpy()[0] = 0
    np.cumsum(lengths, out=offsets.numpy()[1:])
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
    counts = target.lengths.tolist()
    bases = target.offsets.tolist()
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
