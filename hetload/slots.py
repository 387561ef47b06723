"""Which slot of a pool of reused buffers to lend for a request: shared by a worker's ring of
shared-memory segments (:mod:`hetload.arena`) and the process's pool of private mappings
(:mod:`hetload.local_pool`). A slot has ``map`` (``None`` while unused), ``capacity`` (bytes)
and ``free()`` (no tensor of the batch it carried last is alive)."""

from __future__ import annotations

from typing import Any

__all__ = ["GROWTH", "choose_slot"]

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
