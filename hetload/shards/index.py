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
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hetload.guards import NotRegularFile, check_regular, open_regular, read_regular, shown
from hetload.shards.columns import COLUMNS_FROM, ColumnShards, IndexColumns, load_columns
from hetload.shards.format import ShardError
from hetload.shards.index_entry import ShardEntry, shard_header

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
class ShardIndex:
    """A loaded ``index.json``: shards in order, the run's settings, and where it lives.

    ``root`` is the directory (or URL prefix) shard URLs are relative to. An index of more than
    :data:`~hetload.shards.columns.COLUMNS_FROM` samples keeps its per-sample columns in a
    memory-mapped sidecar (:mod:`hetload.shards.columns`): ``shards`` then makes each
    :class:`ShardEntry` when asked, and :attr:`columns` holds every sample's columns.
    """

    shards: Sequence[ShardEntry]
    root: str = "."
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    _columns: IndexColumns | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def columns(self) -> IndexColumns:
        """Every sample's columns, concatenated in index order (the sidecar's, memory-mapped,
        or built once from the parsed entries)."""
        if self._columns is None:
            self._columns = IndexColumns.from_entries(self.shards)
        return self._columns

    @property
    def nsamples(self) -> int:
        return int(self.counts().sum())

    def counts(self) -> np.ndarray:
        """int64 ``[S]``: samples per shard."""
        if isinstance(self.shards, ColumnShards):
            return np.asarray(self.shards.columns.counts, dtype=np.int64)
        return np.asarray([shard.nsamples for shard in self.shards], dtype=np.int64)

    def __repr__(self) -> str:
        # a summary: printing every shard's per-sample columns would dump the whole index
        return (
            f"ShardIndex(name={self.name!r}, root={self.root!r}, shards={len(self.shards)}, "
            f"samples={self.nsamples}, fields={self.field_names()})"
        )

    def shard_url(self, i: int) -> str:
        """The full path or URL of shard ``i``."""
        url = self.shards.heads[i][0] if isinstance(self.shards, ColumnShards) else None
        return join_url(self.root, url if url is not None else self.shards[i].url)

    def shard_urls(self) -> list[str]:
        """Every shard's :meth:`shard_url`, in one pass (100k shards: no per-shard joins)."""
        urls = [head[0] for head in self.heads()]
        joined = "\n" + "\n".join(urls)
        if any(mark in joined for mark in ("://", "pipe:", "\n/")) or os.sep != "/":
            return [join_url(self.root, url) for url in urls]
        prefix = self.root if not self.root or self.root.endswith("/") else self.root + "/"
        return [prefix + url for url in urls]

    def field_names(self) -> list[str]:
        """Every array field any sample holds, sorted."""
        if isinstance(self.shards, ColumnShards):
            return sorted(self.shards.columns.rows)
        return sorted({name for shard in self.shards for name in shard.rows})

    def rows(self, name: str) -> np.ndarray:
        """``int64 [N]``: the first-dim size of field ``name`` of every sample, -1 where absent."""
        column = self.columns.rows.get(name)
        if column is None:
            return np.full(self.nsamples, -1, dtype=np.int64)
        return np.asarray(column, dtype=np.int64)

    def head(self, i: int) -> tuple[str, int, int, str]:
        """``(url, nsamples, filesize, sha256)`` of shard ``i``."""
        if isinstance(self.shards, ColumnShards):
            return self.shards.heads[i]
        s = self.shards[i]
        return s.url, s.nsamples, s.filesize, s.sha256

    def heads(self) -> list[tuple[str, int, int, str]]:
        """``(url, nsamples, filesize, sha256)`` of every shard (no per-sample column)."""
        if isinstance(self.shards, ColumnShards):
            return list(self.shards.heads)
        return [(s.url, s.nsamples, s.filesize, s.sha256) for s in self.shards]

    def to_json(self, lists: bool = True) -> dict[str, Any]:
        """The JSON form; without the per-sample lists unless ``lists`` (then :meth:`write`
        records the sidecar that holds them)."""
        if lists:
            shardlist = [shard.to_json() for shard in self.shards]
        else:
            keys = ("url", "nsamples", "filesize", "sha256")
            shardlist = [dict(zip(keys, head)) for head in self.heads()]
        return {
            "__kind__": _WIDS_KIND,
            "wids_version": 1,
            "name": self.name,
            "hetload": {"format": INDEX_FORMAT, **self.info},
            "shardlist": shardlist,
        }

    def write(self, path: str | os.PathLike, *, lists: bool | None = None) -> Path:
        """Write atomically (temporary name, fsync, rename).

        ``lists``: keep the per-sample lists in the JSON (default: below
        :data:`~hetload.shards.columns.COLUMNS_FROM` samples). Without them the columns go to
        the sidecar ``<stem>.<digest>.columns/`` beside ``path`` first, and the JSON names it;
        the sidecars of earlier writes of the same index are removed afterwards.
        """
        path = Path(path)
        lists = self.nsamples < COLUMNS_FROM if lists is None else bool(lists)
        data = self.to_json(lists)
        sidecar = None
        if not lists:
            sidecar = self.columns.write(path.parent, path.stem)
            data["hetload"]["columns"] = {"path": sidecar, "digest": sidecar.split(".")[-2]}
        write_atomic(path, json.dumps(data, separators=(",", ":")).encode() + b"\n")
        for old in path.parent.glob(f"{path.stem}.*.columns"):
            if old.name != sidecar and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)  # (another write's: never read again)
        return path

    @classmethod
    def load(cls, source: str | os.PathLike) -> ShardIndex:
        """Read an index from a path, a directory holding ``index.json``, or an fsspec URL
        (with its sidecar, when the index has one).

        Raises:
            ValueError / ShardError: naming the index file (and shard, or sidecar file and
                column) for a malformed index.
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
        spec = info.pop("columns", None)
        if spec is not None:
            shards = _sidecar_shards(spec, data["shardlist"], root, text)
        else:
            shards = [
                ShardEntry.from_json(entry, text, k) for k, entry in enumerate(data["shardlist"])
            ]
        _check_unique_shards(shards, text)
        index = cls(shards, root=root, name=name, info=info)
        if isinstance(shards, ColumnShards):
            index._columns = shards.columns
        return index


def _sidecar_shards(spec: Any, shardlist: list[Any], root: str, where: str) -> ColumnShards:
    """The shards of an index whose per-sample columns are in the sidecar ``spec`` names."""
    folder = spec.get("path") if isinstance(spec, Mapping) else None
    digest = spec.get("digest") if isinstance(spec, Mapping) else None
    if (
        not isinstance(folder, str)
        or not isinstance(digest, str)
        or "/" in folder
        or "\\" in folder
        or folder in ("", ".", "..")
    ):
        raise ValueError(f"{where}: 'columns' must name a sidecar folder and its digest")
    heads = _fast_heads(shardlist)
    if heads is None:  # something is off: entry by entry, to name it
        heads = [shard_header(entry, where, k) for k, entry in enumerate(shardlist)]
    columns = load_columns(join_url(root, folder), digest, [h[1] for h in heads], where)
    ends = columns.end[np.maximum(columns.starts[1:] - 1, 0)] if len(heads) else np.zeros(0)
    for k, (url, n, filesize, _) in enumerate(heads):
        if n and filesize >= 0 and ends[k] > filesize:
            raise ShardError(
                url,
                None,
                f"index {where}, entry {k}: the last sample ends at byte {ends[k]}, "
                f"past 'filesize' {filesize}",
            )
    return ColumnShards(columns, heads)


def _fast_heads(shardlist: list[Any]) -> list[tuple[str, int, int, str]] | None:
    """:func:`shard_header` of every entry in a few C-speed passes, or ``None`` where any entry
    needs the entry-by-entry check (which names the problem)."""
    try:
        urls = [e["url"] for e in shardlist]
        counts = [e["nsamples"] for e in shardlist]
        sizes = [e.get("filesize", -1) for e in shardlist]
        digests = [e.get("sha256", "") for e in shardlist]
        joined = "\n".join(urls)
        "".join(digests)  # (TypeError unless all strings)
    except (TypeError, KeyError, AttributeError):
        return None
    if "\0" in joined or (urls and min(map(len, urls)) == 0):
        return None
    if any(type(v) is not int for v in counts) or any(type(v) is not int for v in sizes):
        return None  # (bools and floats included)
    if len(counts) and (min(counts) < 0 or max(counts) >= 2**40):
        return None
    if len(sizes) and (min(sizes) < -1 or max(sizes) >= 2**62):
        return None
    return list(zip(urls, counts, sizes, digests))


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


def check_shards(
    index: ShardIndex, *, deep: bool = False, shards: Iterable[int] | None = None
) -> None:
    """Check that every local shard (or those numbered in ``shards``) exists with the size the
    index records (and, ``deep``, the same sha256). Remote shards are not checked here (their
    reads are).

    Raises:
        ShardError: naming the shard for a missing, truncated or replaced file.
    """
    for i in range(len(index.shards)) if shards is None else shards:
        _, _, filesize, sha256 = index.head(i)
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
        if filesize >= 0 and size != filesize:
            raise ShardError(
                path,
                None,
                f"is {size} bytes, the index says {filesize}: truncated or replaced "
                "since the index was written",
            )
        if deep and sha256:
            digest = hashlib.sha256()
            with open_regular(path) as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != sha256:
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
    if isinstance(shards, ColumnShards):
        urls = [head[0] for head in shards.heads]
    else:
        urls = [shard.url for shard in shards]
    joined = "\n".join(urls)
    plain = not any(part in joined for part in ("/.", "./", "//", "/\n"))
    plain = plain and not joined.startswith(".") and not joined.endswith("/")
    if plain and len(set(urls)) == len(urls):
        urls = []  # (distinct, and normpath would change none of them: one pass of C)
    for k, url in enumerate(urls):
        url = posixpath.normpath(url)
        if url in seen:
            raise ShardError(
                url, None, f"index {where}: entries {seen[url]} and {k} list the same shard"
            )
        seen[url] = k
    if isinstance(shards, ColumnShards):
        return  # (keys: checked unique when the index was written, vouched for by the digest)
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
