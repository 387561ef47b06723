"""``ShardStream``: preprocessed shards streamed through WebDataset, batched, collated.

Each epoch every process computes the same global plan from the index alone, without
communicating:

1. the shards are permuted by ``(seed, epoch)`` (or kept in order when ``shuffle=False``);
2. shard ``k`` of that order goes to rank ``k % world_size``; a rank's shards go round-robin to
   its DataLoader workers (every rank is assumed to run the same ``num_workers``);
3. each (rank, worker) stream reads its shards in order with WebDataset's tar reader and feeds
   the samples to the batching stage, seeded by ``(seed, epoch, rank, worker)``;
4. **equal batch counts** (the webdataset trap: a rank with fewer batches leaves the others
   waiting in an all-reduce forever): the batching stage is deterministic given the sample sizes,
   which the index holds, so every process dry-runs it on the sizes of every stream and knows
   how many batches each will yield. With ``even="truncate"`` (default) every rank yields the
   smallest rank's total, with ``even="pad"`` the largest's; the difference is taken from (or
   added to) the rank's workers with the most (fewest) batches, a padded stream repeating its
   batches from its start. A sample that fails to decode, or a shard that differs from its
   index (``on_error="skip"``), shortens its stream, which is then padded the same way, so the
   counts hold even then; samples are sized from the index (matched by key), so the dry run
   and the stream cut the same batches whatever ``fields`` decodes.

Every rank must hold at least one shard: make ``--shard-size`` / ``--max-count`` small enough
that there are at least ``world_size`` shards, preferably ``world_size * num_workers`` or more
(a worker without a shard yields nothing, and truncation then costs more).
"""

from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from hetload.collate import collate
from hetload.errors import ErrorPolicy, OnError
from hetload.guards import check_fields, check_seed, open_regular, shown
from hetload.shards.format import ShardError, decode_sample
from hetload.shards.index import ShardIndex, is_url
from hetload.transforms import out_sizes

__all__ = ["Batcher", "ShardStream", "StreamPlan", "fixed_batches", "token_batches"]

#: ``batcher(items, size_fn, seed) -> iterator of lists of items``; must depend only on the
#: sequence of ``size_fn(item)`` values and ``seed`` (ShardStream dry-runs it on sizes)
Batcher = Callable[[Iterable[Any], Callable[[Any], int], int], Iterator[list[Any]]]


