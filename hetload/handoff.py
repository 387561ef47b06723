"""Sending a batch from a DataLoader worker to the main process through the worker's ring.

Inside a worker, a :class:`~hetload.HeteroBatch` whose tensors are all views of one ring slot
(:mod:`hetload.arena`) pickles as the slot's descriptor plus the layout of its tensors (byte
offset, shape, stride, dtype), not as one shared storage per tensor. The main process maps each
segment once (``MAP_POPULATE``: no page fault per page later) and keeps the mapping; each batch it
receives is a fresh storage over that mapping (``torch.frombuffer``), watched with a weak
reference. Once the user has dropped every tensor of the batch (every view, every field), the
main process clears the slot's in-use byte and the worker may write the slot again. The release
is noticed at the next batch received (or :func:`poll`), so a slot comes back one batch late.

Everywhere else (the main process, ``torch.save`` whose protocol is 2, a batch not in a slot, a
batch already sent once, a slot whose storage was moved by pickling one of its tensors) pickling
is the ordinary one, self-contained.

What is safe, and why:

- a slot is rewritten only when its in-use byte is clear AND no tensor of its last batch is alive
  in the worker; the main process clears the byte only after the storage of that batch (which
  every view, ``.numpy()`` array and ``torch.from_numpy`` of it keeps alive) is freed, and only
  if the header still names that batch;
- a batch is sent in the slot's form at most once; a second pickling copies (the ordinary way);
- ``Tensor.share_memory_()`` or pickling a tensor of a received batch moves its storage into a
  new segment: the slot then stays in use until that storage too is gone (memory, not data).

Known limit: a process *forked* from the main process inherits the mappings, so a batch it uses
without being sent to it can change once the main process drops that batch. Send batches to
other processes (queues, pickling), which copies or shares them; DataLoader workers never read
the main process's batches.
"""

from __future__ import annotations

import os
import threading
from multiprocessing.reduction import DupFd
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils.data import get_worker_info

from hetload.arena import HEADER, current_ring
from hetload.pickling import Table, decode_fields, encode_fields, storage_tensor, views
from hetload.shm import Mapping

__all__ = ["poll", "reduce_batch", "release_idle", "stats"]


#: bytes of storages besides the slot's that a batch may carry inline in the slot form
_INLINE = 1 << 16


# ---------------------------------------------------------------------------- worker side
def reduce_batch(batch: Any, protocol: int) -> tuple | None:
    """The slot form of ``batch`` for ``pickle`` (``(rebuild, args)``), or ``None`` to pickle
    it the ordinary way (outside a worker, ring off, not in a slot, already sent once)."""
    # torch.save pickles with protocol 2: a saved batch must stay self-contained
    info = get_worker_info()
    if protocol < 3 or info is None:
        return None
    ring = current_ring()
    if ring is None:
        return None
    table = Table(codes=True)  # read back by this same code, in the main process
    encoded = encode_fields(batch._fields, batch._present, table)
    # the slot form carries one segment, plus (inline, as bytes) the few small storages a batch
    # may hold beside it: labels and flags collated apart from a batch read's buffer
    # (hetload.packed), fields a user added. A large second storage pickles the ordinary way.
    found = ring.find(table.storages)
    if found is None:
        return None
    at, slot = found
    storage = table.storages[at]
    if slot.sent:
        return None
    inline: tuple = ()
    if len(table.storages) > 1:
        extra = [(k, s) for k, s in enumerate(table.storages) if k != at]
        if sum(s.nbytes() for _, s in extra) > _INLINE or any(
            s.device.type != "cpu" for _, s in extra
        ):
            return None
        inline = tuple((k, storage_tensor(s).numpy().tobytes()) for k, s in extra)
    slot.sent = True
    # the header names this batch, then marks the slot in use, before anything is sent
    mapped = slot.map
    mapped.set_int64(8, slot.lend)
    mapped.set_byte(0, 1)
    owner = (ring.pid, info.id, slot.index, slot.generation)
    layout = (storage.nbytes(), len(batch), table.views, encoded, at, inline)
    # the descriptor travels (a socket round trip) only until the main process has mapped the
    # segment; then it keeps the mapping for as long as this segment and this worker live
    df = None if mapped.byte(1) else DupFd(slot.fd)
    return _rebuild, (df, owner, slot.lend, layout)


