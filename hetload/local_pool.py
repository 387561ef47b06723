"""Reused batch buffers outside DataLoader workers: a large batch does not fault its memory in
anew for every batch.

Why: outside a worker, a batch buffer (:func:`hetload.arena.batch_buffer`) used to be a
``torch.empty``. glibc serves an allocation above its mmap threshold (which grows to at most 32 MiB)
with a fresh ``mmap`` and unmaps it on free, so every such batch faulted in each of its pages, and
below that the heap's trimming still faulted hundreds of pages per batch. Measured on the 2-core
VM (BENCHMARKS.md): ``collate`` of B = 32 meshes, 41 MB, took 10,100 page faults and 5.7x the
memcpy floor per batch; 62 MB, 15,200 faults and 3.2x.

What: each process keeps a few anonymous private mappings (:data:`POOL_SLOTS`). A mapping is lent
to one batch at a time, as the ``torch.frombuffer`` view the batch's tensors are carved from, and
lent again once no tensor of that batch is alive (a weak reference to its storage). In steady
state a batch reuses memory that is already faulted in. The slot choice: the smallest free
mapping that fits, else the largest free one regrown by at least 1.25x, else a new one (so the
pool holds more mappings only while more batches are alive at once). A request below
:data:`POOL_MIN` bytes stays a ``torch.empty`` (the heap reuses those without faults). When every
slot is busy (the user holds that many batches) the batch gets a plain ``torch.empty`` buffer: the
pool never waits.

Memory: up to :data:`POOL_SLOTS` mappings, each the size of the largest batch it carried, stay
mapped after their batches are gone (as a caching allocator keeps memory); a slot is only made
when every other one is busy, so the pool holds at most what was alive at once.
:func:`release` unmaps the free ones. ``HETLOAD_POOL=0`` turns the pool off,
``HETLOAD_POOL_SLOTS`` sets the slots (default 8). A forked child starts with an empty pool (the
parent's mappings are private copies there, never shared).
"""

from __future__ import annotations

import mmap
import os
import threading

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from hetload.slots import Lender, choose_slot

__all__ = ["POOL_MIN", "POOL_SLOTS", "holds", "lend", "pool_stats", "release"]

#: requests of fewer bytes are a plain ``torch.empty``
POOL_MIN = 1 << 20
#: most mappings a process keeps (``HETLOAD_POOL_SLOTS``)
POOL_SLOTS = 8
# private anonymous mappings (POSIX); without them the pool stays off
_FLAGS = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
_MAPPABLE = hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS")


class _Slot:
    __slots__ = ("address", "capacity", "live", "map")

    def __init__(self) -> None:
        self.map: mmap.mmap | None = None
        self.capacity = 0
        self.address = 0  # of the mapping's first byte, once lent
        self.live: StorageWeakRef | None = None  # the storage of the batch lent last

    def free(self) -> bool:
        return self.live is None or self.live.expired()


class _Pool(Lender):
    def __init__(self, slots: int) -> None:
        super().__init__([_Slot() for _ in range(slots)])  # ThreadedLoader lends from threads

    def _view(self, slot: _Slot, nbytes: int) -> torch.Tensor:
        return torch.frombuffer(slot.map, dtype=torch.uint8, count=nbytes)

    def _lent(self, slot: _Slot, buffer: torch.Tensor) -> None:
        slot.address = buffer.data_ptr()

    def _pick(self, nbytes: int) -> _Slot | None:
        # a free mapping regrown before a new one: the pool holds more mappings only while
        # more batches are alive at once, not because batch sizes vary
        chosen = choose_slot(self.slots, nbytes, unused_first=False)
        if chosen is None:
            return None
        slot, capacity = chosen
        if slot.map is None or capacity > slot.capacity:
            capacity = -(-capacity // mmap.PAGESIZE) * mmap.PAGESIZE
            # the new mapping first: a failed mmap leaves the slot as it was
            new = mmap.mmap(-1, capacity, flags=_FLAGS, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            # no tensor views the old mapping (the slot is free), so dropping it unmaps it
            slot.map, slot.capacity, slot.live, slot.address = new, capacity, None, 0
            self.created += 1
        return slot

    def release(self) -> int:
        with self.lock:
            freed = 0
            for slot in self.slots:
                if slot.map is not None and slot.free():
                    freed += slot.capacity
                    slot.map, slot.capacity, slot.live, slot.address = None, 0, None, 0
            return freed


class _State:
    made = False  # the pool was set up in this process (it may be off: pool None)
    pool: _Pool | None = None


_state = _State()
_state_lock = threading.Lock()


def _forked() -> None:
    """A forked child starts without a pool (the parent's mappings are private copies there),
    and with a lock no thread of the parent can hold."""
    global _state, _state_lock
    _state, _state_lock = _State(), threading.Lock()


os.register_at_fork(after_in_child=_forked)


def _pool() -> _Pool | None:
    if not _state.made:  # first use (the knobs are read then)
        with _state_lock:
            if not _state.made:
                slots = _env_slots()
                on = os.environ.get("HETLOAD_POOL", "1") != "0" and slots > 0 and _MAPPABLE
                _state.pool = _Pool(slots) if on else None
                _state.made = True
    return _state.pool


def _env_slots() -> int:
    raw = os.environ.get("HETLOAD_POOL_SLOTS", "").strip()
    if not raw:
        return POOL_SLOTS
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"HETLOAD_POOL_SLOTS must be an integer (buffers kept per process), got {raw!r}"
        ) from None


def lend(nbytes: int) -> torch.Tensor:
    """``uint8 [nbytes]``, uninitialised: a pooled mapping for ``nbytes >= POOL_MIN`` when a slot
    is free (see the module docstring), else ``torch.empty``."""
    if nbytes >= POOL_MIN:
        pool = _pool()
        if pool is not None:
            try:
                buffer = pool.lend(nbytes)
            except OSError:  # out of address space or mappings: the ordinary allocation
                buffer = None
            if buffer is not None:
                return buffer
    return torch.empty(nbytes, dtype=torch.uint8)


def holds(storage: torch.UntypedStorage) -> bool:
    """Whether ``storage`` is the batch a pooled mapping of this process is lent to."""
    pool = _state.pool
    if pool is None:
        return False
    with pool.lock:
        return any(slot.address == storage.data_ptr() and not slot.free() for slot in pool.slots)


def release() -> int:
    """Unmap the pooled buffers no batch uses; returns their bytes."""
    pool = _state.pool
    return 0 if pool is None else pool.release()


def pool_stats() -> dict[str, int]:
    """This process's counters: ``slots`` (mappings held), ``bytes`` (their size), ``lends``,
    ``created`` (mappings made or regrown), ``fallbacks`` (batches that got ``torch.empty``
    because every slot was busy)."""
    pool = _state.pool
    if pool is None:
        return {"slots": 0, "bytes": 0, "lends": 0, "created": 0, "fallbacks": 0}
    with pool.lock:
        held = [slot for slot in pool.slots if slot.map is not None]
        return {
            "slots": len(held),
            "bytes": sum(slot.capacity for slot in held),
            "lends": pool.lends,
            "created": pool.created,
            "fallbacks": pool.fallbacks,
        }
