"""The shard index: one JSON file that is both a wids shard list and hetload's per-sample index.

``DST/index.json``::

    {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "DST",
     "hetload": {"format": 1, "files": 1200, "files_sha256": "...", "parts": [[0, 1]],
                 "settings": {...}, "samples": 1197, "skipped": 3},
     "shardlist": [
       {"url": "shard-000000.tar", "nsamples": 412, "filesize": 268400640, "sha256": "...",
        "keys":  ["000000000", ...],           per sample, in shard order
        "start": [0, ...], "end": [...],         byte range of the sample's members (headers incl.)
        "members": {"verts.npy": {"offset": [...], "size": [...]}, "json": {...}, ...},
                                                 data offset and size of each member, -1 if absent
        "rows": {"verts": [...], "faces": [...]}},   first-dim size of each array, -1 if absent
       ...]}

wids (and anything else reading ``url`` / ``nsamples``) ignores the extra keys; hetload reads a
sample with one ``pread`` of ``[start, end)`` and never scans a tar. URLs are relative to the
index's own location (a directory or an fsspec URL prefix).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hetload.guards import NotRegularFile, check_regular, open_regular, read_regular, shown
from hetload.shards.format import ShardError

__all__ = [
    "INDEX_FORMAT",
    "ShardEntry",
    "ShardIndex",
    "check_shards",
    "is_url",
    "merge_indexes",
]

INDEX_FORMAT = 1
_WIDS_KIND = "wids-shard-index-v1"


def is_url(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (other than ``file://``) and ``pipe:`` sources."""
    text = str(path)
    return (("://" in text) and not text.startswith("file://")) or text.startswith("pipe:")


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

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "nsamples": self.nsamples,
            "filesize": self.filesize,
            "sha256": self.sha256,
            "keys": self.keys,
            "start": self.start,
            "end": self.end,
            "members": {
                s: {"offset": self.offset[s], "size": self.size[s]} for s in sorted(self.offset)
            },
            "rows": {name: self.rows[name] for name in sorted(self.rows)},
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
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: shardlist entry {number} is not a mapping: {shown(data)}")
        url = data.get("url")
        if not isinstance(url, str) or not url or "\0" in url:
            raise ValueError(
                f"{where}: shardlist entry {number}: 'url' must be a non-empty string, got "
                f"{shown(url)}"
            )

        def bad(reason: str) -> ShardError:
            return ShardError(url, None, f"index {where}, entry {number}: {reason}")

        n = data.get("nsamples")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**40:
            raise bad(f"'nsamples' must be a non-negative int, got {shown(n)}")
        filesize = data.get("filesize", -1)
        if (
            isinstance(filesize, bool)
            or not isinstance(filesize, int)
            or not -1 <= filesize < 2**62
        ):
            raise bad(f"'filesize' must be an int >= -1 (-1: unknown), got {shown(filesize)}")
        sha256 = data.get("sha256", "")
        if not isinstance(sha256, str):
            raise bad(f"'sha256' must be a string, got {shown(sha256)}")
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


