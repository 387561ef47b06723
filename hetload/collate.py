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
import numbers
import warnings
from collections.abc import Mapping, Sequence
from itertools import accumulate, pairwise
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from hetload.batch import HeteroBatch
from hetload.ops import rebase_index_
from hetload.ragged import Ragged
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
            trailing-shape mismatch, or an index out of range.
    """
    schema = DEFAULT_SCHEMA if schema is None else schema
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


def _as_tensor(name: str, index: int, value: Any) -> torch.Tensor:
    """Wrap an array without copying it (numpy memory is shared with the tensor)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.kind in "USVM":
            raise ValueError(
                f"field {name!r}: sample {index} has numpy dtype {value.dtype}, "
                "which cannot be batched as numbers"
            )
        if not value.flags.writeable:
            # read-only inputs (memory-mapped shards) are only read here; torch warns anyway
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return torch.from_numpy(value)
        try:
            return torch.from_numpy(value)
        except ValueError:  # negative strides
            return torch.from_numpy(np.ascontiguousarray(value))
    raise TypeError(
        f"field {name!r}: sample {index} holds a {type(value).__name__}, "
        "expected a numpy array or a torch tensor"
    )


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
    tensors = [_as_tensor(name, i, value) for i, value in enumerate(column)]
    first = tensors[0]
    if first.dim() == 0:
        raise ValueError(
            f"field {name!r}: sample 0 holds a scalar, but the field is ragged ([N_i, ...]); "
            "declare it 'fixed' in the schema"
        )
    for i, t in enumerate(tensors):
        if t.dtype != first.dtype:
            raise ValueError(
                f"field {name!r}: sample {i} has dtype {t.dtype}, sample 0 has {first.dtype}"
            )
        if t.dim() != first.dim() or t.shape[1:] != first.shape[1:]:
            raise ValueError(
                f"field {name!r}: sample {i} has shape {tuple(t.shape)}, which does not match "
                f"sample 0's trailing shape {tuple(first.shape[1:])} ([N_i, *D] with the same D)"
            )
        if t.device.type != "cpu":
            raise ValueError(
                f"field {name!r}: sample {i} is on {t.device}; collate runs on CPU samples"
            )
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
    first = column[0]
    if isinstance(first, (bool, numbers.Number)) and not isinstance(first, np.generic):
        kinds = {type(v) for v in column}
        if not all(isinstance(v, (bool, numbers.Number)) for v in column):
            bad = next(i for i, v in enumerate(column) if not isinstance(v, numbers.Number))
            raise ValueError(
                f"field {name!r}: sample {bad} holds a {type(column[bad]).__name__}, "
                "sample 0 a number"
            )
        # as default_collate: Python floats become float64, ints int64, bools bool
        if float in kinds or any(isinstance(v, float) for v in column):
            return torch.tensor(column, dtype=torch.float64)
        if kinds == {bool}:
            return torch.tensor(column, dtype=torch.bool)
        return torch.tensor(column, dtype=torch.int64)
    tensors = []
    for i, value in enumerate(column):
        t = torch.as_tensor(value) if isinstance(value, np.generic) else None
        tensors.append(t if t is not None else _as_tensor(name, i, value))
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(
                f"field {name!r}: sample {i} has shape {tuple(t.shape)}, sample 0 has "
                f"{tuple(tensors[0].shape)} (a fixed field must match across samples)"
            )
        if t.dtype != tensors[0].dtype:
            raise ValueError(
                f"field {name!r}: sample {i} has dtype {t.dtype}, sample 0 has {tensors[0].dtype}"
            )
    out = _empty((len(tensors), *tensors[0].shape), tensors[0].dtype, shared)
    torch.stack(tensors, out=out)
    return out
