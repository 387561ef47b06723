"""The one place a sample's value becomes a tensor to batch, or is refused with an error that
names the field and the sample.

``collate`` (every ragged, index and fixed field) and ``Ragged.from_list`` call these functions;
nothing else converts sample values. What is refused, and why:

==============================  ================================================================
a non-numeric numpy dtype       object, str / bytes, void (structured), datetime: not numbers
a masked numpy array            its mask would be dropped silently
a sparse, nested or quantized   only dense strided tensors are packed
tensor
a tensor off the CPU            collate runs in DataLoader workers, on CPU samples
a tensor that requires grad     collate copies into one new buffer, which cannot carry the graph
                                (``Ragged.from_list`` keeps it: its ``torch.cat`` is
                                differentiable)
a Python list, str, None ...    not an array: the dtype would be a guess (ragged / index fields)
a scalar in a ragged field      ragged values are ``[N_i, *D]``
an int beyond int64             does not fit a fixed field (``OverflowError`` otherwise)
==============================  ================================================================

Accepted as they are, or with a lossless conversion: big-endian numpy arrays (a native-order
copy, same values), read-only arrays (wrapped, only read), negative strides (a contiguous copy),
unsigned dtypes (torch has them), every float, int, bool and complex dtype.

The errors are :class:`SampleValueError`, a ``ValueError`` that is also a ``TypeError`` (what
these cases raised before, so existing ``except TypeError`` code keeps working).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import torch

__all__ = [
    "SampleValueError",
    "check_column",
    "check_field_names",
    "fixed_column",
    "ragged_column",
    "ragged_tensor",
]

#: integers a double cannot hold exactly: a fixed column mixing them with floats would round them
_EXACT_DOUBLE = 2**53


class SampleValueError(ValueError, TypeError):
    """A sample value that cannot be batched; the message names the field and the sample."""


def _where(name: str, index: int, item: str) -> str:
    return f"field {name!r}: {item} {index}"


def _describe(value: Any) -> str:
    return type(value).__name__


def check_field_names(names: Sequence[Any]) -> None:
    """Field names are non-empty strings (they become attributes, shard member names, keys)."""
    for name in names:
        if not isinstance(name, str) or not name:
            raise SampleValueError(
                f"field names must be non-empty strings; sample 0 has the key {name!r:.60}"
            )


def to_tensor(
    name: str, index: int, value: Any, *, allow_grad: bool = False, item: str = "sample"
) -> torch.Tensor:
    """``value`` (a numpy array or a tensor, any shape) as a CPU dense tensor sharing its memory
    where it can; refuses what the module docstring lists."""
    where = _where(name, index, item)
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        if isinstance(value, np.ma.MaskedArray):
            raise SampleValueError(
                f"{where} is a masked array; its mask would be lost: fill it "
                "(np.ma.filled) or keep the mask as a field of its own"
            )
        if value.dtype.hasobject or value.dtype.kind in "USVMm":
            raise SampleValueError(
                f"{where} has numpy dtype {value.dtype}, which cannot be batched as numbers"
            )
        if not value.dtype.isnative:
            value = value.astype(value.dtype.newbyteorder("="))  # same values, native bytes
        if any(s < 0 for s in value.strides):
            # a copy, always: ascontiguousarray keeps an array numpy flags contiguous although
            # a stride is negative (one row reversed, a[::-1] of length 1), which torch refuses
            value = value.copy()
        if not value.flags.writeable:
            # read-only inputs (memory-mapped shards) are only read here; torch warns anyway
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return torch.from_numpy(value)
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        if value.is_nested or value.layout != torch.strided or value.is_quantized:
            layout = "nested" if value.is_nested else str(value.layout)
            raise SampleValueError(
                f"{where} is a {layout} tensor; only dense (strided) tensors are batched"
            )
        if value.device.type != "cpu":
            raise SampleValueError(f"{where} is on {value.device}; collate runs on CPU samples")
        if value.requires_grad and not allow_grad:
            raise SampleValueError(
                f"{where} requires grad; batching copies it into a new buffer that cannot carry "
                "the autograd graph: pass value.detach()"
            )
        return value
    raise SampleValueError(
        f"{where} holds a {_describe(value)}, expected a numpy array or a torch tensor"
    )


def ragged_tensor(
    name: str, index: int, value: Any, *, allow_grad: bool = False, item: str = "sample"
) -> torch.Tensor:
    """``value`` as ``[N_i, *D]`` rows (see :func:`to_tensor`); a 0-d value is refused."""
    t = to_tensor(name, index, value, allow_grad=allow_grad, item=item)
    if t.dim() == 0:
        raise SampleValueError(
            f"{_where(name, index, item)} holds a scalar, but the field is ragged ([N_i, ...]); "
            "declare it 'fixed' in the schema"
        )
    return t


def check_column(name: str, tensors: Sequence[torch.Tensor], *, item: str = "sample") -> None:
    """Every tensor of a ragged column has the first one's dtype and trailing shape."""
    if not tensors:
        return
    first = tensors[0]
    for i, t in enumerate(tensors):
        if t.dtype != first.dtype:
            raise SampleValueError(
                f"{_where(name, i, item)} has dtype {t.dtype}, {item} 0 has {first.dtype}"
            )
        if t.dim() != first.dim() or t.shape[1:] != first.shape[1:]:
            raise SampleValueError(
                f"{_where(name, i, item)} has shape {tuple(t.shape)}, which does not match "
                f"{item} 0's trailing shape {tuple(first.shape[1:])} ([N_i, *D] with the same D)"
            )


