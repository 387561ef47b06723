"""The open shard files of one :class:`~hetload.data.ShardDataset` in one process: at most
``max_open`` kept, least recently used closed first, and a descriptor in use never closed.

A read pins the descriptors it needs (:meth:`ShardHandles.pin`) and unpins them when done: an
eviction (another thread opening one more shard) or :meth:`ShardHandles.close` passes over a
pinned descriptor, which is closed at its last unpin instead. So a thread never reads through a
descriptor another thread closed, or whose number the system has since given to another file;
and a batch costs no ``dup``/``close`` per shard. While every kept descriptor is pinned, more
than ``max_open`` stay open until the pins are released.

Descriptors are per process: after a fork the child starts with none (inherited ones are left
to the parent), and the lock is the child's own.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from hetload.guards import NotRegularFile, open_regular_fd
from hetload.shards.format import ShardError

__all__ = ["ShardHandles"]


class ShardHandles:
    """Least-recently-used shard descriptors with pins (see the module docstring)."""

    def __init__(self, max_open: int) -> None:
        self.max_open = max(1, int(max_open))
        self._reset(None)

    def _reset(self, pid: int | None) -> None:
        self._pid = pid
        self._lock = threading.Lock()
        self._open: OrderedDict[int, int] = OrderedDict()  # shard -> fd, oldest first
        self._pins: dict[int, int] = {}  # fd -> pins held
        self._closing: set[int] = set()  # fds to close at their last unpin

    def _mine(self) -> None:
        pid = os.getpid()
        if self._pid != pid:
            # a fork's child: the parent's descriptors (and a lock another thread of the parent
            # may have held) are not this process's to use
            self._reset(pid)

    def pin(self, shards: Iterable[int], url_of: Callable[[int], str]) -> dict[int, int]:
        """``{shard: fd}`` for ``shards`` (opened as needed, ``url_of(shard)`` the path), each
        pinned until :meth:`unpin`.

        Raises:
            ShardError: a shard missing or not a regular file (nothing stays pinned)."""
        self._mine()
        out: dict[int, int] = {}
        with self._lock:
            try:
                for shard in shards:
                    if shard in out:
                        continue
                    fd = self._open.get(shard)
                    if fd is None:
                        fd = self._open[shard] = _open(url_of(shard))
                    else:
                        self._open.move_to_end(shard)
                    self._pins[fd] = self._pins.get(fd, 0) + 1
                    out[shard] = fd
            except BaseException:
                self._release(out.values())
                raise
            finally:
                self._evict()
        return out

    def unpin(self, fds: Iterable[int]) -> None:
        """Release pins taken by :meth:`pin` (one per fd given)."""
        self._mine()
        with self._lock:
            self._release(fds)
            self._evict()

    def close(self) -> None:
        """Close every descriptor of this process (a pinned one at its last unpin)."""
        if self._pid != os.getpid():
            self._reset(None)
            return
        with self._lock:
            for fd in self._open.values():
                if fd in self._pins:
                    self._closing.add(fd)
                else:
                    os.close(fd)
            self._open.clear()

    def __len__(self) -> int:
        return len(self._open) if self._pid == os.getpid() else 0

    def _release(self, fds: Iterable[int]) -> None:
        for fd in fds:
            left = self._pins.get(fd, 0) - 1
            if left > 0:
                self._pins[fd] = left
                continue
            self._pins.pop(fd, None)
            if fd in self._closing:
                self._closing.discard(fd)
                os.close(fd)

    def _evict(self) -> None:
        """Close the least recently used unpinned descriptors beyond ``max_open``."""
        excess = len(self._open) - self.max_open
        if excess <= 0:
            return
        for shard in [s for s, fd in self._open.items() if fd not in self._pins][:excess]:
            os.close(self._open.pop(shard))

    def __getstate__(self) -> dict[str, Any]:
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_open = state["max_open"]
        self._reset(None)


def _open(url: str) -> int:
    try:
        # a FIFO or device listed as a shard is refused, never read (it could block)
        return open_regular_fd(url)
    except FileNotFoundError:
        raise ShardError(url, None, "listed in the index but missing") from None
    except NotRegularFile as exc:
        raise ShardError(url, None, f"{exc.kind}, not a regular file") from None
