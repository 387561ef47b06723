"""Vectorized helpers for text formats: whitespace tokens per line, numbers in one call."""

from __future__ import annotations

import io
import warnings

import numpy as np

__all__ = ["NotNumbers", "parse_lines", "parse_numbers", "parse_table", "tokens_per_line"]

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


def parse_numbers(buf: bytes | np.ndarray, dtype: type, expected: int | None) -> np.ndarray:
    """Every whitespace-separated number in ``buf``, in one C call; exactly ``expected`` of them
    (any count for ``None``).

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
    if expected is not None and len(values) != expected:
        raise NotNumbers(f"{len(values)} numbers, expected {expected}")
    return values


def parse_table(region: bytes, dtype: type, n_lines: int) -> np.ndarray:
    """``n_lines`` lines of the same number of numbers each: ``[n_lines, k]`` of ``dtype``.

    numpy's C ``loadtxt`` parser checks that every line has the same count as it goes.

    Raises:
        NotNumbers: a token is not a number, or the lines differ in count.
    """
    with warnings.catch_warnings():
        # blank lines only ('vn' with no numbers): loadtxt warns "input contained no data" before
        # returning nothing; the caller's own check names the line instead
        warnings.simplefilter("error")
        try:
            table = np.loadtxt(io.BytesIO(region), dtype=dtype, ndmin=2, comments=None)
        except (ValueError, UserWarning) as exc:
            raise NotNumbers(str(exc)) from exc
    if table.shape[0] != n_lines:
        raise NotNumbers(f"{table.shape[0]} lines, expected {n_lines}")
    return table


def parse_lines(
    region: bytes, dtype: type, n_lines: int, sentinel: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``n_lines`` lines of numbers at once and learn how many each line holds.

    Each ``\\n`` becomes a ``sentinel`` token (a value the caller knows cannot occur, such as
    ``0`` for OBJ indices, or ``nan``), so one ``np.fromstring`` call yields the numbers and, from
    the sentinels' positions, the line structure.

    Args:
        region: the lines, each ending with ``\\n``.

    Returns:
        ``(values, starts, counts)``: ``values`` holds the numbers with a sentinel after each
        line; line ``i``'s numbers are ``values[starts[i] : starts[i] + counts[i]]``.

    Raises:
        NotNumbers: a token is not a number, or the sentinels do not mark exactly ``n_lines``
            (also when the sentinel value occurs in the data: the caller falls back).
    """
    values = parse_numbers(region.replace(b"\n", b" " + sentinel + b"\n"), dtype, None)
    marker = float(sentinel)
    ends = np.flatnonzero(np.isnan(values) if marker != marker else values == marker)
    if len(ends) != n_lines:
        raise NotNumbers(f"{len(ends)} line ends, expected {n_lines}")
    counts = np.diff(ends, prepend=-1) - 1
    return values, ends - counts, counts