@dataclass
class ShardIndex:
    """A loaded ``index.json``: shards in order, the run's settings, and where it lives.

    ``root`` is the directory (or URL prefix) shard URLs are relative to.
    """

    shards: list[ShardEntry]
    root: str = "."
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def nsamples(self) -> int:
        return sum(shard.nsamples for shard in self.shards)

    def __repr__(self) -> str:
        # a summary: printing every shard's per-sample columns would dump the whole index
        return (
            f"ShardIndex(name={self.name!r}, root={self.root!r}, shards={len(self.shards)}, "
            f"samples={self.nsamples}, fields={self.field_names()})"
        )

    def shard_url(self, i: int) -> str:
        """The full path or URL of shard ``i``."""
        return join_url(self.root, self.shards[i].url)

    def field_names(self) -> list[str]:
        """Every array field any sample holds, sorted."""
        return sorted({name for shard in self.shards for name in shard.rows})

    def rows(self, name: str) -> np.ndarray:
        """``int64 [N]``: the first-dim size of field ``name`` of every sample, -1 where absent."""
        columns = [
            np.asarray(shard.rows[name], dtype=np.int64)
            if name in shard.rows
            else np.full(shard.nsamples, -1, dtype=np.int64)
            for shard in self.shards
        ]
        return np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)

    def to_json(self) -> dict[str, Any]:
        return {
            "__kind__": _WIDS_KIND,
            "wids_version": 1,
            "name": self.name,
            "hetload": {"format": INDEX_FORMAT, **self.info},
            "shardlist": [shard.to_json() for shard in self.shards],
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary name, fsync, rename)."""
        path = Path(path)
        write_atomic(path, json.dumps(self.to_json(), separators=(",", ":")).encode() + b"\n")
        return path

    @classmethod
    def load(cls, source: str | os.PathLike) -> ShardIndex:
        """Read an index from a path, a directory holding ``index.json``, or an fsspec URL.

        Raises:
            ValueError / ShardError: naming the index file (and shard) for a malformed index.
        """
        text = str(source)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if is_url(text):
            if text.startswith("pipe:"):
                raise ValueError(f"an index cannot be a pipe: command ({text}); pass its URL")
            raw = _read_url(text)
            root = text.rsplit("/", 1)[0]
        else:
            path = Path(text)
            if path.is_dir():
                path = path / "index.json"
            if not path.exists():
                raise FileNotFoundError(f"no shard index at {path}")
            raw = read_regular(path)
            root, text = str(path.parent), str(path)
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{text}: not a valid JSON index ({exc})") from None
        if not isinstance(data, Mapping) or not isinstance(data.get("shardlist"), list):
            raise ValueError(f"{text}: not a shard index (no 'shardlist' list)")
        info = data.get("hetload") or {}
        if not isinstance(info, Mapping):
            raise ValueError(f"{text}: 'hetload' must be a mapping, got {shown(info)}")
        info = dict(info)
        name = data.get("name", "")
        if not isinstance(name, str):
            raise ValueError(f"{text}: 'name' must be a string, got {shown(name)}")
        version = info.pop("format", None)
        if version != INDEX_FORMAT:
            raise ValueError(
                f"{text}: index format {version!r} is not hetload's format {INDEX_FORMAT} "
                "(a plain wids shard list has no per-sample index; run `hetload preprocess`)"
            )
        shards = [ShardEntry.from_json(entry, text, k) for k, entry in enumerate(data["shardlist"])]
        _check_unique_shards(shards, text)
        return cls(shards, root=root, name=name, info=info)


def join_url(root: str, url: str) -> str:
    """``url`` resolved against ``root`` unless it is absolute already."""
    if is_url(url) or os.path.isabs(url) or url.startswith("file://"):
        return url
    if is_url(root):
        return posixpath.join(root, url)
    return os.path.join(root, url)


def _read_url(url: str) -> bytes:
    try:
        import fsspec
    except ImportError:
        raise ImportError(f"reading {url} needs fsspec (pip install fsspec)") from None
    with fsspec.open(url, "rb") as f:
        return f.read()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name, so readers see all of it or none."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def check_shards(index: ShardIndex, *, deep: bool = False) -> None:
    """Check that every local shard exists with the size the index records (and, ``deep``, the
    same sha256). Remote shards are not checked here (their reads are).

    Raises:
        ShardError: naming the shard for a missing, truncated or replaced file.
    """
    for i, shard in enumerate(index.shards):
        path = index.shard_url(i)
        if is_url(path):
            continue
        try:
            check_regular(path)
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise ShardError(path, None, "listed in the index but missing") from None
        except NotRegularFile as exc:
            raise ShardError(path, None, f"{exc.kind}, not a regular file") from None
        if shard.filesize >= 0 and size != shard.filesize:
            raise ShardError(
                path,
                None,
                f"is {size} bytes, the index says {shard.filesize}: truncated or replaced "
                "since the index was written",
            )
        if deep and shard.sha256:
            digest = hashlib.sha256()
            with open_regular(path) as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != shard.sha256:
                raise ShardError(path, None, "sha256 differs from the index: corrupted")


def merge_indexes(parts: Sequence[ShardIndex], out_dir: str | os.PathLike) -> ShardIndex:
    """Join the indexes of ``--part i/n`` runs into one index living in ``out_dir``.

    The parts must come from the same file list and settings and cover ``0..n-1`` exactly once;
    shard URLs are rewritten relative to ``out_dir``, in part order (so sample order is the sorted
    file order of an unsplit run).

    Raises:
        ValueError: naming the part for a missing, repeated or mismatched part.
    """
    if not parts:
        raise ValueError("merge-index: no part indexes given")
    out_dir = Path(out_dir)

    def part_of(index: ShardIndex) -> tuple[int, int]:
        spans = index.info.get("parts")
        if not isinstance(spans, list) or len(spans) != 1:
            raise ValueError(f"index in {index.root} is not a single part (parts={spans!r})")
        i, n = spans[0]
        return int(i), int(n)

    ordered = sorted(parts, key=part_of)
    first = ordered[0]
    n = part_of(first)[1]
    seen = [part_of(index)[0] for index in ordered]
    if seen != list(range(n)):
        missing = sorted(set(range(n)) - set(seen))
        repeated = sorted({i for i in seen if seen.count(i) > 1})
        raise ValueError(
            f"merge-index: parts of {n} needed once each; missing {missing}, repeated {repeated}"
        )
    for index in ordered[1:]:
        for key in ("files", "files_sha256", "settings"):
            if index.info.get(key) != first.info.get(key):
                raise ValueError(
                    f"merge-index: part {part_of(index)[0]} (in {index.root}) has a different "
                    f"{key!r} from part 0: they come from different inputs or settings"
                )
    shards: list[ShardEntry] = []
    for index in ordered:
        for i, shard in enumerate(index.shards):
            url = index.shard_url(i)
            if not is_url(url):
                url = os.path.relpath(url, out_dir)
            shards.append(replace(shard, url=url))
    _check_unique_keys(shard for shard in shards)
    info = {
        **{k: first.info[k] for k in ("files", "files_sha256", "settings") if k in first.info},
        "parts": [[i, n] for i in range(n)],
        "samples": sum(s.nsamples for s in shards),
        "skipped": sum(int(index.info.get("skipped", 0)) for index in ordered),
    }
    return ShardIndex(shards, root=str(out_dir), name=first.name, info=info)


def _check_unique_shards(shards: Sequence[ShardEntry], where: str) -> None:
    """The same shard listed twice would be served twice: refused, as are sample keys shared
    by two shards (a sample stored twice)."""
    seen: dict[str, int] = {}
    for k, shard in enumerate(shards):
        url = posixpath.normpath(shard.url)
        if url in seen:
            raise ShardError(
                shard.url, None, f"index {where}: entries {seen[url]} and {k} list the same shard"
            )
        seen[url] = k
    total = sum(shard.nsamples for shard in shards)
    if len(set().union(*(shard.keys for shard in shards))) == total:
        return  # (the common case, in one pass of C; the loop below names the repeat)
    try:
        _check_unique_keys(shards)
    except ShardError as exc:
        raise ShardError(
            exc.shard, None, f"index {where}: {exc.args[0].split(': ', 1)[1]}"
        ) from None


def _check_unique_keys(shards: Iterable[ShardEntry]) -> None:
    seen: dict[str, str] = {}
    for shard in shards:
        for key in shard.keys:
            if key in seen:
                raise ShardError(shard.url, None, f"key {key} is also in shard {seen[key]}")
            seen[key] = shard.url
