"""Where a batch's bytes live: one buffer per batch, every field a view of it.

A batch's tensors (every field's values, offsets, fixed rows, presence flags) are carved out of
one ``uint8`` buffer, each at an :data:`ALIGN`-byte boundary, so that a batch is one allocation:
inside a DataLoader worker one shared-memory segment (one descriptor to send), elsewhere one
``torch.empty`` or, for a large batch, a reused mapping of this process
(:mod:`hetload.local_pool`: no page faults per batch).

Contract used by ``hetload.collate`` and the batch-level shard reads:

- :func:`batch_buffer(nbytes)` gives ``uint8 [nbytes]`` (uninitialised);
- :func:`aligned(n)` rounds a byte count up to :data:`ALIGN`;
- :func:`carve(buffer, offset, shape, dtype)` is the view of ``shape``/``dtype`` at byte
  ``offset`` of ``buffer`` (``offset`` a multiple of :data:`ALIGN`).

A ``HeteroBatch`` whose every tensor (values, offsets, fixed fields, presence flags) is carved
from ONE ``batch_buffer`` travels from a worker as its ring slot (:mod:`hetload.handoff`); a
batch mixing in other tensors still works, pickled the ordinary way (the slot is then kept until
the worker drops the buffer, and the bytes travel as a fresh shared segment).

**The ring (inside DataLoader workers, Linux).** Each worker keeps a few shared-memory segments
(``memfd``, so nothing appears in ``/dev/shm`` and nothing can leak there; their descriptors
are made up front, one per slot, so a worker's descriptor count is constant) and lends one per
batch. A segment starts with a :data:`HEADER`-byte header whose first byte says "the main process
holds a batch of this segment"; the worker sets it when it sends the batch
(:mod:`hetload.handoff`), the main process clears it once every tensor of that batch is gone.
A segment is lent again only when that byte is clear AND no tensor of its previous batch is alive
in the worker. When every segment is busy the ring grows up to :data:`RING_SLOTS` segments, then
falls back to a fresh segment per batch: it never waits, so a user holding every batch forever
costs memory, not a hang. Each segment grows to the largest batch it has carried.

Knobs (read when a worker first allocates): ``HETLOAD_RING=0`` turns the ring off (a fresh
segment per batch, still one per batch); ``HETLOAD_RING_SLOTS`` (default 8) bounds the segments
per worker.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import threading
from collections.abc import Iterator

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils.data import get_worker_info

from hetload import local_pool
from hetload.shm import Mapping, memfd
from hetload.slots import Lender, choose_slot

__all__ = ["ALIGN", "HEADER", "aligned", "batch_buffer", "carve", "ring_stats"]

#: byte alignment of every tensor carved from a batch buffer (a cache line; enough for any dtype)
ALIGN = 64
#: bytes before a ring segment's data: [0] in-use byte (worker sets, main clears), [1] "the main
#: process has mapped this segment" (main sets), [8:16] the
#: lend number of the batch that set it (little-endian int64)
HEADER = 64
#: most segments a worker's ring holds (``HETLOAD_RING_SLOTS``)
RING_SLOTS = 8
_PAGE = mmap.PAGESIZE


def aligned(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`ALIGN`."""
    return -(-int(n) // ALIGN) * ALIGN


def batch_buffer(nbytes: int) -> torch.Tensor:
    """``uint8 [nbytes]``, uninitialised: in shared memory inside a DataLoader worker (sending
    the batch to the main process then moves one descriptor, not the bytes), from the worker's
    ring of reused segments when it is on (see the module docstring); elsewhere from
    :func:`hetload.local_pool.lend`."""
    nbytes = max(int(nbytes), 1)
    if get_worker_info() is None:  # a large one from this process's pool of reused mappings
        return local_pool.lend(nbytes)
    if getattr(_local, "private", False):
        return torch.empty(nbytes, dtype=torch.uint8)
    ring = _ring()
    if ring is not None:
        buffer = ring.lend(nbytes)
        if buffer is not None:
            return buffer
    storage = torch.UntypedStorage._new_shared(nbytes)
    return torch.empty((0,), dtype=torch.uint8).set_(storage, 0, (nbytes,))


_local = threading.local()


@contextlib.contextmanager
def private() -> Iterator[None]:
    """Inside it, :func:`batch_buffer` gives ordinary memory even in a worker: for the small
    part of a batch built apart from its main buffer (a batch read's labels and flags), which
    travels inline beside the buffer's slot (:mod:`hetload.handoff`) rather than taking a
    second slot."""
    before = getattr(_local, "private", False)
    _local.private = True
    try:
        yield
    finally:
        _local.private = before


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


def ring_stats() -> dict[str, int]:
    """This process's ring counters (zeros outside workers / with the ring off): ``slots``,
    ``lends`` (batches carved from a slot), ``created`` (segments made or regrown),
    ``fallbacks`` (batches that got a fresh segment because every slot was busy)."""
    ring = _state.ring if _state.pid == _Pid.now else None
    if ring is None:
        return {"slots": 0, "lends": 0, "created": 0, "fallbacks": 0}
    return {
        "slots": sum(slot.map is not None for slot in ring.slots),
        "lends": ring.lends,
        "created": ring.created,
        "fallbacks": ring.fallbacks,
    }


# ---------------------------------------------------------------------------- the worker's ring
class Slot:
    """One segment of a worker's ring: ``map`` is ``HEADER + capacity`` bytes of memfd ``fd``.

    The ring makes its slots' descriptors up front (empty files cost nothing), so a worker's
    descriptor count does not follow how many slots it ends up using."""

    __slots__ = ("address", "capacity", "fd", "generation", "index", "lend", "live", "map", "sent")

    def __init__(self, index: int) -> None:
        self.index = index
        self.generation = 0
        self.capacity = 0
        self.fd = memfd(f"hetload-ring-{os.getpid()}-{index}", 0)
        self.map: Mapping | None = None
        self.address = 0  # of the data (after the header) in this process
        self.live: StorageWeakRef | None = None  # the storage of the batch lent last
        self.lend = 0  # lend number of that batch (the header's [8:16] once it is sent)
        self.sent = False  # that batch went to the main process in the slot's form

    def free(self) -> bool:
        """No tensor of the last batch is alive here, and the main process let go of it."""
        if self.map is None:
            return True
        return (self.live is None or self.live.expired()) and self.map.byte(0) == 0

    def grow(self, capacity: int, generation: int) -> None:
        """A new, larger segment (a new file: the main process maps it anew, and unmaps the old
        one once its batches are gone). Only while free: no tensor here views the old one."""
        fd = memfd(f"hetload-ring-{os.getpid()}-{self.index}", HEADER + capacity)
        try:
            new = Mapping(fd, HEADER + capacity)
        except BaseException:
            os.close(fd)
            raise
        self.close()
        self.fd, self.map, self.capacity, self.generation = fd, new, capacity, generation
        self.address = new.address + HEADER

    def close(self) -> None:
        self.live = None
        if self.map is not None:
            self.map.close()
            self.map = None
        os.close(self.fd)


class Ring(Lender):
    """The slots of one worker process (see the module docstring)."""

    def __init__(self, max_slots: int) -> None:
        # the lock: the queue's feeder thread reads slots while we lend
        super().__init__([Slot(i) for i in range(max_slots)])
        self.pid = os.getpid()  # a forked child makes its own ring (_ring)

    def _view(self, slot: Slot, nbytes: int) -> torch.Tensor:
        return torch.frombuffer(
            slot.map.buffer,  # type: ignore[union-attr]
            dtype=torch.uint8,
            count=nbytes,
            offset=HEADER,
        )

    def _lent(self, slot: Slot, buffer: torch.Tensor) -> None:
        slot.lend = self.lends
        slot.sent = False

    def _pick(self, nbytes: int) -> Slot | None:
        """The smallest free slot that fits, else an unused one, else the largest free one
        regrown (:func:`hetload.slots.choose_slot`: sizes settle in a few steps)."""
        chosen = choose_slot(self.slots, nbytes, unused_first=True)
        if chosen is None:
            return None
        slot, capacity = chosen
        if slot.map is None or capacity > slot.capacity:
            self.created += 1
            slot.grow(_round_up(capacity, _PAGE), self.created)
        return slot

    def slot_of(self, storage: torch.UntypedStorage) -> Slot | None:
        """The slot whose current batch ``storage`` is, if it still views the slot's memory."""
        with self.lock:
            return self._slot_of(storage)

    def find(self, storages: list[torch.UntypedStorage]) -> tuple[int, Slot] | None:
        """``(k, slot)`` when ``storages[k]`` is the only one of ``storages`` that is a slot's
        current batch (see :meth:`slot_of`), else ``None``."""
        found = None
        with self.lock:
            for k, storage in enumerate(storages):
                slot = self._slot_of(storage)
                if slot is not None:
                    if found is not None:
                        return None
                    found = (k, slot)
        return found

    def _slot_of(self, storage: torch.UntypedStorage) -> Slot | None:
        cdata = storage._cdata
        for slot in self.slots:
            live = slot.live
            # the cheap identity test first: this runs for every batch a worker sends
            if (
                live is not None
                and live.cdata == cdata
                and not live.expired()
                and storage.data_ptr() == slot.address
            ):
                return slot
        return None


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


class _State:
    pid = -1
    ring: Ring | None = None
    checked = False


_state = _State()
_state_lock = threading.Lock()


class _Pid:
    """This process's id, kept current across fork: ``os.getpid`` is a system call, and the
    ring is looked up for every batch a worker allocates and sends."""

    now = os.getpid()


def _forked() -> None:
    _Pid.now = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _ring() -> Ring | None:
    """This worker's ring, made on first use; ``None`` when off or unsupported here."""
    if _state.pid != _Pid.now:  # first use, or a process forked from one that had a ring
        with _state_lock:
            if _state.pid != _Pid.now:
                _state.ring = None
                _state.pid = _Pid.now
                slots = _env_int("HETLOAD_RING_SLOTS", RING_SLOTS)
                on = os.environ.get("HETLOAD_RING", "1") != "0" and slots > 0
                if on and hasattr(os, "memfd_create"):
                    try:
                        _state.ring = Ring(slots)
                    except OSError:  # out of descriptors: a fresh segment per batch, as before
                        _state.ring = None
    return _state.ring


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer (segments per worker), got {raw!r}") from None


def current_ring() -> Ring | None:
    """This process's ring if it has one already (used when pickling a batch)."""
    return _state.ring if _state.pid == _Pid.now else None
