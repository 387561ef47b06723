"""The columnar sidecar of a large index: per-sample columns as ``.npy`` files, memory-mapped.

Above :data:`COLUMNS_FROM` samples, ``index.json`` lists only each shard's ``url``,
``nsamples``, ``filesize`` and ``sha256`` (still a wids shard list) and names its sidecar,
``DST/index.<digest>.columns/``::

    meta.json            {"format": 1, "digest": "...", "samples": N, "shards": S,
                          "members": ["json", "verts.npy", ...], "rows": ["verts", ...]}
    counts.npy           int64 [S]      samples per shard, in index order
    start.npy, end.npy   int64 [N]      byte range of each sample's members in its shard
    offset.<suffix>.npy  int32/64 [N]   data offset of the member (-1: absent); size.<suffix>.npy
    rows.<field>.npy     int32/64 [N]   first-dim size of the field (-1: absent)
    key_offsets.npy      int64 [N + 1]  sample ``i``'s key is ``key_blob[o[i]:o[i + 1]]`` (utf-8)
    key_blob.npy         uint8 [...]

The folder is written under a temporary name and renamed; its name and ``meta.json`` carry a
digest of its bytes, which ``index.json`` records, so a sidecar from another write is refused,
never used. Loading maps the files (``np.load(mmap_mode="r")``) and checks lengths, dtypes,
ranges and monotonic offsets in a few vectorised passes; errors name the file and column.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from tokenize import TokenError
from typing import Any

import numpy as np

from hetload.shards.index_entry import ShardEntry

__all__ = [
    "COLUMNS_FROM",
    "ColumnShards",
    "IndexColumns",
    "KeyColumn",
    "duplicate_key",
    "load_columns",
]

#: indexes of more samples keep their per-sample columns in the sidecar only
COLUMNS_FROM = 100_000
_FORMAT = 1
_CHUNK = 1 << 20  # samples per validation pass


class KeyColumn(Sequence[str]):
    """The sample keys as one utf-8 blob and int64 ``[N + 1]`` offsets; ``keys[i]`` decodes
    one (no list of N Python strings is held)."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray) -> None:
        self.blob, self.offsets = blob, offsets

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"key {i} of {len(self)}")
        return bytes(self.blob[self.offsets[i] : self.offsets[i + 1]]).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]


