"""Which slot of a pool of reused buffers to lend for a request: shared by a worker's ring of
shared-memory segments (:mod:`hetload.arena`) and the process's pool of private mappings
(:mod:`hetload.local_pool`). A slot has ``map`` (``None`` while unused), ``capacity`` (bytes)
and ``free()`` (no tensor of the batch it carried last is alive)."""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef

__all__ = ["GROWTH", "Lender", "choose_slot"]

#: a regrown slot takes at least this factor more, so batch-to-batch size jitter settles fast
GROWTH = 1.25


def choose_slot(slots: list[Any], nbytes: int, *, unused_first: bool) -> tuple[Any, int] | None:
    """``(slot, capacity)``: the smallest free slot that fits (``capacity`` its own: lend as it
    is), else an unused slot (``capacity`` = ``nbytes``) or the largest free one to regrow to at
    least :data:`GROWTH` times its size, in the order ``unused_first`` says; ``None`` when every
    slot is busy. One pass, and a slot that could not beat the best fit found so far is not even
    tested for being free (this runs for every batch)."""
    fit = unused = largest = None
    for slot in slots:
        if slot.map is None:  # free, and fits nothing (nbytes >= 1)
            unused = unused or slot
        elif fit is not None and slot.capacity >= fit.capacity:
            continue
        elif slot.free():
            if slot.capacity >= nbytes:
                fit = slot
            elif largest is None or slot.capacity > largest.capacity:
                largest = slot
    if fit is not None:
        return fit, fit.capacity
    regrown = None if largest is None else (largest, max(nbytes, int(largest.capacity * GROWTH)))
    new = None if unused is None else (unused, nbytes)
    first, second = (new, regrown) if unused_first else (regrown, new)
    return first or second


class Lender:
    """What lending a slot is, for both pools: under the pool's lock, :meth:`_pick` a slot (made
    or regrown as needed), view ``nbytes`` of it (:meth:`_view`) and remember that batch's
    storage weakly, so the slot is free again once no tensor of the batch is alive. Counts
    ``lends`` and ``fallbacks`` (every slot busy: the caller allocates plainly, never waits)."""

    def __init__(self, slots: list[Any]) -> None:
        self.slots = slots
        self.lock = threading.Lock()
        self.lends = self.created = self.fallbacks = 0

    def lend(self, nbytes: int) -> torch.Tensor | None:
        """``uint8 [nbytes]`` over a free slot, or ``None`` when every slot is busy."""
        with self.lock:
            slot = self._pick(nbytes)
            if slot is None:
                self.fallbacks += 1
                return None
            self.lends += 1
            buffer = self._view(slot, nbytes)
            slot.live = StorageWeakRef(buffer.untyped_storage())
            self._lent(slot, buffer)
            return buffer

    def _pick(self, nbytes: int) -> Any:
        raise NotImplementedError

    def _view(self, slot: Any, nbytes: int) -> torch.Tensor:
        raise NotImplementedError

    def _lent(self, slot: Any, buffer: torch.Tensor) -> None:
        """What a pool records of a lend besides the storage (nothing by default)."""
