"""``ShardStream``: preprocessed shards streamed through WebDataset, batched, collated.

Each epoch every rank plans its own batches from the index (:mod:`hetload.data.stream_plan`):
the shards are permuted by ``(seed, epoch)`` and dealt to ranks and their DataLoader workers;
each worker's batches are cut by a dry run of the batcher on the sizes the index holds; every
rank runs the same number of steps, learned from the others' batch counts by one all-gather
(:meth:`ShardStream.share_plan`; without a process group, by a dry run of every rank). By default
(``even="exact"``) every sample is served exactly once per epoch across all ranks: a rank short
of steps splits its largest batches, and only where it has fewer samples than steps repeats
one, in a batch whose samples carry ``is_repeat=True``. A worker then reads its shards and
serves the planned batches in order, holding a sample only until its batch is complete.

The plan also makes the stream resumable: :meth:`ShardStream.state_dict` records the step
(the same on every rank), and :meth:`ShardStream.load_state_dict` resumes after it, at the same
world size and worker count (each worker skips the batches and whole shards already consumed)
or at another one (the samples not yet consumed are planned again over the new ranks).

Every rank must hold at least one shard: make ``--shard-size`` / ``--max-count`` small enough
that there are at least ``world_size`` shards, preferably ``world_size * num_workers`` or more
(a worker without a shard yields nothing, and the others then split more).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from hetload.collate import collate
from hetload.data.batchers import (
    Batcher,
    check_count,
    describe,
    fixed_batches,
    token_batches,
)
from hetload.data.stream_batch_read import READS, BatchReads, Reads
from hetload.data.stream_plan import (
    EVEN,
    Even,
    StreamPlan,
    interleave,
)
from hetload.data.stream_sequential import SequentialReads
from hetload.data.stream_state import PlannedStream, fingerprint
from hetload.errors import ErrorPolicy, OnError
from hetload.guards import check_fields, check_seed
from hetload.samplers.bucket_sampler import ResumeError
from hetload.shards.index import ShardIndex, is_url
from hetload.transforms import out_sizes

__all__ = [
    "BATCH_READ_BUFFER",
    "SEQUENTIAL_BUFFER",
    "Batcher",
    "ShardStream",
    "StreamPlan",
    "fixed_batches",
    "token_batches",
]

#: the bucketer's buffer (samples) where every shard is read by batch reads: padding 0.998 on
#: log-normal sizes and 0.989 on Pareto(1.6) at a 400k budget (2,048: 0.977 / 0.890)
BATCH_READ_BUFFER = 32_768
#: the buffer where samples are read sequentially (and held until their batch is complete)
SEQUENTIAL_BUFFER = 2048


class ShardStream(PlannedStream, BatchReads, SequentialReads, IterableDataset):
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
        buffer_size: the bucketer's buffer, in samples (more pads less). ``None``:
            :data:`BATCH_READ_BUFFER` (32,768) where every shard is local and ``reads="batch"``
            (a batch read holds no sample: the buffer costs 4 bytes per sample of the plan),
            else :data:`SEQUENTIAL_BUFFER` (2,048: the sequential read holds each sample until
            its batch is complete, so the buffer bounds the samples held).
        size_field: the field whose rows are a sample's size (default as ``ShardDataset``),
            read from the index, so it need not be among ``fields``; a field the index lacks
            is refused.
        fields: the fields to decode (a list of names); ``None`` for all.
        collate_fn: turns a list of samples into a batch (``None`` yields the lists).
        transform: applied to each sample of a batch just before ``collate_fn`` (batches are
            formed on the sizes stored in the shards), drawing from the generator of
            ``(seed, epoch, sample position)`` (:func:`hetload.transforms.sample_rng`, the sample
            position being its key): the same augmentation on any rank, worker count or rerun.
        even: how every rank gets the same number of steps
            (:mod:`hetload.data.stream_plan`): ``"exact"`` (default) serves every sample
            exactly once per epoch across all ranks (splitting batches; a sample repeats only
            when a rank has fewer samples than steps, marked ``is_repeat``); ``"pad"`` repeats
            whole batches (marked); ``"truncate"`` drops batches of the longer ranks, counted in
            :meth:`stats` and the :attr:`report`.
        on_error: a shard or sample that cannot be read, or that differs from the index
            (byte size, sample keys, member names and sizes, rows, sample count: a shard is
            read up to its first difference): ``"raise"``, or skip it (``"skip"``, ``"warn"``)
            and record it in :attr:`report` (shared by the DataLoader workers), with the keys
            of the samples not served and the batches repeated to keep ranks in step (a batch
            with no readable sample gets a substitute, marked ``is_repeat``: the last sample
            served, else the next readable one; a worker with none due borrows the index's first
            readable one, :mod:`hetload.data.stream_borrow`).
        reads: how local shards are read. ``"batch"`` (default): each planned batch by one
            positioned read per sample straight into the batch buffer, located and checked by
            the index (:mod:`hetload.data.stream_batch_read`; one copy, a damaged sample costs
            only itself, a shard whose size differs from the index is reported and its samples
            still checked one by one). ``"sequential"``: each shard front to back in large reads
            (:mod:`hetload.data.stream_sequential`; for disks where random reads are slow). URLs
            and ``pipe:`` commands are always read sequentially.

    Use it with ``DataLoader(stream, batch_size=None, ...)``: it yields whole batches. With
    a transform or another ``collate_fn``, the arrays of streamed samples are views of the bytes
    read (read-only where the sequential read or WebDataset read them); a transform must not
    modify them in place. Every sample
    carries ``is_repeat`` (a bool; ``batch["is_repeat"]``, bool ``[B]``, after ``collate``): True
    where the sample was already served this epoch and only fills a step (weigh it 0 in the
    loss to count every sample once).

    **Many ranks**: call :meth:`share_plan` on every rank after :meth:`set_epoch`, before the
    ``DataLoader`` starts its workers (one all-gather; a loop over the stream in the main
    process does it by itself), so that no rank dry-runs the others' batches.

    **Resuming** (:meth:`state_dict`, :meth:`load_state_dict`): the state names the epoch and
    the step reached, the same on every rank, so any one rank's state resumes the whole job,
    also at another world size or worker count (:mod:`hetload.data.stream_segments`).
    torchdata's ``StatefulDataLoader`` saves and restores it per worker by itself (then at the
    same world size and worker count).
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
        buffer_size: int | None = None,
        size_field: str | None = None,
        fields: Sequence[str] | None = None,
        collate_fn: Callable[[list[dict[str, Any]]], Any] | None = collate,
        transform: Callable[..., Any] | None = None,
        even: Even = "exact",
        on_error: OnError | ErrorPolicy = "raise",
        reads: Reads = "batch",
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
        self.urls = urls if urls is not None else self.index.shard_urls()
        self.rank, self.world_size = _world(rank, world_size)
        if reads not in READS:
            raise ValueError(f"ShardStream: reads must be one of {READS}, got {reads!r}")
        self.reads = reads
        chosen = [x is not None for x in (batch_size, max_tokens, batcher)]
        if sum(chosen) != 1:
            raise ValueError("ShardStream: give exactly one of batch_size, max_tokens, batcher")
        if buffer_size is not None and max_tokens is None:
            raise ValueError(
                "ShardStream: buffer_size is the look-ahead of the max_tokens bucketer; with "
                "batch_size or batcher it would be ignored"
            )
        # ints, checked now (int() would cut 1.5 to 1; the bucketer would refuse only later)
        where = "ShardStream: "
        if batch_size is not None:
            batch_size = check_count(batch_size, "batch_size", 1, where)
        if max_tokens is not None:
            max_tokens = check_count(max_tokens, "max_tokens", 1, where)
        if buffer_size is not None:
            buffer_size = check_count(buffer_size, "buffer_size", 2, where)
        if batcher is None:
            if buffer_size is None:
                # a batch read holds no sample, so the buffer costs only the plan's sizes; the
                # sequential read holds each sample until its batch is complete
                local = reads == "batch" and not any(is_url(url) for url in self.urls)
                buffer_size = BATCH_READ_BUFFER if local else SEQUENTIAL_BUFFER
            batcher = (
                fixed_batches(batch_size)
                if batch_size is not None
                else token_batches(int(max_tokens), buffer_size)  # type: ignore[arg-type]
            )
        self.batcher = batcher
        if even not in EVEN:
            raise ValueError(f"even must be one of {EVEN}, got {even!r}")
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
        settings = self.index.info.get("settings", {})
        targets = settings.get("targets", {}) if isinstance(settings, dict) else {}
        #: the class names ``label`` numbers (written by ``preprocess --labels``), or None
        self.classes: list[str] | None = targets.get("classes") if targets else None
        counts = self.index.counts()
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        # one array for every sample (no per-shard Python lists held by every worker copy)
        rows = np.maximum(self.index.rows(size_field or ""), 0)
        flat = np.asarray(out_sizes(transform, rows, size_field or "verts"), dtype=np.int64)
        # int32 while it fits: 4 bytes per sample held by every rank and worker
        fits = flat.size == 0 or int(flat.max()) < 2**31
        self._flat_sizes = flat.astype(np.int32) if fits else flat
        _check_fit(self.batcher, flat, self.index, self.urls, self._starts)
        # what the plan depends on besides (seed, epoch): a state from other data is refused
        batches = describe(self.batcher, self._flat_sizes)
        self.fingerprint = fingerprint(
            counts,
            self._flat_sizes,
            f"{self.shuffle} {self.even} {self.size_field} {batches}",
            self.index,
        )
        self._plans: dict[tuple, Any] = {}
        self._resume: dict[str, Any] | None = None
        self._yielded = 0  # batches of the running iteration, in this process (see state_dict)
        self._running: dict[str, Any] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the shard order and batching seed of ``epoch`` (call before iterating).

        Each iteration started afterwards in the same object advances the epoch by one, so a
        stream iterated again without ``set_epoch`` (in the main process, or in the copies
        ``persistent_workers=True`` keeps, which ``set_epoch`` cannot reach) still reshuffles.
        Setting the epoch a just-loaded state is in keeps its resume point.
        """
        self.epoch = check_seed(epoch, "ShardStream: epoch")
        self._started = 0
        if self._resume is not None and self._resume["epoch"] != self.epoch:
            self._resume = None

    @property
    def report(self):
        """Shards and samples skipped by any process (DataLoader workers included), with reasons."""
        return self.policy.report

    # -- serving ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        if info is None:
            self._share_once(workers)  # one collective when a process group is initialised
        epoch = self.epoch + self._started
        self._started += 1
        history, start, worker_state = self._resume_for(epoch, workers)
        plan = self._segment(epoch, history, self.world_size, workers, frozenset([self.rank]))
        if start > plan.batches_per_rank():
            raise ResumeError(
                f"ShardStream state is at step {start}, its segment has "
                f"{plan.batches_per_rank()} steps"
            )
        if worker_state is not None:
            if worker_state["worker"] != worker:
                raise ResumeError(
                    f"a state of DataLoader worker {worker_state['worker']} was loaded in worker "
                    f"{worker}"
                )
            mine = int(worker_state["plan_worker"])
            skip = int(worker_state["yielded"])
        else:
            # A DataLoader asks its workers in turn from worker 0; the plan's next step may be
            # another worker's. Worker i serves the plan's worker (i + first) % K: the same
            # cyclic order from the same place, so the resumed steps are the planned ones.
            order = interleave(plan.quota[self.rank])
            first = int(order[start]) if start < order.shape[0] else 0
            mine = (worker + first) % workers
            skip = plan.worker_steps(self.rank, start)[mine]
        worker = mine
        self._running = {
            "epoch": epoch,
            "history": history,
            "workers": workers,
            "plan": mine,
            "steps": plan.steps,
        }
        # the rank's step counts, in the main process, from where the segment resumes
        self._yielded = start if info is None else skip
        if worker == 0 and start == 0 and skip == 0:
            self._note_plan(plan, epoch)
        stream = plan.streams[self.rank][worker]
        shards = plan.shards[self.rank][worker]
        who = f"rank {self.rank} worker {worker}"
        source = self._batch_source(shards)
        batches = (
            self._serve_sequential(stream, shards, skip, epoch, who)
            if source is None
            else self._serve_batches(source, stream, shards, skip, epoch, who)
        )
        for batch in batches:
            self._yielded += 1
            yield batch
        if info is None:
            self._resume = None  # the epoch was served to its end

    def _note_plan(self, plan: StreamPlan, epoch: int) -> None:
        """Dropped and repeated samples are in the report (once, by worker 0 of rank 0)."""
        if self.rank != 0:
            return
        where = f"epoch {epoch} (all ranks)"
        if plan.dropped:
            self.policy.note(
                where,
                f"{plan.dropped} of {plan.samples} samples are not served: "
                f"even={self.even!r} (or the batcher) left them out",
            )
        if plan.repeated:
            self.policy.note(
                where,
                f"{plan.repeated} samples are served twice (is_repeat=True) so that every rank "
                f"steps {plan.batches_per_rank()} times",
            )

    def _finish(self, items: list[tuple[str, Any]], repeat: bool, epoch: int) -> Any:
        """The batch of ``(key, sample)`` items: transformed, marked, collated."""
        batch = []
        for key, sample in items:
            if self.transform is not None:
                sample = self._transformed(key, sample, epoch)
            if isinstance(sample, dict):
                sample = {**sample, "is_repeat": repeat}
            batch.append(sample)
        return batch if self.collate_fn is None else self.collate_fn(batch)

    def _transformed(self, key: str, sample: dict[str, Any], epoch: int) -> Any:
        from hetload.transforms import run_checked, sample_rng

        # keys written by `hetload preprocess` are positions; others are hashed stably
        position = int(key) if key.isdigit() else zlib.crc32(key.encode("utf-8"))
        rng = sample_rng(self.seed, epoch, position)
        return run_checked(self.transform, sample, rng, f"ShardStream sample {key}")

    def __getstate__(self) -> dict[str, Any]:
        # each process opens its own ShardDataset over the shards (handles, caches) when it reads
        state = super().__getstate__()
        state.pop("_by_index", None)
        state.pop("_borrow_source", None)
        return state

    def __repr__(self) -> str:
        return (
            f"ShardStream({len(self.urls)} shards, rank {self.rank}/{self.world_size}, "
            f"epoch {self.epoch}, even={self.even!r})"
        )


def _check_fit(
    batcher: Batcher, sizes: np.ndarray, index: ShardIndex, urls: list[str], starts: np.ndarray
) -> None:
    """A sample that fits no batch of ``batcher`` (larger than a ``token_batches`` budget under
    ``oversize="error"``) is refused now, naming its key and shard, not when the first epoch is
    planned (where the bucketer knows only its place in a worker's stream)."""
    never_fit = getattr(batcher, "never_fit", None)
    large = np.zeros(0, dtype=np.int64) if never_fit is None else never_fit(sizes)
    if not large.size:
        return
    g = int(large[0])
    k = int(np.searchsorted(starts, g, side="right")) - 1
    raise ValueError(
        f"ShardStream: sample {index.columns.keys[g]} of {urls[k]} has size {int(sizes[g])}, "
        f"more than {batcher!r} takes in a batch alone ({large.size} samples do); raise "
        "max_tokens, or pass batcher=token_batches(max_tokens, buffer_size, oversize='skip' "
        "or 'alone')"
    )


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
