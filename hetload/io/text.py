"""Vectorized helpers for text formats: whitespace tokens per line, numbers in one call."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["NotNumbers", "parse_numbers", "tokens_per_line"]

_SPACE = 32


class NotNumbers(Exception):
    """Some token is not a number numpy can parse, or the count is not the expected one."""


def tokens_per_line(buf: np.ndarray, line_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whitespace-separated tokens of ``buf`` (uint8), counted per line.

    Args:
        buf: the bytes, lines separated by ``\\n``.
        line_starts: int64 ``[L]``, ascending, ``line_starts[0] == 0``.

    Returns:
        ``(token_starts int64 [T], counts int64 [L])``.
    """
    blank = buf <= _SPACE
    first = ~blank
    first[1:] &= blank[:-1]
    token_starts = np.flatnonzero(first)
    cuts = np.append(line_starts, len(buf))
    return token_starts, np.diff(np.searchsorted(token_starts, cuts))


def parse_numbers(buf: bytes | np.ndarray, dtype: type, expected: int) -> np.ndarray:
    """Every whitespace-separated number in ``buf``, in one C call; exactly ``expected`` of them.

    Raises:
        NotNumbers: a token numpy cannot parse, or a different count.
    """
    raw = buf.tobytes() if isinstance(buf, np.ndarray) else buf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(raw, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning) as exc:
            raise NotNumbers(str(exc)) from exc
    if len(values) != expected:
        raise NotNumbers(f"{len(values)} numbers, expected {expected}")
    return values
