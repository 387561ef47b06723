"""Padded lengths rounded to a few buckets, so compiled code sees few distinct shapes.

A model compiled on padded batches is specialized (or guarded) on ``max_len``. Rounding it to a
multiple of a fixed step keeps the waste small for short items but gives ``max_len / step``
shapes; rounding to powers of two gives ``log2 max_len`` shapes but wastes up to half. The
buckets here take the middle road: a multiple of ``multiple_of``, and of one eighth of the
length's power of two once that is larger. A run therefore sees at most
``8 * log2(max_len / multiple_of) + 8`` distinct lengths (``O(log max_len)``), and a length is
padded by less than 1/8 (12.5 %) beyond ``multiple_of``'s own rounding.
"""

from __future__ import annotations

__all__ = ["bucket_length"]

#: buckets per power of two (so the rounding step is 1/8 of the length's power of two)
PER_OCTAVE = 8


def bucket_length(n: int, multiple_of: int) -> int:
    """The smallest bucket ``>= n``: a multiple of ``multiple_of`` and of
    ``2**(floor(log2 n) - 3)`` (``PER_OCTAVE = 8`` buckets per power of two).

    >>> [bucket_length(n, 8) for n in (0, 1, 8, 9, 64, 65, 100, 1000)]
    [0, 8, 8, 16, 64, 72, 104, 1024]
    """
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be >= 1, got {multiple_of}")
    if n < 0:
        raise ValueError(f"a length must be >= 0, got {n}")
    step = multiple_of
    # a loop, not bit_length: it also runs on a traced SymInt (one guard per octave)
    while step * PER_OCTAVE * 2 <= n:
        step *= 2
    return -(-n // step) * step