# ---------------------------------------------------------------------------- main side
class _Mapping:
    """The main process's mapping of one worker segment, kept while the segment lives."""

    __slots__ = ("inode", "key", "map", "outstanding", "owner", "stale")

    def __init__(self, key: tuple[int, ...], mapped: Mapping, owner: tuple[int, ...]) -> None:
        self.key, self.map, self.owner = key, mapped, owner
        self.outstanding = 0  # batches received from it whose storage is still alive
        self.stale = False  # its slot has a newer segment: unmap once no batch uses it
        self.inode = (0, 0)  # (st_dev, st_ino) of the segment's file


class _Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.maps: dict[tuple[int, ...], _Mapping] = {}
        self.held: list[tuple[StorageWeakRef, _Mapping, int]] = []
        self.received = self.mapped = self.released = 0

    def mapping(self, fd: int | None, owner: tuple[int, ...]) -> _Mapping:
        """The mapping of the segment ``owner`` names (worker pid, worker id, slot, generation),
        made from ``fd`` the first time; counted as used by one more batch."""
        key = (owner[0], owner[2], owner[3])
        with self.lock:
            self._poll()
            found = self.maps.get(key)
            st = None if fd is None else os.fstat(fd)
            if found is not None and st is not None and found.inode != (st.st_dev, st.st_ino):
                # same pid, slot and generation but another file: a new worker that got the pid
                # of an exited one. The old mapping is of no use any more
                found.stale = True
                self.maps.pop(key)
                if not found.outstanding:
                    found.map.close()
                found = None
            if found is None:
                if fd is None or st is None:
                    raise RuntimeError(
                        f"DataLoader worker (pid {owner[0]}) sent a batch of a ring segment "
                        "this process has not mapped (a batch received by another process?)"
                    )
                found = _Mapping(key, Mapping(fd, st.st_size, populate=True), owner)
                found.inode = (st.st_dev, st.st_ino)
                self.mapped += 1
                self.maps[key] = found
                self._evict(found)
                # tells the worker to send this segment's batches without a descriptor from
                # now on: this mapping stays until the segment is replaced or the worker exits
                found.map.set_byte(1, 1)
            # counted from now, so no eviction unmaps it while the batch is being built
            found.outstanding += 1
            return found

    def track(self, storage: torch.UntypedStorage, mapping: _Mapping, lend: int) -> None:
        with self.lock:
            self.held.append((StorageWeakRef(storage), mapping, lend))
            self.received += 1

    def untrack(self, mapping: _Mapping) -> None:
        """A batch that could not be built. Its count stays: tensors over the mapping may live
        on in the exception's frames, so the mapping is never unmapped and the slot never given
        back (memory, not data, is what a failed receive costs)."""

    def _poll(self) -> None:
        keep = []
        for ref, mapping, lend in self.held:
            if not ref.expired():
                keep.append((ref, mapping, lend))
                continue
            mapping.outstanding -= 1
            self.released += 1
            # the worker writes the header only while the byte is clear, so it still names
            # this batch unless the batch was never the slot's (then it is not ours to clear)
            if mapping.map.int64(8) == lend:
                mapping.map.set_byte(0, 0)
            if mapping.stale and not mapping.outstanding:
                self._drop(mapping)
        self.held = keep

    def _evict(self, new: _Mapping) -> None:
        """Unmap idle mappings the ring no longer uses: the same slot's older segment (it
        grew), and those of worker processes that have exited."""
        pid, _, index, _ = new.owner
        for old in list(self.maps.values()):
            if old is new:
                continue
            if (old.owner[0] == pid and old.owner[2] == index) or not _alive(old.owner[0]):
                old.stale = True
            if old.stale and not old.outstanding:
                self._drop(old)

    def _drop(self, old: _Mapping) -> None:
        """Unmap ``old``: no batch over it is alive (``outstanding == 0``)."""
        if self.maps.get(old.key) is old:
            del self.maps[old.key]
        old.map.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_receiver = _Receiver()