def fixed_batches(batch_size: int) -> Batcher:
    """A batcher of ``batch_size`` samples per batch (the last one shorter), in stream order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def batcher(items: Iterable[Any], size_fn: Callable[[Any], int], seed: int):
        batch: list[Any] = []
        for item in items:
            batch.append(item)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    return batcher


def token_batches(max_tokens: int, buffer_size: int = 2048, **options: Any) -> Batcher:
    """:func:`hetload.samplers.stream_batches` (a bounded buffer, sorted and cut under the
    budget) as a :data:`Batcher`; ``options`` are its ``cost``, ``max_batch_size``, ``oversize``.
    """
    from hetload.samplers import stream_batches

    def batcher(items: Iterable[Any], size_fn: Callable[[Any], int], seed: int):
        return stream_batches(
            items, size_fn, max_tokens, buffer_size=buffer_size, seed=seed, **options
        )

    return batcher


@dataclass(frozen=True)
class StreamPlan:
    """One epoch: ``shards[r][w]`` (shard numbers read by worker ``w`` of rank ``r``, in order),
    ``counts[r][w]`` (batches its stream yields), ``quota[r][w]`` (batches it must yield)."""

    shards: list[list[list[int]]]
    counts: list[list[int]]
    quota: list[list[int]]

    def batches_per_rank(self) -> int:
        return sum(self.quota[0])


class ShardStream(IterableDataset):
    """Stream batches from preprocessed shards: local paths, ``pipe:`` commands or fsspec URLs.

    >>> stream = ShardStream("dst/index.json", max_tokens=200_000, seed=0)   # doctest: +SKIP
    >>> loader = DataLoader(stream, batch_size=None, num_workers=4)          # doctest: +SKIP
    >>> for epoch in range(epochs):                                          # doctest: +SKIP
    ...     stream.set_epoch(epoch)
    ...     for batch in loader: ...                                          # HeteroBatch

    Args:
        source: the index (``index.json`` path, its folder, an fsspec URL of it, or a
            :class:`~hetload.shards.ShardIndex`), or shard URLs (a list, or one string with
            WebDataset brace notation ``shard-{000000..000099}.tar``) listed in index order,
            when the shards are read from somewhere else than the index's folder.
        index: the index, when ``source`` is a list of URLs (the plan needs its sizes).
        shuffle: permute the shards every epoch by ``(seed, epoch)``.
        seed: shared by every rank.
        rank, world_size: this process's place in the job; both given, or both from
            ``torch.distributed`` when initialized (else 0 and 1).
        batch_size: fixed-size batches (in stream order), or
        max_tokens: batches within a token budget from
            :func:`hetload.samplers.stream_batches` (``cost`` ``"padded"`` by default:
            ``B * max N_i <= max_tokens``), or
        batcher: any :data:`Batcher` (e.g. :func:`token_batches` with more options).
        buffer_size: the bucketer's buffer, in samples (more pads less, holds more memory).
        size_field: the field whose rows are a sample's size (default as ``ShardDataset``),
            read from the index, so it need not be among ``fields``; a field the index lacks
            is refused.
        fields: the fields to decode (a list of names); ``None`` for all.
        collate_fn: turns a list of samples into a batch (``None`` yields the lists).
        transform: applied to each sample of a batch just before ``collate_fn`` (batches are
            formed on the sizes stored in the shards), drawing from the generator of
            ``(seed, epoch, sample position)`` (:func:`hetload.transforms.sample_rng`, the sample
            position being its key): the same augmentation on any rank, worker count or rerun.
        even: ``"truncate"`` or ``"pad"`` (see the module docstring).
        on_error: a shard or sample that cannot be read, or that differs from the index
            (byte size, sample keys, member names and sizes, rows, sample count: a shard is
            read up to its first difference): ``"raise"``, or skip it (``"skip"``, ``"warn"``)
            and record it in :attr:`report` (shared by the DataLoader workers), with the keys
            of the samples not served and the batches repeated to keep ranks in step.

    Use it with ``DataLoader(stream, batch_size=None, ...)``: it yields whole batches. The
    arrays of streamed samples are read-only views of the bytes WebDataset read (``collate``
    copies them once into the batch); a transform must not modify them in place.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str] | ShardIndex,
        *,
        index: str | os.PathLike | ShardIndex | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        batcher: Batcher | None = None,
        buffer_size: int = 2048,
        size_field: str | None = None,
        fields: Sequence[str] | None = None,
        collate_fn: Callable[[list[dict[str, Any]]], Any] | None = collate,
        transform: Callable[..., Any] | None = None,
        even: Literal["truncate", "pad"] = "truncate",
        on_error: OnError | ErrorPolicy = "raise",
    ) -> None:
        super().__init__()
        urls: list[str] | None = None
        if isinstance(source, str) and "{" in source and "}" in source:
            import braceexpand

            urls = list(braceexpand.braceexpand(source))
        elif isinstance(source, (list, tuple)):
            urls = [str(url) for url in source]
        elif index is None:
            index = source  # type: ignore[assignment]
        if index is None:
            raise ValueError(
                "ShardStream needs the shard index (index=...): every rank computes the same "
                "number of batches from its per-shard sizes, so a job never hangs"
            )
        self.index = index if isinstance(index, ShardIndex) else ShardIndex.load(index)
        count = len(self.index.shards)
        if urls is not None and len(urls) != count:
            raise ValueError(f"ShardStream: {len(urls)} URLs given, the index lists {count} shards")
        self.urls = urls if urls is not None else [self.index.shard_url(k) for k in range(count)]
        self.rank, self.world_size = _world(rank, world_size)
        chosen = [x is not None for x in (batch_size, max_tokens, batcher)]
        if sum(chosen) != 1:
            raise ValueError("ShardStream: give exactly one of batch_size, max_tokens, batcher")
        if batcher is None:
            batcher = (
                fixed_batches(batch_size)
                if batch_size is not None
                else token_batches(int(max_tokens), buffer_size)  # type: ignore[arg-type]
            )
        self.batcher = batcher
        if even not in ("truncate", "pad"):
            raise ValueError(f"even must be 'truncate' or 'pad', got {even!r}")
        self.even = even
        self.shuffle = shuffle
        self.seed = check_seed(seed, "ShardStream: seed")
        self.epoch = 0
        self._started = 0  # iterations begun since set_epoch (see set_epoch)
        self.fields = check_fields(fields, "ShardStream")
        self.collate_fn = collate_fn
        self.transform = transform
        # shared: skips in DataLoader workers reach this process's report
        self.policy = ErrorPolicy(on_error).share()
        names = self.index.field_names()
        if size_field is None:
            size_field = next(
                (n for n in ("verts", "points") if n in names), names[0] if names else None
            )
        if size_field is not None and names and size_field not in names:
            raise ValueError(
                f"ShardStream: size_field {size_field!r} is not a field of the index "
                f"(fields: {', '.join(names)})"
            )
        self.size_field = size_field
        # batches are cut on these sizes, from the index after the transform as it states them
        # (out_size), both in the plan's dry run and in the stream itself (each streamed sample
        # is matched to its index entry by key), so the two agree whatever `fields` decodes
        self._sizes = [
            out_sizes(
                transform,
                np.maximum(np.asarray(shard.rows.get(size_field, [0] * shard.nsamples)), 0),
                size_field or "verts",
            ).tolist()
            for shard in self.index.shards
        ]
        settings = self.index.info.get("settings", {})
        targets = settings.get("targets", {}) if isinstance(settings, dict) else {}
        #: the class names ``label`` numbers (written by ``preprocess --labels``), or None
        self.classes: list[str] | None = targets.get("classes") if targets else None
        self._plans: dict[tuple[int, int], StreamPlan] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the shard order and batching seed of ``epoch`` (call before iterating).

        Each iteration started afterwards in the same object advances the epoch by one, so a
        stream iterated again without ``set_epoch`` (in the main process, or in the copies
        ``persistent_workers=True`` keeps, which ``set_epoch`` cannot reach) still reshuffles.
        """
        self.epoch = check_seed(epoch, "ShardStream: epoch")
        self._started = 0

    @property
    def report(self):
        """Shards and samples skipped by any process (DataLoader workers included), with reasons."""
        return self.policy.report

    def num_batches(self, num_workers: int = 0) -> int:
        """Batches this rank yields in the next epoch with ``num_workers`` DataLoader workers."""
        return self.plan(num_workers).batches_per_rank()

    def plan(self, num_workers: int = 0, epoch: int | None = None) -> StreamPlan:
        """The plan of ``epoch`` (default: the next one) for every rank and worker; the same in
        every process."""
        workers = max(1, int(num_workers))
        key = (self.epoch + self._started if epoch is None else int(epoch), workers)
        if key not in self._plans:
            self._plans = {key: self._make_plan(*key)}
        return self._plans[key]

    def _make_plan(self, epoch: int, workers: int) -> StreamPlan:
        count, world = len(self.urls), self.world_size
        if count < world:
            raise ValueError(
                f"ShardStream: {count} shards cannot feed {world} ranks; preprocess with a "
                f"smaller --shard-size or --max-count so there are at least {world} "
                f"(better {world} x num_workers)"
            )
        order = (
            np.random.default_rng([0x5EED5, self.seed, epoch]).permutation(count)
            if self.shuffle
            else np.arange(count)
        ).tolist()
        shards = [[order[r::world][w::workers] for w in range(workers)] for r in range(world)]
        counts = [
            [self._count(shards[r][w], self._stream_seed(epoch, r, w)) for w in range(workers)]
            for r in range(world)
        ]
        totals = [sum(row) for row in counts]
        target = min(totals) if self.even == "truncate" else max(totals)
        quota = [_share(row, target) for row in counts]
        return StreamPlan(shards, counts, quota)

    def _stream_seed(self, epoch: int, rank: int, worker: int) -> int:
        state = np.random.SeedSequence([0x5EED6, self.seed, epoch, rank, worker])
        return int(state.generate_state(1)[0])

    def _count(self, shards: list[int], seed: int) -> int:
        sizes = (size for k in shards for size in self._sizes[k])
        try:
            return sum(1 for _ in self.batcher(sizes, int, seed))
        except ValueError as exc:
            names = ", ".join(self.urls[k] for k in shards)
            raise ValueError(f"ShardStream: planning the batches of {names}: {exc}") from None

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        epoch = self.epoch + self._started
        self._started += 1
        plan = self.plan(workers, epoch)
        shards = plan.shards[self.rank][worker]
        quota = plan.quota[self.rank][worker]
        seed = self._stream_seed(epoch, self.rank, worker)
        produced = 0
        while produced < quota:
            before = produced
            for items in self.batcher(self._samples(shards), _item_size, seed):
                batch = [sample for _, _, sample in items]
                if self.transform is not None:
                    batch = [self._transformed(key, sample, epoch) for _, key, sample in items]
                yield batch if self.collate_fn is None else self.collate_fn(batch)
                produced += 1
                if produced == quota:
                    return
            if produced == before:
                names = ", ".join(self.urls[k] for k in shards)
                raise ShardError(
                    names, None, f"no batch could be read, but this worker owes {quota}"
                )
            # the repeats are named in the report, as the skips that caused them are
            self.policy.note(
                f"rank {self.rank} worker {worker} epoch {epoch}",
                f"{quota - produced} of its {quota} planned batches are repeats from the start "
                "of its stream (even='pad', or samples skipped), so that every rank steps equally",
            )

    def _samples(self, shards: list[int]) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``(size from the index, key, sample)`` of every sample of ``shards`` that matches
        its index entry, in order."""
        for k in shards:
            url, entry = self.urls[k], self.index.shards[k]
            mismatch = _local_size_mismatch(url, entry.filesize)
            if mismatch is not None:
                # raised under "raise"; else the shard is still read, each sample checked
                # against its index entry, up to the first that differs
                self.policy.handle(url, ShardError(url, None, mismatch))
            position = 0
            for raw in self._read_shard(k):
                key = raw["__key__"]
                members = {name: data for name, data in raw.items() if not name.startswith("__")}
                problem = _entry_mismatch(entry, position, key, members)
                if problem is not None:
                    self._report_unserved(k, position, problem)
                    break
                position += 1
                try:
                    sample = decode_sample(members, url, key, self.fields)
                    _check_rows(entry, position - 1, sample, url, key)
                except ShardError as exc:
                    self.policy.handle(exc.source, exc)
                    continue
                yield self._sizes[k][position - 1], key, sample
            else:
                if position < entry.nsamples:
                    self._report_unserved(k, position, f"the shard ends after {position} samples")

    def _report_unserved(self, k: int, position: int, problem: str) -> None:
        """The shard differs from its index from sample ``position`` on: every sample not
        served is named in one report entry (raised under ``on_error="raise"``)."""
        entry = self.index.shards[k]
        lost = entry.keys[position:]
        named = f"key {lost[0]}" if len(lost) == 1 else f"keys {lost[0]}..{lost[-1]}"
        unserved = f"; {len(lost)} samples not served ({named})" if lost else ""
        error = ShardError(
            self.urls[k],
            None,
            f"does not match the index at sample {position}: {problem}{unserved} "
            "(rebuilt, replaced or truncated since the index was written?)",
        )
        self.policy.handle(error.source, error)

    def _transformed(self, key: str, sample: dict[str, Any], epoch: int) -> Any:
        from hetload.transforms import run_seeded, sample_rng

        # keys written by `hetload preprocess` are positions; others are hashed stably
        position = int(key) if key.isdigit() else zlib.crc32(key.encode("utf-8"))
        return run_seeded(self.transform, sample, sample_rng(self.seed, epoch, position))

    def _read_shard(self, k: int) -> Iterator[dict[str, Any]]:
        from webdataset.tariterators import group_by_keys, tar_file_expander

        url = self.urls[k]
        last_member: list[str | None] = [None]
        seen: list[BaseException | None] = [None]

        def handler(exn: BaseException) -> bool:
            if exn is seen[0]:  # wds reports one failure at each level it passes through
                return True
            seen[0] = exn
            after = f"after {last_member[0]}" if last_member[0] else "at the start"
            reason = str(exn.args[0]) if exn.args else type(exn).__name__
            reason = reason.split(" @ ")[0] + _size_hint(url, self.index.shards[k].filesize)
            error = ShardError(url, None, f"unreadable {after}: {reason}")
            self.policy.handle(error.source, error)
            return True

        def tracked(files: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for item in files:
                if "fname" in item:
                    last_member[0] = item["fname"]
                yield item

        try:
            stream = _open(url)
        except (OSError, ValueError) as exc:
            self.policy.handle(url, ShardError(url, None, f"cannot open: {exc}"))
            return
        try:
            files = tar_file_expander([{"url": url, "stream": stream}], handler=handler)
            yield from group_by_keys(tracked(files), lcase=False, handler=handler)
        finally:
            try:
                stream.close()  # a pipe: command's exit status is checked here
            except Exception as exc:
                self.policy.handle(url, ShardError(url, None, f"closing failed: {exc}"))

    def __repr__(self) -> str:
        return (
            f"ShardStream({len(self.urls)} shards, rank {self.rank}/{self.world_size}, "
            f"epoch {self.epoch}, even={self.even!r})"
        )


def _share(counts: list[int], target: int) -> list[int]:
    """Per-worker quotas summing to ``target``: cut from the largest / add to the smallest
    non-empty streams first, so the workers of a rank stay as even as possible."""
    quota = list(counts)
    total = sum(quota)
    if total > target:
        while total > target:
            w = max(range(len(quota)), key=lambda j: (quota[j], j))
            quota[w] -= 1
            total -= 1
    elif total < target:
        live = [w for w, c in enumerate(counts) if c > 0]
        if not live:
            raise ValueError("ShardStream: a rank has no batches to pad from")
        while total < target:
            w = min(live, key=lambda j: (quota[j], j))
            quota[w] += 1
            total += 1
    return quota


def _world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if (rank is None) != (world_size is None):
        raise ValueError("ShardStream: pass both rank and world_size, or neither")
    if rank is None:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    if not 0 <= rank < world_size:  # type: ignore[operator]
        raise ValueError(f"ShardStream: rank {rank} is outside [0, {world_size})")
    return int(rank), int(world_size)  # type: ignore[arg-type]


def _item_size(item: tuple[int, str, dict[str, Any]]) -> int:
    return item[0]


def _local_size_mismatch(url: str, expected: int) -> str | None:
    """For a local shard whose byte size differs from the index: the reason."""
    if is_url(url) or expected < 0:
        return None
    try:
        info = os.stat(url.removeprefix("file://"))
    except OSError:
        return None  # opening it reports the real problem
    size = info.st_size
    if size == expected or not stat.S_ISREG(info.st_mode):  # (a FIFO: refused on opening)
        return None
    return f"is {size} bytes, the index says {expected}: truncated or replaced"


def _entry_mismatch(entry: Any, position: int, key: str, members: dict[str, Any]) -> str | None:
    """How streamed sample ``position`` (``key``, its member suffixes) differs from the
    index entry, or ``None``."""
    if position >= entry.nsamples:
        return f"a sample {shown(key)} beyond the {entry.nsamples} the index lists"
    if key != entry.keys[position]:
        return f"key {shown(key)} where the index has {entry.keys[position]}"
    expected = {suffix for suffix, column in entry.offset.items() if column[position] >= 0}
    if set(members) != expected:
        return f"sample {key} has members {sorted(members)}, the index lists {sorted(expected)}"
    for suffix, column in entry.size.items():
        if column[position] >= 0 and len(members[suffix]) != column[position]:
            return (
                f"member {key}.{suffix} has {len(members[suffix])} bytes, the index says "
                f"{column[position]}"
            )
    return None


def _check_rows(entry: Any, position: int, sample: dict[str, Any], url: str, key: str) -> None:
    """Each decoded array's first dimension must be the rows the index recorded (the plan
    was cut on them)."""
    for name, column in entry.rows.items():
        value = sample.get(name)
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] != column[position]:
            raise ShardError(
                url,
                f"{key}.{name}.npy",
                f"has {value.shape[0]} rows, the index says {column[position]}",
            )


def _size_hint(url: str, expected: int) -> str:
    """For a local shard whose size differs from the index: say so (the likely cause)."""
    if is_url(url) or not os.path.exists(url) or expected < 0:
        return ""
    size = os.path.getsize(url)
    if size == expected:
        return ""
    return f" (the file has {size} bytes, the index says {expected}: truncated or replaced)"


def _open(url: str):
    """A binary stream of ``url``: local paths and ``pipe:`` through WebDataset's ``gopen``,
    other schemes through fsspec when installed (else ``gopen``'s curl/gsutil handlers)."""
    from webdataset.gopen import gopen

    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme and scheme != "file" and not url.startswith("pipe:"):
        try:
            import fsspec
        except ImportError:
            return gopen(url, "rb")
        return fsspec.open(url, "rb").open()
    if not is_url(url):
        path = url.removeprefix("file://")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no shard at {url}")
        return open_regular(path)  # a FIFO or device listed as a shard would block or not end
    return gopen(url, "rb")
