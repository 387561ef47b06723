"""A batch's rows of the index, gathered in one step (see :mod:`hetload.data.batch_read`).

A batch read needs, per sample, a dozen index columns: its byte range and shard, each
member's offset and size, each array's rows, its key's place in the key column. Gathered one
column at a time that is two numpy calls per column, each several microseconds right after a
read has streamed a batch through the CPU's caches. So the columns are laid side by side once
per dataset (``int64 [N, K]``, while that takes at most :data:`STACK_MAX` bytes) and a batch
takes its rows with one gather; a larger index is gathered column by column.
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import numpy as np

from hetload.shards.columns import KeyColumn

__all__ = ["STACK_MAX", "BatchIndex", "gather"]

#: the most bytes the side-by-side columns of one dataset may take
STACK_MAX = 32 << 20
# per dataset (weakly: the cache goes with it, and never travels in its pickled state)
_LAYOUTS: weakref.WeakKeyDictionary[Any, _Columns] = weakref.WeakKeyDictionary()


class BatchIndex(NamedTuple):
    """One batch's index rows, per sample (lists of ``B``): its bytes ``[start, end)`` in
    shard ``shard``; per member suffix (``[S][B]``, in ``ds._suffixes`` order) the data
    ``offset`` (-1: absent) and ``size``; per array field its ``rows``; its key's
    ``[lo, hi)`` in the key column's blob (``None`` where the keys are not a
    :class:`~hetload.shards.columns.KeyColumn`)."""

    start: list[int]
    end: list[int]
    shard: list[int]
    offset: list[list[int]]
    size: list[list[int]]
    rows: dict[str, list[int]]
    key_lo: list[int] | None
    key_hi: list[int] | None


class _Columns:
    """A dataset's index columns in :class:`BatchIndex` order, stacked where small enough."""

    def __init__(self, ds: Any) -> None:
        suffixes = list(ds._suffixes)
        self.count = len(suffixes)
        self.fields = [suffix[:-4] for suffix in suffixes if suffix[-4:] == ".npy"]
        columns = [ds._start, ds._end, ds._shard_of]
        columns += [ds._offset[suffix] for suffix in suffixes]
        columns += [ds._size[suffix] for suffix in suffixes]
        columns += [ds.field_sizes[name] for name in self.fields]
        self.keys = isinstance(ds._keys, KeyColumn)
        if self.keys:
            columns += [ds._keys.offsets[:-1], ds._keys.offsets[1:]]
        self.columns = columns
        size = len(columns) * 8 * len(ds._start)
        self.stacked = np.stack(columns, axis=1).astype(np.int64) if size <= STACK_MAX else None


def gather(ds: Any, positions: np.ndarray) -> BatchIndex:
    """The index rows of samples ``positions`` (``int64 [B]``) of ``ds`` (a ``ShardDataset``)."""
    layout = _LAYOUTS.get(ds)
    if layout is None:
        layout = _LAYOUTS[ds] = _Columns(ds)
    if layout.stacked is not None:
        rows = layout.stacked[positions].T.tolist()
    else:
        rows = [column[positions].tolist() for column in layout.columns]
    s, f = layout.count, len(layout.fields)
    return BatchIndex(
        rows[0],
        rows[1],
        rows[2],
        rows[3 : 3 + s],
        rows[3 + s : 3 + 2 * s],
        dict(zip(layout.fields, rows[3 + 2 * s : 3 + 2 * s + f], strict=True)),
        rows[-2] if layout.keys else None,
        rows[-1] if layout.keys else None,
    )
