"""Line helpers for the OFF and STL text readers that allocate nothing per token."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

__all__ = ["first_token", "token_counts"]

_CHUNK = 1 << 18


def token_counts(buf: np.ndarray, line_starts: np.ndarray) -> np.ndarray:
    """Whitespace-separated tokens of each line, int64 ``[L]``.

    Args:
        buf: uint8, lines separated by ``\\n``, the last one ending in ``\\n``.
        line_starts: int64 ``[L]``, ascending, ``line_starts[0] == 0``.

    One bool a byte and no array per token (a face line ``3 1 2 3`` holds a token every
    2 bytes, which an int64 position each would make 4x the file).
    """
    first = buf > 32
    first[1:] &= buf[:-1] <= 32
    counts = np.empty(len(line_starts), dtype=np.int64)
    # reduceat casts its whole input to int64 first: lines in chunks of ~256 KiB keep that
    # temporary small; every line holds at least its '\n', so no segment is empty
    bounds = np.searchsorted(line_starts, np.arange(0, len(buf), _CHUNK))
    bounds = np.unique(np.append(bounds, len(line_starts)))
    for a, b in pairwise(bounds):
        end = line_starts[b] if b < len(line_starts) else len(buf)
        seg = first[line_starts[a] : end]
        counts[a:b] = np.add.reduceat(seg, line_starts[a:b] - line_starts[a], dtype=np.int64)
    return counts


def first_token(buf: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """From each position in ``starts``, the position of the next byte that is not blank
    (``<= 32``): int64, the same shape. Each position must have one before the buffer ends
    (a non-blank line does). Steps only the positions still on a blank, once per blank byte:
    indentation of a few spaces costs a few passes over the lines, none over the bytes."""
    pos = np.array(starts, dtype=np.int64)
    todo = np.flatnonzero(buf[pos] <= 32)
    while len(todo):
        pos[todo] += 1
        todo = todo[buf[pos[todo]] <= 32]
    return pos
