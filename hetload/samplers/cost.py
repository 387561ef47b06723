"""What fits in one batch: a :class:`Budget` of one or several limits, checked vectorized.

A batch is summarised per limited column ``k`` by three numbers: its sample ``count``, the
largest size ``max_k`` and the total ``sum_k``. Its cost in that column is

=============  ===========================================================================
``"padded"``   ``count * max_k``: the elements of the padded ``[B, max N_i, ...]`` tensor
``"sum"``      ``sum_k``: the rows of the packed ``[sum N_i, ...]`` tensor
callable       ``cost(count, max_k, sum_k)`` on int64 arrays, elementwise (e.g. attention
               memory ``lambda n, m, s: n * m * m``); it must never decrease when any argument
               grows, so that a sub-batch of a batch that fits also fits
=============  ===========================================================================

and the batch fits when every column's cost is at most that column's limit, and the count at
most ``max_batch_size``. Like Lhotse's ``TimeConstraint`` the rule is its own small object, apart
from the sampler that iterates; unlike it, it answers for a whole array of candidate batches in
one numpy call and never admits a batch over the limit.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hetload.guards import shown

__all__ = ["Budget", "CostFn", "as_size_table", "fingerprint"]

#: ``cost(count, max, sum) -> cost``, each an int64 array of the same shape
CostFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
CostSpec = Literal["padded", "sum"] | CostFn
_NAMED = ("padded", "sum")
# rows handled at once where a whole-table int64 temporary would cost tens of bytes per sample
_CHUNK = 1 << 14


def as_size_table(
    sizes: np.ndarray | Sequence[int] | Mapping[str, np.ndarray],
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Sizes as a non-negative integer table ``[N, K]`` and the names of its ``K`` columns.

    ``sizes`` is ``[N]`` (one limit), ``[N, K]`` (several, e.g. vertices and faces) or a dict of
    ``K`` equally long ``[N]`` arrays. A 1-D or 2-D integer array is viewed, not copied, so a
    memory-mapped array stays on disk.
    """
    if isinstance(sizes, Mapping):
        if not sizes:
            raise ValueError("sizes: the dict names no column")
        names = tuple(str(name) for name in sizes)
        columns = [_as_int_array(f"sizes[{name!r}]", sizes[name]) for name in sizes]
        for name, column in zip(names, columns):
            if column.ndim != 1 or column.shape[0] != columns[0].shape[0]:
                raise ValueError(
                    f"sizes[{name!r}]: expected a 1-D array of {columns[0].shape[0]} sizes, "
                    f"got shape {column.shape}"
                )
        return np.stack(columns, axis=1), names
    table = _as_int_array("sizes", sizes)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2 or table.shape[1] == 0:
        raise ValueError(f"sizes: expected shape [N] or [N, K] with K >= 1, got {table.shape}")
    return table, tuple(str(k) for k in range(table.shape[1]))


def _as_int_array(what: str, values) -> np.ndarray:
    try:
        array = np.asarray(values)
    except (OverflowError, ValueError, TypeError) as exc:
        raise ValueError(f"{what}: sizes must be an integer array [N] or [N, K] ({exc})") from None
    if array.size == 0 and array.dtype.kind not in "iu":
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        # floats (NaN included), bools, and Python ints beyond 2**64 (numpy keeps them as objects)
        raise ValueError(
            f"{what}: sizes must be integers (point counts) in [0, 2**63), got dtype {array.dtype}"
        )
    if array.size and array.dtype.kind == "i" and int(array.min()) < 0:
        raise ValueError(f"{what}: sizes must be >= 0, found {int(array.min())}")
    if array.size and int(array.max()) > _MAX_SIZE:
        # costs are int64 sums and products of sizes: far beyond any real count, they overflow
        raise ValueError(f"{what}: sizes must be at most 2**48, found {int(array.max())}")
    if array.size and float(np.max(array.sum(axis=0, dtype=np.float64))) >= _MAX_LIMIT:
        raise ValueError(f"{what}: the sizes add up to 2**62 or more, which int64 costs overflow")
    return array


#: the largest size a sample may have, and the largest budget: int64 costs built from them
#: (sums over a batch, count x largest) stay far from overflowing
_MAX_SIZE = 2**48
_MAX_LIMIT = 2**62