def ragged_column(
    name: str, column: Sequence[Any], *, item: str = "sample"
) -> tuple[list[torch.Tensor], list[int]]:
    """A ragged or index field's values as CPU tensors ``[N_i, *D]`` of one dtype and one
    trailing shape ``D`` (numpy arrays wrapped, not copied), and their lengths ``N_i``; or
    :class:`SampleValueError` naming the field and the first item that :func:`ragged_tensor` or
    :func:`check_column` refuses.

    The usual column (every item a plain dense CPU tensor, or every item a plain numpy array of
    one native numeric dtype) is checked in one pass over a few attributes (this is collate's
    fixed cost per batch); any other column, and any column that fails that pass, is checked
    item by item, which raises the error (so a message never depends on which path ran).
    """
    if column:
        kind = type(column[0])
        if kind is torch.Tensor:
            fast = _plain_tensors(column)
        elif kind is np.ndarray:
            fast = _plain_arrays(column)
        else:
            fast = None
        if fast is not None:
            return fast
    tensors = _ragged_column_each(name, column, item=item)
    return tensors, [t.shape[0] for t in tensors]


def _ragged_column_each(
    name: str, column: Sequence[Any], *, item: str = "sample"
) -> list[torch.Tensor]:
    """:func:`ragged_column` item by item: the reference the one-pass checks must agree with."""
    tensors = [ragged_tensor(name, i, value, item=item) for i, value in enumerate(column)]
    check_column(name, tensors, item=item)
    return tensors


# What the item-by-item path accepts as it is, as one tuple per item: a column passes when all
# its items give the same tuple, that tuple is an accepted one, and the shapes agree.
_TENSOR_KEY = attrgetter("dtype", "layout", "is_cpu", "requires_grad", "is_nested")
_SHAPE = attrgetter("shape")
_STRIDES = attrgetter("strides")
_WRITEABLE = attrgetter("flags.writeable")
# numpy dtypes torch.from_numpy wraps as they are (native byte order: a dtype of the other order
# is a different, unequal dtype, so it takes the path that converts it)
_WRAPPED_DTYPES = frozenset(
    np.dtype(t)
    for t in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    )
)  # fmt: skip


def _lengths(shapes: list[Any]) -> list[int] | None:
    """Each shape's first dim, when every shape has the same number (>= 1) of dims and the
    same dims after the first; else ``None``."""
    if len(set(map(len, shapes))) != 1 or not shapes[0]:
        return None
    lengths, *trailing = zip(*shapes)  # one tuple per dim: a C-level pass, no slicing per item
    if any(len(set(dim)) != 1 for dim in trailing):
        return None
    return list(lengths)


