"""Cheap checks of the packed-layout invariants, shared by every op and structure.

The invariants (the contract of :class:`hetload.Ragged`): ``offsets`` is a 1-D int64 tensor of
``B+1`` entries, starts at 0, is non-decreasing and ends at the number of packed rows. A
violation raises ``ValueError`` naming the field, never an index error from deep inside a kernel.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from hetload.ops import contract
from hetload.ops.traced import assert_offsets, compiling

__all__ = ["check_fill", "check_max_len", "check_offsets", "fill_key", "longest"]

#: integers beyond this lose digits as a double, the raw ops' fill type
_EXACT_DOUBLE = 2**53


def check_offsets(offsets: torch.Tensor, total: int | None, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``offsets`` is valid for ``total`` packed rows.

    ``total=None`` skips the end check (used for offsets of another field). One pass over the
    ``B+1`` integers; a device sync when ``offsets`` lives on a GPU. Under ``torch.compile`` the
    checks become in-graph asserts (:mod:`hetload.ops.traced`, a ``RuntimeError`` instead).
    """
    if not isinstance(offsets, torch.Tensor):
        raise TypeError(f"field {name!r}: offsets must be a torch.Tensor, got {type(offsets)}")
    if offsets.dtype != torch.int64:
        raise ValueError(f"field {name!r}: offsets must be int64, got {offsets.dtype}")
    if offsets.dim() != 1 or offsets.numel() == 0:
        raise ValueError(
            f"field {name!r}: offsets must be 1-D with B+1 >= 1 entries, "
            f"got shape {tuple(offsets.shape)}"
        )
    if compiling():
        # no host read inside a traced graph: the same checks as asserts in the graph
        assert_offsets(offsets, total, name)
        return
    host = offsets if offsets.device.type == "cpu" else offsets.cpu()
    first = int(host[0])
    if first != 0:
        raise ValueError(f"field {name!r}: offsets[0] must be 0, got {first}")
    if host.numel() > 1:
        steps = host[1:] - host[:-1]
        if bool((steps < 0).any()):
            bad = int(torch.nonzero(steps < 0)[0, 0])
            raise ValueError(
                f"field {name!r}: offsets must be non-decreasing, but offsets[{bad + 1}]="
                f"{int(host[bad + 1])} < offsets[{bad}]={int(host[bad])}"
            )
    if total is not None:
        last = int(host[-1])
        if last != total:
            raise ValueError(
                f"field {name!r}: offsets[-1]={last} does not match the {total} packed rows"
            )


def longest(offsets: torch.Tensor) -> int:
    """The largest item length, as a host int (0 when ``B == 0``)."""
    if offsets.numel() <= 1:
        return 0
    host = offsets if offsets.device.type == "cpu" else offsets.cpu()
    return int((host[1:] - host[:-1]).max())


def check_fill(dtype: torch.dtype, fill: Any, name: str) -> tuple[float, int | None]:
    """Check that ``fill`` is stored exactly in ``dtype`` (whole numbers in range for integer
    dtypes, 0 / 1 for bool, no overflow for floats) and split it for the raw ops, whose fill is a
    double: ``(double, None)``, or ``(0.0, exact_int)`` for an integer a double cannot hold
    (``2**53 + 1``), which the caller writes into the padding itself.

    Raises:
        ValueError: naming ``name`` and the reason.
    """
    if isinstance(fill, torch.Tensor) and fill.numel() == 1:
        fill = fill.item()
    if not isinstance(fill, numbers.Real):
        raise ValueError(f"field {name!r}: fill must be a real number, got {fill!r:.60}")
    integer = dtype in contract._INTEGER
    if integer or dtype == torch.bool:
        if isinstance(fill, numbers.Integral):
            whole = int(fill)
        elif math.isfinite(float(fill)) and float(fill).is_integer():
            whole = int(float(fill))
        else:
            whole = None
        low, high = (torch.iinfo(dtype).min, torch.iinfo(dtype).max) if integer else (0, 1)
        if whole is None or not low <= whole <= high:
            raise ValueError(
                f"field {name!r}: fill {fill!r:.60} cannot be stored exactly in "
                f"{contract.dtype_name(dtype)} (whole numbers in [{low}, {high}])"
            )
        if abs(whole) > _EXACT_DOUBLE:
            return 0.0, whole
        return float(whole), None
    if compiling():  # no tensor work while tracing: a float fill is checked by its range alone
        value = float(fill)
        if math.isfinite(value) and abs(value) > torch.finfo(dtype).max:
            raise ValueError(
                f"field {name!r}: fill {fill!r:.60} overflows {contract.dtype_name(dtype)}"
            )
        return value, None
    try:
        value = float(fill)
        contract.fill_value(dtype, value, "fill")
    except (OverflowError, RuntimeError):
        raise ValueError(
            f"field {name!r}: fill {fill!r:.60} overflows {contract.dtype_name(dtype)}"
        ) from None
    return value, None


def fill_key(fill: Any) -> Any:
    """A cache key that tells apart what fills write: ``-0.0`` from ``0.0``, every NaN alike
    (``nan != nan``, so NaN itself would never hit a cache), big ints exactly."""
    if isinstance(fill, torch.Tensor) and fill.numel() == 1:
        fill = fill.item()
    if isinstance(fill, numbers.Integral):
        return int(fill)
    try:
        return float(fill).hex()
    except (TypeError, ValueError, OverflowError):
        return repr(fill)


def check_max_len(max_len: Any, name: str, what: str = "max_len") -> int:
    """``max_len`` (or another count, ``what``) as an int >= 0; bools, fractions, NaN and other
    types are ``ValueError``."""
    if isinstance(max_len, bool) or not isinstance(max_len, numbers.Integral):
        if (
            isinstance(max_len, torch.Tensor)
            and max_len.numel() == 1
            and not (
                max_len.is_floating_point() or max_len.is_complex() or max_len.dtype == torch.bool
            )
        ):
            max_len = int(max_len.item())
        else:
            raise ValueError(f"field {name!r}: {what} must be an integer, got {max_len!r:.60}")
    max_len = int(max_len)
    if max_len < 0:
        raise ValueError(f"field {name!r}: {what} must be >= 0, got {max_len}")
    return max_len