@dataclass
class IndexColumns:
    """Every sample's index columns, concatenated over the shards in index order (shapes in
    the module doc); from the sidecar (memory-mapped) or from parsed entries."""

    counts: np.ndarray
    start: np.ndarray
    end: np.ndarray
    offset: dict[str, np.ndarray]
    size: dict[str, np.ndarray]
    rows: dict[str, np.ndarray]
    key_offsets: np.ndarray
    key_blob: np.ndarray

    @property
    def nsamples(self) -> int:
        return int(self.start.shape[0])

    @property
    def starts(self) -> np.ndarray:
        """int64 ``[S + 1]``: shard ``k`` holds samples ``starts[k]:starts[k + 1]``."""
        return np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)]).astype(np.int64)

    @property
    def keys(self) -> KeyColumn:
        return KeyColumn(self.key_blob, self.key_offsets)

    @classmethod
    def from_entries(cls, shards: Sequence[ShardEntry]) -> IndexColumns:
        def cat(parts: list[Any]) -> np.ndarray:
            arrays = [np.asarray(p, dtype=np.int64).reshape(-1) for p in parts]
            return np.concatenate(arrays) if arrays else np.zeros(0, np.int64)

        suffixes = sorted({s for shard in shards for s in shard.offset})
        names = sorted({n for shard in shards for n in shard.rows})

        def absent(shard: ShardEntry) -> list[int]:
            return [-1] * shard.nsamples

        encoded = [key.encode("utf-8") for shard in shards for key in shard.keys]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        return cls(
            counts=np.asarray([shard.nsamples for shard in shards], dtype=np.int64),
            start=cat([shard.start for shard in shards]),
            end=cat([shard.end for shard in shards]),
            offset={s: cat([sh.offset.get(s, absent(sh)) for sh in shards]) for s in suffixes},
            size={s: cat([sh.size.get(s, absent(sh)) for sh in shards]) for s in suffixes},
            rows={n: cat([sh.rows.get(n, absent(sh)) for sh in shards]) for n in names},
            key_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            key_blob=np.frombuffer(b"".join(encoded), dtype=np.uint8),
        )

    def files(self) -> dict[str, np.ndarray]:
        """The sidecar's files and their arrays (int32 where the values fit: most shards are
        below 2 GiB, and every byte less is a page less to map)."""
        out = {"counts": self.counts, "key_blob": self.key_blob}
        named = {"start": self.start, "end": self.end, "key_offsets": self.key_offsets}
        for kind, columns in (("offset", self.offset), ("size", self.size), ("rows", self.rows)):
            named.update({f"{kind}.{name}": column for name, column in columns.items()})
        for file, column in named.items():
            small = column.size == 0 or int(column.max()) < 2**31
            out[file] = column.astype(np.int32 if small else np.int64)
        return out

    def digest(self) -> str:
        """16 hex digits over every file's name, dtype and bytes."""
        h = hashlib.blake2b(digest_size=8)
        for name, array in sorted(self.files().items()):
            h.update(f"{name}:{array.dtype.str}:{array.shape[0]};".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    def write(self, folder: Path, stem: str = "index") -> str:
        """Write the sidecar into ``folder`` (the index's): ``<stem>.<digest>.columns``,
        through a temporary name; returns that name (an identical one already there is kept)."""
        digest = self.digest()
        name = f"{stem}.{digest}.columns"
        final = folder / name
        if (final / "meta.json").exists():
            return name
        partial = folder / f".{name}.{uuid.uuid4().hex[:8]}.partial"
        partial.mkdir()
        try:
            for file, array in self.files().items():
                with open(partial / f"{file}.npy", "wb") as f:
                    np.save(f, array)
                    f.flush()
                    os.fsync(f.fileno())
            meta = {
                "format": _FORMAT,
                "digest": digest,
                "samples": self.nsamples,
                "shards": int(self.counts.shape[0]),
                "members": sorted(self.offset),
                "rows": sorted(self.rows),
            }
            (partial / "meta.json").write_text(json.dumps(meta))
            os.replace(partial, final)
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
        return name

    def entry(self, k: int, url: str, filesize: int, sha256: str) -> ShardEntry:
        """Shard ``k``'s :class:`ShardEntry`: int array views, its keys decoded."""
        starts = self._starts()
        a, b = int(starts[k]), int(starts[k + 1])

        def present(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {n: c[a:b] for n, c in columns.items() if b > a and (c[a:b] >= 0).any()}

        return ShardEntry(
            url=url,
            nsamples=b - a,
            filesize=filesize,
            sha256=sha256,
            keys=self.keys[a:b],
            start=self.start[a:b],
            end=self.end[a:b],
            offset=present(self.offset),
            size={s: self.size[s][a:b] for s in present(self.offset)},
            rows=present(self.rows),
        )

    def __getstate__(self) -> dict[str, Any]:
        # a mapped sidecar crosses to DataLoader workers (spawn) as its folder, mapped again
        # there, not as a copy of its columns (the folder's name carries their digest: a
        # rewrite makes a new folder, so the files mapped are the ones checked)
        source = self.__dict__.get("_source")
        return {"_source": source} if source is not None else dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        source = state.get("_source")
        if source is None or len(state) > 1:
            self.__dict__.update(state)
            return
        folder, members, names = source

        def mapped(file: str) -> np.ndarray:
            return np.load(f"{folder}/{file}.npy", mmap_mode="r", allow_pickle=False)

        self.__dict__.update(
            counts=mapped("counts"),
            start=mapped("start"),
            end=mapped("end"),
            offset={s: mapped(f"offset.{s}") for s in members},
            size={s: mapped(f"size.{s}") for s in members},
            rows={n: mapped(f"rows.{n}") for n in names},
            key_offsets=mapped("key_offsets"),
            key_blob=mapped("key_blob"),
            _source=source,
        )

    def _starts(self) -> np.ndarray:
        cached = self.__dict__.get("_starts_cache")
        if cached is None:
            cached = self.__dict__["_starts_cache"] = self.starts
        return cached


class ColumnShards(Sequence[ShardEntry]):
    """``ShardIndex.shards`` of a sidecar index: each :class:`ShardEntry` made when asked."""

    def __init__(self, columns: IndexColumns, heads: list[tuple[str, int, int, str]]) -> None:
        self.columns, self.heads = columns, heads

    def __len__(self) -> int:
        return len(self.heads)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        url, _, filesize, sha256 = self.heads[k]
        return self.columns.entry(k % len(self), url, filesize, sha256)

    def __iter__(self) -> Iterator[ShardEntry]:
        for k in range(len(self)):
            yield self[k]


def load_columns(folder: str, digest: str, counts: Sequence[int], where: str) -> IndexColumns:
    """Map and check the sidecar ``folder`` named by index ``where`` (its recorded ``digest``
    and per-shard sample ``counts``).

    Raises:
        ValueError: naming the file and the column: missing, another write's, wrong dtype or
            length, values out of range, offsets not monotonic.
    """
    remote = "://" in folder and not folder.startswith("file://")
    meta_path = f"{folder}/meta.json"
    try:
        meta = json.loads(_read(meta_path, remote))
    except FileNotFoundError:
        raise ValueError(f"{where}: its column sidecar {meta_path} is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{meta_path}: not a valid sidecar meta.json ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{meta_path}: not a format-{_FORMAT} column sidecar")
    if meta.get("digest") != digest:
        raise ValueError(
            f"{meta_path}: digest {meta.get('digest')!r}, {where} expects {digest!r}: the "
            "sidecar belongs to another write of the index (refused; rewrite the index)"
        )
    n = sum(counts)
    if meta.get("samples") != n or meta.get("shards") != len(counts):
        raise ValueError(
            f"{meta_path}: {meta.get('samples')} samples in {meta.get('shards')} shards, "
            f"{where} lists {n} in {len(counts)}"
        )
    members, names = meta.get("members"), meta.get("rows")
    if not isinstance(members, list) or not isinstance(names, list) or "json" not in members:
        raise ValueError(f"{meta_path}: 'members' (with 'json') and 'rows' must be lists")

    def column(file: str, length: int, kinds: str = "i") -> np.ndarray:
        path = f"{folder}/{file}.npy"
        try:
            if remote:  # (fetched whole: a mapped file needs a local path)
                array = np.load(io.BytesIO(_read(path, True)), allow_pickle=False)
            else:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise ValueError(f"{path}: column {file!r} is missing") from None
        # numpy's header reader raises any of these on a damaged header (tokenize's error
        # where its Python-2 fallback meets unbalanced brackets)
        except (ValueError, SyntaxError, TokenError, KeyError, TypeError, EOFError) as exc:
            raise ValueError(
                f"{path}: column {file!r} is not a .npy array ({type(exc).__name__}: {exc})"
            ) from None
        if array.ndim != 1 or array.dtype.kind not in kinds or array.dtype.itemsize > 8:
            raise ValueError(
                f"{path}: column {file!r} is {array.dtype} {array.shape}, expected a 1-d "
                f"{'uint8' if kinds == 'u' else 'int32/int64'} array"
            )
        if array.shape[0] != length:
            raise ValueError(f"{path}: column {file!r} has {array.shape[0]} entries, not {length}")
        return array

    def fail(file: str, i: int, reason: str) -> ValueError:
        return ValueError(f"{folder}/{file}.npy: column {file!r} entry {i}: {reason}")

    counts_col = column("counts", len(counts))
    if not np.array_equal(counts_col, np.asarray(counts, dtype=np.int64)):
        k = int(np.argmax(counts_col != np.asarray(counts, dtype=np.int64)))
        raise fail("counts", k, f"{counts_col[k]} samples, {where} lists {counts[k]}")
    start, end = column("start", n), column("end", n)
    first = np.zeros(n, dtype=bool)
    starts = np.concatenate([[0], np.cumsum(counts_col, dtype=np.int64)])
    first[starts[:-1][counts_col > 0]] = True
    i = _first(n, lambda a, b: (start[a:b] < 0) | (end[a:b] <= start[a:b]))
    if i is not None:
        raise fail("end", i, f"{end[i]} is not after start {start[i]}")
    # within a shard samples follow each other: start[i] >= end[i - 1]
    i = _first(n - 1, lambda a, b: (start[a + 1 : b + 1] < end[a:b]) & ~first[a + 1 : b + 1])
    if i is not None:
        i += 1
        raise fail("start", i, f"{start[i]} is before the previous sample's end {end[i - 1]}")
    key_offsets = column("key_offsets", n + 1)
    i = _first(n, lambda a, b: key_offsets[a + 1 : b + 1] <= key_offsets[a:b])
    if key_offsets[0] != 0 or i is not None:
        raise fail("key_offsets", i or 0, "offsets must start at 0 and increase (non-empty keys)")
    blob = column("key_blob", int(key_offsets[-1]), kinds="u")
    if blob.dtype != np.uint8:
        raise ValueError(f"{folder}/key_blob.npy: column 'key_blob' must be uint8")
    i = _first(blob.shape[0], lambda a, b: blob[a:b] == 0)
    if i is not None:
        raise fail("key_blob", i, "a key holds a NUL byte")
    offsets, sizes = {}, {}
    for suffix in members:
        offset = column(f"offset.{suffix}", n)
        size = column(f"size.{suffix}", n)

        def outside(a: int, b: int, offset=offset, size=size, json=suffix == "json") -> np.ndarray:
            o, z, hi = offset[a:b], size[a:b], end[a:b]
            absent = o < 0
            # int64 sums: int32 columns cannot overflow here
            wrong = (z < 0) | (o < np.add(start[a:b], 512, dtype=np.int64))
            wrong |= np.add(o, z, dtype=np.int64) > hi
            wrong = np.where(absent, z != -1, wrong)
            return wrong | absent if json else wrong

        i = _first(n, outside)
        if i is not None:
            raise fail(
                f"offset.{suffix}",
                i,
                f"offset {offset[i]}, size {size[i]} do not lie inside the sample's bytes "
                f"[{start[i]}, {end[i]})",
            )
        offsets[suffix], sizes[suffix] = offset, size
    rows = {}
    for name in names:
        if f"{name}.npy" not in offsets:
            raise ValueError(f"{meta_path}: rows of {name!r}, a field without a member column")
        column_rows, present = column(f"rows.{name}", n), offsets[f"{name}.npy"]
        i = _first(n, lambda a, b, c=column_rows, p=present: (c[a:b] >= 0) != (p[a:b] >= 0))
        if i is not None:
            raise fail(f"rows.{name}", i, "disagrees with its member's presence")
        rows[name] = column_rows
    loaded = IndexColumns(counts_col, start, end, offsets, sizes, rows, key_offsets, blob)
    if not remote:
        loaded.__dict__["_source"] = (folder, list(members), list(names))
    loaded.__dict__["_digest"] = digest  # (what the JSON expects; `hetload check` recomputes)
    return loaded


def duplicate_key(columns: IndexColumns) -> str | None:
    """A key listed twice, or ``None`` (what loading a sidecar leaves to the writer's check;
    ``hetload check`` runs it): a sort of fixed-width keys, else a set of strings."""
    lengths = np.diff(columns.key_offsets)
    n = lengths.shape[0]
    if n and int(lengths.min()) == int(lengths.max()):
        fixed = np.asarray(columns.key_blob).view(f"S{int(lengths[0])}")
        ordered = np.sort(fixed)
        same = np.flatnonzero(ordered[1:] == ordered[:-1])
        return ordered[same[0]].decode("utf-8") if same.size else None
    seen: set[str] = set()
    for key in columns.keys:
        if key in seen:
            return key
        seen.add(key)
    return None


def _first(n: int, bad: Callable[[int, int], np.ndarray]) -> int | None:
    """The first ``i`` in ``[0, n)`` where ``bad(a, b)`` (bool ``[b - a]`` over ``a:b``) holds,
    evaluated a chunk at a time (the temporaries stay a few MiB at any index size)."""
    for a in range(0, n, _CHUNK):
        hits = np.flatnonzero(bad(a, min(n, a + _CHUNK)))
        if hits.size:
            return a + int(hits[0])
    return None


def _read(path: str, remote: bool) -> bytes:
    if not remote:
        with open(path.removeprefix("file://"), "rb") as f:
            return f.read()
    import fsspec

    with fsspec.open(path, "rb") as f:
        return f.read()
