"""Shard descriptors held for the duration of one read (a batch, or one sample's range)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Leases"]


class Leases:
    """The dataset's shard descriptors pinned for the duration of one read
    (:mod:`hetload.data.shard_handles`): another thread's read that evicts one from the
    dataset's least-recently-used handles, or a ``close()``, leaves it open until released (it
    would otherwise read a closed, or reused, descriptor)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.fds: dict[int, int] = {}

    def fd(self, shard: int) -> int:
        fd = self.fds.get(shard)
        if fd is None:
            fd = self.fds[shard] = self.ds._pin([shard])[shard]
        return fd

    def many(self, shards: Iterable[int]) -> dict[int, int]:
        """The descriptors of ``shards`` (``{shard: fd}``), pinned under one lock."""
        missing = [shard for shard in shards if shard not in self.fds]
        if missing:
            self.fds.update(self.ds._pin(missing))
        return self.fds

    def __enter__(self) -> Leases:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fds:
            self.ds._unpin(list(self.fds.values()))
            self.fds = {}
