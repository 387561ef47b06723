"""Where a batch's bytes live: one buffer per batch, every field a view of it.

A batch's tensors (every field's values, offsets, fixed rows, presence flags) are carved out of
one ``uint8`` buffer, each at an :data:`ALIGN`-byte boundary, so that a batch is one allocation:
inside a DataLoader worker one shared-memory segment (one descriptor to send), elsewhere one
``torch.empty``.

Contract used by ``hetload.collate`` and the batch-level shard reads:

- :func:`batch_buffer(nbytes)` gives ``uint8 [nbytes]`` (uninitialised);
- :func:`aligned(n)` rounds a byte count up to :data:`ALIGN`;
- :func:`carve(buffer, offset, shape, dtype)` is the view of ``shape``/``dtype`` at byte
  ``offset`` of ``buffer`` (``offset`` a multiple of :data:`ALIGN`).
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import get_worker_info

__all__ = ["ALIGN", "aligned", "batch_buffer", "carve"]

#: byte alignment of every tensor carved from a batch buffer (a cache line; enough for any dtype)
ALIGN = 64


def aligned(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`ALIGN`."""
    return -(-int(n) // ALIGN) * ALIGN


def batch_buffer(nbytes: int) -> torch.Tensor:
    """``uint8 [nbytes]``, uninitialised: in shared memory inside a DataLoader worker (sending
    the batch to the main process then moves one descriptor, not the bytes)."""
    nbytes = max(int(nbytes), 1)
    if get_worker_info() is None:
        return torch.empty(nbytes, dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(nbytes)
    return torch.empty((0,), dtype=torch.uint8).set_(storage, 0, (nbytes,))


def carve(
    buffer: torch.Tensor, offset: int, shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """The ``dtype`` view of ``shape`` at byte ``offset`` of ``buffer`` (no copy)."""
    nbytes = math.prod(shape) * dtype.itemsize
    if offset % ALIGN or offset + nbytes > buffer.numel():
        raise ValueError(
            f"carve: {nbytes} bytes at offset {offset} do not fit an aligned slot of a "
            f"{buffer.numel()}-byte batch buffer"
        )
    return buffer[offset : offset + nbytes].view(dtype).view(shape)
