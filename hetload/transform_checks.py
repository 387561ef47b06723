"""Checks of transform parameters (in constructors, so a config that builds a transform fails
when it is loaded) and the checked casts of :class:`hetload.transforms.ToDtype`. Every error is a
``ValueError`` naming the transform and the parameter, or the field."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from hetload.schema import Schema

__all__ = ["cast", "count", "field_name", "numeric_dtype", "real", "schema_arg"]


def real(
    who: str,
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    low_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """``value`` as a float, refusing non-numbers, bools, NaN, infinities (unless ``allow_inf``)
    and values below ``low`` (or equal to it when ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{who}({name}=...) must be a number, got {value!r:.60}")
    out = float(value)
    if math.isnan(out) or (math.isinf(out) and not allow_inf):
        raise ValueError(f"{who}({name}=...) must be finite, got {out}")
    if out < low or (low_open and out == low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{who}({name}=...) must be {bound}, got {out}")
    return out


def count(who: str, name: str, value: Any) -> int:
    """``value`` as an int >= 1, refusing bools, fractions and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{who}({name}=...) must be an integer, got {value!r:.60}")
    if int(value) < 1:
        raise ValueError(f"{who} needs {name} >= 1, got {int(value)}")
    return int(value)


def field_name(who: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{who}(field=...) must be a field name, got {value!r:.60}")
    return value


def schema_arg(who: str, value: Any) -> Schema | None:
    if value is not None and not isinstance(value, Schema):
        raise ValueError(f"{who}(schema=...) must be a hetload Schema, got {type(value).__name__}")
    return value


def numeric_dtype(what: str, value: Any) -> np.dtype:
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise ValueError(f"ToDtype({what}=...): {value!r:.60} is not a dtype") from None
    if dtype.kind not in "biuf":
        raise ValueError(f"ToDtype({what}=...): {dtype} is not a bool, integer or float dtype")
    return dtype


def cast(name: str, value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``value`` as ``dtype``, refusing casts that change values beyond float rounding."""
    if value.dtype.kind not in "biuf":
        raise ValueError(f"ToDtype: field {name!r} has dtype {value.dtype}, not numbers")
    if dtype.kind in "iu" and value.size:
        info = np.iinfo(dtype)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"ToDtype: field {name!r} holds NaN or inf, which {dtype} cannot")
        low, high = value.min(), value.max()
        if low < info.min or high > info.max:
            raise ValueError(
                f"ToDtype: field {name!r} holds {low if low < info.min else high}, outside "
                f"{dtype}'s range [{info.min}, {info.max}]"
            )
    with np.errstate(over="ignore", invalid="ignore"):
        out = value.astype(dtype)
    if dtype.kind == "f" and value.dtype.kind in "fiu" and value.size:
        grew = ~np.isfinite(out) & np.isfinite(value)
        if grew.any():
            raise ValueError(
                f"ToDtype: field {name!r} holds {value[grew].flat[0]}, beyond {dtype}'s range"
            )
    return out