@dataclass(frozen=True)
class Budget:
    """The limits one batch must respect.

    Attributes:
        limits: int64 ``[K]``, the largest cost allowed in each size column.
        cost: ``"padded"``, ``"sum"`` or a callable ``cost(count, max, sum)`` (see module doc).
        max_batch_size: the most samples in one batch, or ``None`` for no count limit.
    """

    limits: np.ndarray
    cost: CostSpec = "padded"
    max_batch_size: int | None = None

    @classmethod
    def build(
        cls,
        max_tokens: int | Sequence[int] | Mapping[str, int],
        columns: Sequence[str],
        cost: CostSpec = "padded",
        max_batch_size: int | None = None,
    ) -> Budget:
        """A budget for the size columns ``columns``: ``max_tokens`` is one limit for every
        column, a sequence with one limit per column, or a dict keyed by column name."""
        if isinstance(max_tokens, Mapping):
            missing = [c for c in columns if c not in max_tokens]
            extra = [k for k in max_tokens if k not in columns]
            if missing or extra:
                raise ValueError(
                    f"max_tokens: keys {sorted(map(str, max_tokens))} must match the size "
                    f"columns {list(columns)}"
                )
            limits = [max_tokens[c] for c in columns]
        elif np.ndim(max_tokens) == 0:
            limits = [max_tokens] * len(columns)
        else:
            limits = list(max_tokens)
            if len(limits) != len(columns):
                raise ValueError(
                    f"max_tokens: {len(limits)} limits for {len(columns)} size columns"
                )
        for limit in limits:
            if (
                isinstance(limit, bool)
                or not isinstance(limit, (numbers.Integral, float))
                or (isinstance(limit, float) and not (math.isfinite(limit) and limit.is_integer()))
                or not 0 < limit <= _MAX_LIMIT
            ):
                raise ValueError(
                    f"max_tokens: limits must be positive integers below 2**62, got {shown(limit)}"
                )
        if not (callable(cost) or cost in _NAMED):
            raise ValueError(f"cost must be one of {_NAMED} or a callable, got {cost!r}")
        if max_batch_size is not None and (
            isinstance(max_batch_size, bool)
            or int(max_batch_size) != max_batch_size
            or max_batch_size < 1
        ):
            raise ValueError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
        return cls(
            np.asarray(limits, dtype=np.int64),
            cost,
            None if max_batch_size is None else int(max_batch_size),
        )

    def cost_of(self, count: np.ndarray, maxes: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """Cost of batches: ``count`` int64 ``[B]``, ``maxes``/``sums`` int64 ``[B, K]``
        -> int64 ``[B, K]``."""
        count = np.asarray(count, dtype=np.int64)[:, None]
        if self.cost == "padded":
            return count * maxes
        if self.cost == "sum":
            return np.asarray(sums, dtype=np.int64)
        return np.broadcast_to(np.asarray(self.cost(count, maxes, sums)), np.shape(maxes)).astype(
            np.int64, copy=False
        )

    def fits(self, count: np.ndarray, maxes: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """bool ``[B]``: which batches respect every limit."""
        ok = (self.cost_of(count, maxes, sums) <= self.limits).all(axis=1)
        if self.max_batch_size is not None:
            ok &= np.asarray(count) <= self.max_batch_size
        return ok

    def oversize(self, table: np.ndarray) -> np.ndarray:
        """bool ``[N]``: samples of the size table ``[N, K]`` that exceed the budget alone."""
        out = np.zeros(table.shape[0], dtype=bool)
        for lo in range(0, table.shape[0], _CHUNK):
            wide = table[lo : lo + _CHUNK].astype(np.int64)
            out[lo : lo + _CHUNK] = ~self.fits(np.ones(wide.shape[0], np.int64), wide, wide)
        return out

    def total_load(self, table: np.ndarray, index: np.ndarray) -> float:
        """Sum over the samples ``index`` of the budget fraction each takes alone: about the
        number of batches they fill."""
        total = 0.0
        for lo in range(0, index.shape[0], _CHUNK):
            wide = table[index[lo : lo + _CHUNK]].astype(np.int64)
            total += float(self.load(np.ones(wide.shape[0], np.int64), wide, wide).sum())
        return total

    def load(self, count: np.ndarray, maxes: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """float64 ``[B]``: each batch's largest cost as a fraction of its limit (1.0 = full)."""
        return (self.cost_of(count, maxes, sums) / self.limits).max(axis=1)

    def describe(self) -> str:
        """A stable text of the budget, for fingerprints."""
        cost = self.cost if isinstance(self.cost, str) else _callable_name(self.cost)
        return f"limits={self.limits.tolist()} cost={cost} max_batch_size={self.max_batch_size}"


def _callable_name(fn: Callable) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', '?')}.{name}"


def fingerprint(table: np.ndarray, *texts: str) -> str:
    """A short hash of a size table and some configuration text."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(str(table.shape).encode())
    # canonical little-endian int64, a chunk at a time: the same sizes in any integer dtype
    # hash alike, and a memory-mapped table is never loaded whole
    for start in range(0, table.shape[0], 1 << 20):
        chunk = np.ascontiguousarray(table[start : start + (1 << 20)], dtype="<i8")
        digest.update(chunk.view(np.uint8).data)
    for text in texts:
        digest.update(b"\0" + text.encode())
    return digest.hexdigest()
