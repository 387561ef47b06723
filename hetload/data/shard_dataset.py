"""``ShardDataset``: map-style random access to preprocessed shards through their index.

Reading sample ``i`` is one positioned read of its byte range ``[start, end)`` (all its tar
members are adjacent), a check of each member's tar header name against the index, and a parse
of each ``.npy`` header; the arrays are views into the one buffer read (no second copy). No tar
is ever scanned, and ``sizes`` come from the index, so a sampler never opens a shard.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hetload.data.batch_read import read_batch, read_stored
from hetload.data.leases import Leases
from hetload.data.shard_handles import ShardHandles
from hetload.data.substitute import getitems
from hetload.errors import ErrorPolicy, OnError
from hetload.guards import check_fields, shown
from hetload.shards.format import BLOCK, ShardError, decode_meta, decode_sample, member_name
from hetload.shards.index import ShardIndex, check_shards, is_url
from hetload.transforms import check_transformed, out_sizes, run_seeded, sample_rng

__all__ = ["ShardDataset"]


class ShardDataset(Dataset):
    """Samples of preprocessed shards, by position, as dicts of numpy arrays.

    Args:
        source: an ``index.json`` path, the directory holding it, an fsspec URL of one, or a
            loaded :class:`~hetload.shards.ShardIndex`.
        fields: the fields to return; ``None`` returns every field the sample was stored with.
        size_field: the field whose row count is ``sizes[i]``; default ``"verts"``, else
            ``"points"``, else the first stored field.
        on_error: ``"raise"`` | ``"skip"`` | ``"warn"`` or an :class:`~hetload.ErrorPolicy`; a
            skipped sample comes back as ``None`` (``collate`` leaves it out) and is recorded in
            :attr:`report`.
        check: compare each local shard's size with the index on construction (one ``stat``
            each), so a truncated or replaced shard is reported before training starts: raised
            under ``on_error="raise"``, else recorded in :attr:`report`.
        max_open: file handles kept open per process (least recently used are closed).
        transform: applied to each sample after reading, drawing from the generator of
            ``(seed, epoch, i)`` as in :class:`~hetload.data.MeshFolder` (see :meth:`set_epoch`);
            its ``out_size`` (:func:`hetload.transforms.out_sizes`) sets ``sizes``.
        seed: the base seed of the transform's generators.

    Every sample carries ``"key"`` (its source path without the extension) and, when the shards
    were written with labels (``hetload preprocess --labels folder`` or ``--manifest``),
    ``"label"`` (and the manifest's other values).

    Attributes:
        sizes: ``int64 [N]``, rows of ``size_field`` per sample (0 where a sample lacks it),
            after ``transform``.
        field_sizes: ``{field: int64 [N]}`` for every stored field, after ``transform``.
        classes: ``list[str]`` the labels number (from the index), or ``None``.
        index: the :class:`~hetload.shards.ShardIndex`.

    Handles are opened lazily in the process that reads (checked by pid), so the dataset works in
    DataLoader workers, forked or spawned.
    """

    def __init__(
        self,
        source: str | os.PathLike | ShardIndex,
        *,
        fields: Sequence[str] | None = None,
        size_field: str | None = None,
        on_error: OnError | ErrorPolicy = "raise",
        check: bool = True,
        max_open: int = 64,
        transform: Callable[..., Any] | None = None,
        seed: int = 0,
    ) -> None:
        self.index = source if isinstance(source, ShardIndex) else ShardIndex.load(source)
        self.fields = check_fields(fields, "ShardDataset")
        # shared: skips in DataLoader workers reach this process's report
        self.policy = ErrorPolicy(on_error).share()
        if check:
            # shard by shard, through the policy: under "skip" / "warn" every truncated or
            # missing shard is named in the report, and its readable samples are still served
            for k in range(len(self.index.shards)):
                try:
                    check_shards(self.index, shards=[k])
                except ShardError as exc:
                    self.policy.handle(exc.source, exc)
        self.max_open = max(1, int(max_open))  # (kept by self._handles)
        # every sample's columns, in index order (memory-mapped from a large index's sidecar)
        columns = self.index.columns
        count = len(self.index.shards)
        self._urls = self.index.shard_urls()
        self._shard_of = np.repeat(np.arange(count, dtype=np.int32), columns.counts)
        self._start, self._end = columns.start, columns.end
        self._keys = columns.keys  # keys[i] decodes one key (no list of N strings)
        suffixes = sorted(columns.offset)
        self._offset = dict(columns.offset)
        self._size = dict(columns.size)
        # the members a read looks at: all, or the selected fields' and the metadata
        wanted = None if fields is None else {f"{name}.npy" for name in fields} | {"json"}
        self._suffixes = [s for s in suffixes if wanted is None or s in wanted]
        names = self.index.field_names()
        if size_field is None:
            size_field = next((n for n in ("verts", "points") if n in names), None)
            size_field = size_field if size_field is not None or not names else names[0]
        if size_field is not None and names and size_field not in names:
            # every sample would be sized 0: the sampler would ignore the budget
            raise ValueError(
                f"ShardDataset: size_field {shown(size_field)} is not a field of the index "
                f"(fields: {', '.join(names)})"
            )
        self.size_field = size_field
        self.transform = transform
        self.seed = int(seed)
        # shared memory: set_epoch in the main process reaches (even persistent) workers; only
        # with a transform (it costs a file descriptor, and nothing else reads the epoch)
        self._epoch = torch.zeros((), dtype=torch.int64)
        if transform is not None:
            self._epoch.share_memory_()
        self.field_sizes = {
            name: out_sizes(transform, np.maximum(self.index.rows(name), 0), name) for name in names
        }
        self.sizes: np.ndarray = (
            self.field_sizes[size_field]
            if size_field in self.field_sizes
            else out_sizes(transform, np.zeros(len(self._keys), np.int64), "verts")
        )
        settings = self.index.info.get("settings", {})
        targets = settings.get("targets", {}) if isinstance(settings, dict) else {}
        self.classes: list[str] | None = targets.get("classes") if targets else None
        self._handles = ShardHandles(max_open)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def report(self):
        """Samples dropped under ``on_error="skip"|"warn"`` by any process, with reasons."""
        return self.policy.report

    def set_epoch(self, epoch: int) -> None:
        """Reseed the transform for ``epoch`` (workers see it: the epoch is in shared memory)."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def key(self, i: int) -> str:
        """The key of sample ``i`` (its position in the sorted input file list)."""
        return self._keys[self._position(i)]

    def meta(self, i: int) -> dict[str, Any]:
        """The ``.json`` metadata of sample ``i``: ``source`` path, ``counts`` as read, ..."""
        i = self._position(i)
        members = self._read_members(i)
        return decode_meta(members.get("json"), self._urls[self._shard_of[i]], self._keys[i])

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        i = self._position(i)
        url = self._urls[self._shard_of[i]]
        try:
            members = self._read_members(i)
            sample = decode_sample(members, url, self._keys[i], self.fields)
        except (ShardError, OSError) as exc:
            self.policy.handle(getattr(exc, "source", f"{url}:{self._keys[i]}"), exc)
            return None
        return self._transformed(i, sample)

    def _transformed(self, i: int, sample: dict[str, Any]) -> dict[str, Any] | None:
        """Stored sample ``i`` (a position) through the transform, under the policy."""
        if self.transform is None:
            return sample
        where = f"{self._urls[self._shard_of[i]]}:{self._keys[i]}"
        try:
            out = run_seeded(self.transform, sample, sample_rng(self.seed, self.epoch, i))
        except ValueError as exc:  # a transform refusing this sample
            self.policy.handle(where, exc)
            return None
        # outside the policy: more rows than out_size states, or labels left behind by a crop,
        # is a bug of the transform (every sample would be wrong), not of this sample
        check_transformed(self.transform, sample, out, f"ShardDataset sample {i} ({where})")
        return out

    def __getitems__(self, indices: Sequence[int]) -> Sequence[dict[str, Any] | None]:
        """The samples of one batch (DataLoader calls this with a batch sampler's batches):
        skipped ones are ``None``, and a batch whose every sample was skipped gets one
        substitute instead, named in :attr:`report` (see :mod:`hetload.data.substitute`).

        Without a transform, over local shards, the batch's arrays are read straight into one
        batch buffer (:mod:`hetload.data.batch_read`): the result is then a
        :class:`~hetload.packed.PackedSamples`, a sequence of the same sample dicts that
        :func:`hetload.collate` batches without copying the arrays again."""
        if self.transform is not None:
            return self._getitems_transformed(indices)
        packed = read_batch(self, indices)
        return packed if packed is not None else getitems(self, indices)

    def _getitems_transformed(self, indices: Sequence[int]) -> list[dict[str, Any] | None]:
        """With a transform: the batch's stored samples by one batch read where it can
        (:func:`~hetload.data.batch_read.read_stored`), each then transformed as
        :meth:`__getitem__` does (same seed, policy, checks); a sample read again (a substitute
        for a skipped batch) comes from :meth:`__getitem__`."""
        stored = read_stored(self, indices)
        if stored is None:
            return getitems(self, indices)
        ready: dict[int, list[dict[str, Any]]] = {}
        for i, sample in zip(indices, stored, strict=True):
            ready.setdefault(i, []).append(sample)

        def getitem(i: int) -> dict[str, Any] | None:
            samples = ready.get(i)
            if not samples:
                return self[i]
            return self._transformed(self._position(i), samples.pop(0))

        return getitems(self, indices, getitem)

    def _getitems_into(
        self, indices: Sequence[int], allocate: Callable[[int], torch.Tensor]
    ) -> Sequence[dict[str, Any] | None]:
        """:meth:`__getitems__` with the batch buffer from ``allocate(nbytes)`` (``uint8``;
        e.g. pinned memory, see :class:`~hetload.data.ThreadedLoader`)."""
        packed = read_batch(self, indices, allocate)
        return packed if packed is not None else getitems(self, indices)

    def _describe(self, i: int) -> str:
        return f"{self._urls[self._shard_of[i]]}:{self._keys[i]}"

    def _position(self, i: int) -> int:
        n = len(self._keys)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"ShardDataset indices are ints, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for a dataset of {n}")
        return int(i) % n

    def _read_members(self, i: int) -> dict[str, memoryview]:
        shard = int(self._shard_of[i])
        url, key = self._urls[shard], self._keys[i]
        start, end = int(self._start[i]), int(self._end[i])
        buffer = self._read_range(shard, start, end)
        if len(buffer) != end - start:
            raise ShardError(
                url,
                member_name(key, "json"),
                f"sample {key} needs bytes [{start}, {end}) but the shard ends at "
                f"{start + len(buffer)}: truncated",
            )
        view = memoryview(buffer)
        members: dict[str, memoryview] = {}
        for suffix in self._suffixes:
            offset = int(self._offset[suffix][i])
            if offset < 0:
                continue
            size = int(self._size[suffix][i])
            name = member_name(key, suffix)
            rel = offset - start
            if rel < BLOCK or rel + size > len(view):
                raise ShardError(url, name, "index offsets lie outside the sample's bytes")
            header = view[rel - BLOCK : rel]
            # the writer's exact name and size fields, compared as bytes (the fast path)
            if header[:100] == name.encode().ljust(100, b"\0") and header[124:135] == (
                b"%011o" % size
            ):
                members[suffix] = view[rel : rel + size]
                continue
            found = _header_mismatch(header, name, size)
            if found is not None:
                raise ShardError(
                    url,
                    name,
                    f"the tar header at byte {offset - BLOCK} holds {found}: the index does not "
                    "match this shard (rebuilt or replaced?)",
                )
            members[suffix] = view[rel : rel + size]
        return members

    def _read_range(self, shard: int, start: int, end: int) -> np.ndarray:
        """``uint8 [end - start]`` (fewer where the file ends early), one positioned read; the
        sample's arrays are views into it, so it is not zero-filled first."""
        url = self._urls[shard]
        if is_url(url):
            return np.frombuffer(bytearray(_fsspec_range(url, start, end)), dtype=np.uint8)
        buffer = np.empty(end - start, dtype=np.uint8)
        # pinned: another thread's read may evict the cached descriptor meanwhile
        with Leases(self) as leases:
            got = os.preadv(leases.fd(shard), [buffer], start)
        return buffer if got == len(buffer) else buffer[:got]

    def _pin(self, shards: Iterable[int]) -> dict[int, int]:
        """``{shard: fd}`` for ``shards``, pinned open until :meth:`_unpin` (see
        :mod:`hetload.data.shard_handles`)."""
        return self._handles.pin(shards, self._urls.__getitem__)

    def _unpin(self, fds: Iterable[int]) -> None:
        self._handles.unpin(fds)

    def close(self) -> None:
        """Close this process's file handles (they reopen on the next read)."""
        self._handles.close()

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self.close()

    def __repr__(self) -> str:
        return (
            f"ShardDataset({len(self)} samples in {len(self._urls)} shards at "
            f"{self.index.root!r}, size_field={self.size_field!r})"
        )


def _header_mismatch(header: memoryview, name: str, size: int) -> str | None:
    """``None`` when the ustar header describes member ``name`` of ``size`` bytes, else what
    it describes instead."""
    stored_name = bytes(header[:100]).split(b"\0", 1)[0].decode(errors="replace")
    field = bytes(header[124:136]).split(b"\0", 1)[0].strip()
    try:
        stored_size = int(field, 8)
    except ValueError:
        stored_size = -1
    if stored_name == name and stored_size == size:
        return None
    return f"member {stored_name!r} of {stored_size} bytes"


def _fsspec_range(url: str, start: int, end: int) -> bytes:
    try:
        import fsspec
    except ImportError:
        raise ImportError(f"random access to {url} needs fsspec (pip install fsspec)") from None
    fs, path = fsspec.core.url_to_fs(url)
    return fs.cat_file(path, start=start, end=end)
