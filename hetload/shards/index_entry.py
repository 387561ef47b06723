"""One shard's entry of the index (``index.json``'s ``shardlist``), parsed and validated.

The per-sample columns are lists when parsed from JSON, int arrays (memory-mapped views) when
the index keeps them in its columnar sidecar (:mod:`hetload.shards.columns`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hetload.guards import shown
from hetload.shards.format import ShardError

__all__ = ["ShardEntry", "shard_header"]


@dataclass
class ShardEntry:
    """One shard of the index: its file and the per-sample columns (see the module docstring)."""

    url: str
    nsamples: int = 0
    filesize: int = 0
    sha256: str = ""
    keys: list[str] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    offset: dict[str, list[int]] = field(default_factory=dict)
    size: dict[str, list[int]] = field(default_factory=dict)
    rows: dict[str, list[int]] = field(default_factory=dict)

    def __repr__(self) -> str:
        # the per-sample columns run to megabytes on real data: a summary, not a dump
        return (
            f"ShardEntry({self.url!r}, nsamples={self.nsamples}, filesize={self.filesize}, "
            f"fields={sorted(self.rows)})"
        )

    def to_json(self, lists: bool = True) -> dict[str, Any]:
        """The ``shardlist`` entry; without the per-sample columns unless ``lists``."""
        head = {
            "url": self.url,
            "nsamples": self.nsamples,
            "filesize": self.filesize,
            "sha256": self.sha256,
        }
        if not lists:
            return head
        return {
            **head,
            "keys": list(self.keys),
            "start": _plain(self.start),
            "end": _plain(self.end),
            "members": {
                s: {"offset": _plain(self.offset[s]), "size": _plain(self.size[s])}
                for s in sorted(self.offset)
            },
            "rows": {name: _plain(self.rows[name]) for name in sorted(self.rows)},
        }

    @classmethod
    def from_json(cls, data: Any, where: str, number: int = 0) -> ShardEntry:
        """Parse and validate one ``shardlist`` entry (entry ``number`` of index ``where``).

        Every column is checked for its type and range, and the byte layout for consistency:
        ``0 <= start[i] < end[i] <= start[i + 1]``, ``end[-1] <= filesize``, and each member's
        ``[offset, offset + size)`` inside its sample's ``[start + 512, end)`` (-1 where absent).

        Raises:
            ShardError: naming the index file, the entry and the column.
        """
        url, n, filesize, sha256 = shard_header(data, where, number)

        def bad(reason: str) -> ShardError:
            return ShardError(url, None, f"index {where}, entry {number}: {reason}")

        keys = data.get("keys")
        if not isinstance(keys, list) or len(keys) != n:
            raise bad(f"column 'keys' has {_length(keys)} entries, nsamples is {n}")
        if not _plain_keys(keys):  # the per-key loop runs only where the fast check fails
            for i, key in enumerate(keys):
                if not isinstance(key, str) or not key or "\0" in key or "." in key.rsplit("/")[-1]:
                    raise bad(f"'keys' entry {i} is not a valid sample key: {shown(key)}")
        if len(set(keys)) != n:
            repeated = next(k for k, c in Counter(keys).items() if c > 1)
            raise bad(f"key {repeated!r} is listed twice")
        members = data.get("members", {})
        rows = data.get("rows", {})
        if not isinstance(members, Mapping) or not isinstance(rows, Mapping):
            raise bad("'members' and 'rows' must be mappings")
        if "json" not in members:
            raise bad("no 'json' member column (every sample has a .json member)")
        start = _int_column(data.get("start"), "start", n, 0, bad)
        end = _int_column(data.get("end"), "end", n, 1, bad)
        if n:
            order = np.flatnonzero(end <= start)
            if order.size:
                i = int(order[0])
                raise bad(f"sample {i}: 'end' {end[i]} is not after 'start' {start[i]}")
            overlap = np.flatnonzero(start[1:] < end[:-1])
            if overlap.size:
                i = int(overlap[0]) + 1
                raise bad(
                    f"sample {i} starts at {start[i]}, before sample {i - 1} ends ({end[i - 1]})"
                )
            if filesize >= 0 and end[-1] > filesize:
                raise bad(f"the last sample ends at byte {end[-1]}, past 'filesize' {filesize}")
        offsets: dict[str, list[int]] = {}
        sizes: dict[str, list[int]] = {}
        for suffix, spec in members.items():
            if not isinstance(suffix, str) or not (suffix == "json" or suffix.endswith(".npy")):
                raise bad(f"member suffix {shown(suffix)} is neither 'json' nor '<field>.npy'")
            if not isinstance(spec, Mapping):
                raise bad(f"members[{suffix!r}] must hold 'offset' and 'size' lists")
            offset = _int_column(spec.get("offset"), f"members.{suffix}.offset", n, -1, bad)
            size = _int_column(spec.get("size"), f"members.{suffix}.size", n, -1, bad)
            absent = offset < 0
            if suffix == "json" and absent.any():
                raise bad(f"sample {int(np.argmax(absent))} has no .json member")
            wrong = np.flatnonzero(
                np.where(
                    absent,
                    size != -1,
                    (size < 0) | (offset < start + 512) | (offset + size > end),
                )
            )
            if wrong.size:
                i = int(wrong[0])
                raise bad(
                    f"members.{suffix} of sample {i}: offset {offset[i]}, size {size[i]} do not "
                    f"lie inside the sample's bytes [{start[i]}, {end[i]})"
                )
            offsets[suffix], sizes[suffix] = offset.tolist(), size.tolist()
        row_columns: dict[str, list[int]] = {}
        for name, column in rows.items():
            if not isinstance(name, str) or f"{name}.npy" not in members:
                raise bad(f"rows of {shown(name)}, a field without a member column")
            column = _int_column(column, f"rows.{name}", n, -1, bad)
            present = np.asarray(offsets[f"{name}.npy"]) >= 0
            if ((column >= 0) != present).any():
                i = int(np.argmax((column >= 0) != present))
                raise bad(f"rows.{name} of sample {i} disagrees with its member's presence")
            row_columns[name] = column.tolist()
        return cls(
            url=url,
            nsamples=n,
            filesize=filesize,
            sha256=sha256,
            keys=list(keys),
            start=start.tolist(),
            end=end.tolist(),
            offset=offsets,
            size=sizes,
            rows=row_columns,
        )


def _plain_keys(keys: list[Any]) -> bool:
    """True when every key is a non-empty string without NUL or dot (what the writer makes),
    checked with C-speed string operations."""
    try:
        joined = "\n".join(keys)
    except TypeError:
        return False
    return "\0" not in joined and "." not in joined and (not keys or min(map(len, keys)) > 0)


def _length(column: Any) -> str:
    return str(len(column)) if isinstance(column, list) else f"no list ({type(column).__name__})"


def _int_column(column: Any, name: str, n: int, low: int, bad: Callable[[str], Exception]):
    """``int64 [n]`` from a JSON list of ``n`` ints ``>= low`` (and below 2**62)."""
    if not isinstance(column, list) or len(column) != n:
        raise bad(f"column {name!r} has {_length(column)} entries, nsamples is {n}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        # the fast path: a list of JSON ints becomes an integer array (a float, None, a string,
        # a nested list or an int beyond 64 bits does not)
        values = np.asarray(column)
    except (OverflowError, ValueError):
        values = None
    if values is None or values.ndim != 1 or values.dtype.kind not in "iu":
        for i, value in enumerate(column):
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(f"column {name!r} entry {i} is not an int: {shown(value)}")
            if not low <= value < 2**62:
                raise bad(f"column {name!r} entry {i} is out of range: {shown(value)}")
        raise bad(f"column {name!r} is not a list of ints")
    if (values >= 2**62).any() or (values < low).any():
        i = int(np.argmax((values >= 2**62) | (values < low)))
        raise bad(f"column {name!r} entry {i} is out of range: {shown(column[i])}")
    return values.astype(np.int64, copy=False)


def shard_header(data: Any, where: str, number: int) -> tuple[str, int, int, str]:
    """``(url, nsamples, filesize, sha256)`` of ``shardlist`` entry ``number``, validated."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: shardlist entry {number} is not a mapping: {shown(data)}")
    url = data.get("url")
    if not isinstance(url, str) or not url or "\0" in url:
        raise ValueError(
            f"{where}: shardlist entry {number}: 'url' must be a non-empty string, got {shown(url)}"
        )

    def bad(reason: str) -> ShardError:
        return ShardError(url, None, f"index {where}, entry {number}: {reason}")

    n = data.get("nsamples")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**40:
        raise bad(f"'nsamples' must be a non-negative int, got {shown(n)}")
    filesize = data.get("filesize", -1)
    if isinstance(filesize, bool) or not isinstance(filesize, int) or not -1 <= filesize < 2**62:
        raise bad(f"'filesize' must be an int >= -1 (-1: unknown), got {shown(filesize)}")
    sha256 = data.get("sha256", "")
    if not isinstance(sha256, str):
        raise bad(f"'sha256' must be a string, got {shown(sha256)}")
    return url, n, filesize, sha256


def _plain(column: Any) -> list[int]:
    return column.tolist() if isinstance(column, np.ndarray) else list(column)