def _after_fork_in_child() -> None:
    # the child must not clear slots for batches the parent holds: forget them (not unmap)
    global _receiver
    _receiver = _Receiver()


os.register_at_fork(after_in_child=_after_fork_in_child)


_batch_type: Any = None  # hetload.batch.HeteroBatch (which imports this module)


def _rebuild(df: Any, owner: tuple[int, ...], lend: int, layout: tuple) -> Any:
    global _batch_type
    if _batch_type is None:
        from hetload.batch import HeteroBatch

        _batch_type = HeteroBatch
    nbytes, batch_size, table, encoded, at, inline = layout
    try:
        fd = None if df is None else df.detach()
    except OSError as exc:  # the worker died between sending the batch and our fetching its fd
        raise RuntimeError(
            f"DataLoader worker (pid {owner[0]}) exited before its batch could be received: {exc}"
        ) from exc
    try:
        mapping = _receiver.mapping(fd, owner)
    finally:
        if fd is not None:
            os.close(fd)
    try:
        buffer = torch.frombuffer(
            mapping.map.buffer, dtype=torch.uint8, count=nbytes, offset=HEADER
        )
        storage = buffer.untyped_storage()
        storages: list[torch.UntypedStorage] = [storage]
        bases: list[torch.Tensor | None] = [buffer]
        if inline:  # small storages sent beside the slot, as bytes
            storages = storages * (1 + len(inline))
            bases = [None] * len(storages)
            for k, data in inline:
                storages[k] = (
                    torch.frombuffer(bytearray(data), dtype=torch.uint8).untyped_storage()
                    if data
                    else torch.UntypedStorage(0)
                )
            storages[at], bases[at] = storage, buffer
        tensors = views(storages, table, bases)
        # the worker built and checked this batch with this same code: no checks again
        fields, present = decode_fields(encoded, tensors, trusted=True)
        batch = _batch_type._trusted(fields, batch_size, present)
        del buffer, bases, tensors, fields, present
    except BaseException:
        _receiver.untrack(mapping)
        raise
    _receiver.track(storage, mapping, lend)
    return batch


def poll() -> None:
    """Give back to their workers the slots of received batches the user has dropped (done at
    every batch received and in ``HeteroBatch.pin_memory``)."""
    if _receiver.held:
        with _receiver.lock:
            _receiver._poll()


def release_idle() -> int:
    """Unmap every worker segment that no live batch uses and no live worker can send again
    (replaced segments, exited workers): after training, to return the last rings' memory at
    once rather than at the next loader's first batch. Returns how many."""
    with _receiver.lock:
        _receiver._poll()
        idle = [
            m
            for m in _receiver.maps.values()
            if not m.outstanding and (m.stale or not _alive(m.owner[0]))
        ]
        for m in idle:
            _receiver._drop(m)
        return len(idle)


def stats() -> dict[str, int]:
    """Main-process counters: ``received`` batches in the slot form, ``mapped`` segments (a
    steady state maps none), ``released`` batches given back, ``held`` still alive, ``maps``
    (segments mapped now). Gives back what the user dropped first, as :func:`poll`."""
    with _receiver.lock:
        _receiver._poll()
        return {
            "received": _receiver.received,
            "mapped": _receiver.mapped,
            "released": _receiver.released,
            "held": len(_receiver.held),
            "maps": len(_receiver.maps),
        }
