"""``ShardWriter``: one tar shard, written under a temporary name and renamed when complete.

The bytes depend only on the samples given: every header has the same mtime, uid, gid, owner
and mode (ustar format), members keep the order they are added in (sorted within a sample), and
the archive ends like Python's ``tarfile`` ends it (two zero blocks, padded to a 10 KiB record).
So the same samples always give the same file, which is what makes ``preprocess`` deterministic
and a restarted run byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hetload.shards.format import BLOCK, EncodedSample, encode_sample, member_name
from hetload.shards.index import ShardEntry, ShardIndex

__all__ = ["ShardSequence", "ShardWriter", "tar_header", "write_shards"]

_RECORD = 20 * BLOCK
_ZEROS = bytes(_RECORD)


def tar_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of a regular file ``name`` of ``size`` bytes, fixed metadata."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


class ShardWriter:
    """Append samples to ``<path>.partial``; :meth:`close` finishes the archive and renames it.

    Only a complete shard is ever visible under ``path``. The entry it returns (``ShardEntry``)
    records each sample's byte range and each member's data offset for the index.

    >>> with ShardWriter(Path("shard-000000.tar")) as writer:  # doctest: +SKIP
    ...     writer.add(encoded_sample)
    """

    def __init__(self, path: str | os.PathLike, *, url: str | None = None) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._file = open(self.partial, "wb")  # noqa: SIM115 (closed by close/abort)
        self._digest = hashlib.sha256()
        self._pos = 0
        self.entry = ShardEntry(url=url if url is not None else self.path.name)

    @property
    def nbytes(self) -> int:
        """Bytes written so far (headers and padding included, end blocks not)."""
        return self._pos

    @property
    def nsamples(self) -> int:
        return self.entry.nsamples

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self._pos += len(data)

    def add(self, sample: EncodedSample) -> None:
        """Append the members of one sample and record them in :attr:`entry`."""
        entry = self.entry
        n = entry.nsamples
        entry.keys.append(sample.key)
        entry.start.append(self._pos)
        for suffix, data in sample.members:
            if suffix not in entry.offset:
                entry.offset[suffix] = [-1] * n
                entry.size[suffix] = [-1] * n
            self._write(tar_header(member_name(sample.key, suffix), len(data)))
            entry.offset[suffix].append(self._pos)
            entry.size[suffix].append(len(data))
            self._write(data)
            pad = -len(data) % BLOCK
            if pad:
                self._write(_ZEROS[:pad])
        entry.end.append(self._pos)
        for name, rows in sample.rows.items():
            entry.rows.setdefault(name, [-1] * n).append(rows)
        entry.nsamples = n + 1
        for columns in (entry.offset, entry.size, entry.rows):
            for column in columns.values():
                if len(column) == n:
                    column.append(-1)

    def close(self) -> ShardEntry:
        """Write the end-of-archive blocks, fsync, rename to the final name; return the entry.

        If any of that fails (a full disk), the partial file is dropped before the error goes
        on: the caller no longer holds this writer to abort it."""
        end = self._pos + 2 * BLOCK
        try:
            self._write(_ZEROS[: 2 * BLOCK + (-end % _RECORD)])
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.partial, self.path)
        except BaseException:
            self.abort()
            raise
        self.entry.filesize = self._pos
        self.entry.sha256 = self._digest.hexdigest()
        return self.entry

    def abort(self) -> None:
        """Drop the unfinished shard."""
        if not self._file.closed:
            # on a full disk the flush of the dropped bytes fails too; the file closes anyway
            with contextlib.suppress(OSError):
                self._file.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._file.closed:
            self.close()


class ShardSequence:
    """Cut an ordered stream of samples into shards ``shard-000000.tar``, ``shard-000001.tar``, ...

    A new shard starts when the open one holds ``max_count`` samples, or when the next sample
    would take it past ``shard_size`` bytes (a sample bigger than that gets a shard of its own).
    The cut depends only on the sample sequence, never on timing.

    Args:
        directory: where the shards go.
        shard_size: byte budget of one shard (tar headers and padding included).
        max_count: sample budget of one shard; ``None`` for no limit.
        first_shard: the number of the first shard written (a resumed run continues the count).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        shard_size: int,
        max_count: int | None = None,
        first_shard: int = 0,
    ) -> None:
        if shard_size <= 0:
            raise ValueError(f"shard_size must be positive, got {shard_size}")
        if max_count is not None and max_count <= 0:
            raise ValueError(f"max_count must be positive, got {max_count}")
        self.directory = Path(directory)
        self.shard_size = shard_size
        self.max_count = max_count
        self.next_shard = first_shard
        self._writer: ShardWriter | None = None

    @staticmethod
    def name(number: int) -> str:
        return f"shard-{number:06d}.tar"

    def add(self, sample: EncodedSample) -> ShardEntry | None:
        """Append ``sample``; returns the entry of the shard this closed first, if any."""
        closed = None
        writer = self._writer
        if writer is not None and (
            (self.max_count is not None and writer.nsamples >= self.max_count)
            or writer.nbytes + sample.tar_bytes > self.shard_size
        ):
            closed = self.close()
        if self._writer is None:
            name = self.name(self.next_shard)
            self._writer = ShardWriter(self.directory / name, url=name)
            self.next_shard += 1
        self._writer.add(sample)
        return closed

    def close(self) -> ShardEntry | None:
        """Finish the open shard (if any) and return its entry."""
        writer, self._writer = self._writer, None
        return None if writer is None else writer.close()

    def abort(self) -> None:
        """Drop the open shard's partial file."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()


def write_shards(
    samples: Iterable[Mapping[str, Any]],
    directory: str | os.PathLike,
    *,
    shard_size: int = 256 * 10**6,
    max_count: int | None = None,
) -> ShardIndex:
    """Write in-memory sample dicts to shards plus ``index.json`` in ``directory``.

    The keys are the samples' positions (``000000000``, ...). For files on disk use
    :func:`hetload.shards.preprocess.preprocess`, which is parallel and resumable.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sequence = ShardSequence(directory, shard_size=shard_size, max_count=max_count)
    shards: list[ShardEntry] = []
    try:
        for i, sample in enumerate(samples):
            counts = {
                k: v.shape[0] for k, v in sample.items() if isinstance(v, np.ndarray) and v.ndim
            }
            encoded = encode_sample(f"{i:09d}", sample, source=f"sample-{i}", counts=counts)
            closed = sequence.add(encoded)
            if closed is not None:
                shards.append(closed)
    except BaseException:
        sequence.abort()
        raise
    last = sequence.close()
    if last is not None:
        shards.append(last)
    index = ShardIndex(
        shards,
        root=str(directory),
        name=directory.name,
        info={"parts": [[0, 1]], "samples": sum(s.nsamples for s in shards), "skipped": 0},
    )
    index.write(directory / "index.json")
    return index