def _plain_tensors(column: Sequence[Any]) -> tuple[list[torch.Tensor], list[int]] | None:
    """``column`` and its lengths when every item is a dense CPU ``torch.Tensor`` (not a
    subclass) of one non-quantized dtype, without grad, ``[N_i, *D]`` with one ``D``; else
    ``None``."""
    if set(map(type, column)) != {torch.Tensor}:
        return None
    keys = set(map(_TENSOR_KEY, column))
    if len(keys) != 1:
        return None
    _, layout, cpu, grad, nested = keys.pop()
    if layout is not torch.strided or not cpu or grad or nested:
        return None
    if column[0].is_quantized:
        return None
    lengths = _lengths(list(map(_SHAPE, column)))
    return None if lengths is None else (list(column), lengths)


def _plain_arrays(column: Sequence[Any]) -> tuple[list[torch.Tensor], list[int]] | None:
    """Every item wrapped by ``torch.from_numpy``, and the lengths, when each is a plain
    ``np.ndarray`` (not masked, not a subclass) of one native numeric dtype, without a negative
    stride, ``[N_i, *D]`` with one ``D``; else ``None``."""
    if set(map(type, column)) != {np.ndarray}:
        return None
    dtypes = {a.dtype for a in column}
    if len(dtypes) != 1 or dtypes.pop() not in _WRAPPED_DTYPES:
        return None
    lengths = _lengths(list(map(_SHAPE, column)))
    if lengths is None or min(map(min, map(_STRIDES, column))) < 0:  # every item has a dim
        return None
    if all(map(_WRITEABLE, column)):
        return list(map(torch.from_numpy, column)), lengths
    # read-only inputs (memory-mapped shards) are only read here; torch warns anyway
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return list(map(torch.from_numpy, column)), lengths


def fixed_column(name: str, column: Sequence[Any]) -> torch.Tensor | list[torch.Tensor]:
    """A fixed field's values: Python numbers become one tensor (as ``default_collate``: floats
    float64, ints int64, bools bool); arrays, numpy scalars and tensors a list of same-shape,
    same-dtype tensors to stack."""
    first = column[0]
    if isinstance(first, (bool, numbers.Number)) and not isinstance(first, np.generic):
        for i, v in enumerate(column):
            if not isinstance(v, (bool, numbers.Real)) or isinstance(v, np.generic):
                raise SampleValueError(
                    f"{_where(name, i, 'sample')} holds a {_describe(v)}, sample 0 a number"
                )
        if any(isinstance(v, float) for v in column):
            big = next((v for v in column if isinstance(v, int) and abs(v) > _EXACT_DOUBLE), None)
            if big is not None:
                raise SampleValueError(
                    f"field {name!r}: the integer {big} would lose digits in a float64 column "
                    "(other samples hold floats); store every sample's value as an int"
                )
            return torch.tensor([float(v) for v in column], dtype=torch.float64)
        if all(isinstance(v, bool) for v in column):
            return torch.tensor(column, dtype=torch.bool)
        for i, v in enumerate(column):
            if not -(2**63) <= int(v) < 2**63:
                raise SampleValueError(
                    f"{_where(name, i, 'sample')} holds {int(v)}, beyond int64 (a fixed field)"
                )
        return torch.tensor([int(v) for v in column], dtype=torch.int64)
    tensors = [to_tensor(name, i, value) for i, value in enumerate(column)]
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise SampleValueError(
                f"{_where(name, i, 'sample')} has shape {tuple(t.shape)}, sample 0 has "
                f"{tuple(tensors[0].shape)} (a fixed field must match across samples)"
            )
        if t.dtype != tensors[0].dtype:
            raise SampleValueError(
                f"{_where(name, i, 'sample')} has dtype {t.dtype}, sample 0 has {tensors[0].dtype}"
            )
    return tensors
