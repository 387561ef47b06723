"""Shard descriptors leased for the duration of one read (a batch, or one sample's range)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["Leases"]

_LEASE_LOCK = threading.Lock()


class Leases:
    """Duplicates of the dataset's shard descriptors, for the duration of one batch: a thread
    reading through a duplicate is unaffected when another thread's read evicts the original
    from the dataset's least-recently-used handles (it would otherwise read a closed, or
    reused, descriptor)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.fds: dict[int, int] = {}

    def fd(self, shard: int) -> int:
        fd = self.fds.get(shard)
        if fd is None:
            with _LEASE_LOCK:
                fd = self.fds[shard] = os.dup(self.ds._fd(shard))
        return fd

    def many(self, shards: Iterable[int]) -> dict[int, int]:
        """The descriptors of ``shards`` (``{shard: fd}``), taken under one lock."""
        with _LEASE_LOCK:
            for shard in shards:
                if shard not in self.fds:
                    self.fds[shard] = os.dup(self.ds._fd(shard))
        return self.fds

    def __enter__(self) -> Leases:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds.values():
            os.close(fd)
