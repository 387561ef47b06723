"""The :class:`Loader` ``build_loader`` returns, and the per-stage clocks of ``timed=True``.

A ``Loader`` iterates a DataLoader, moves each batch to the configured device and builds the
padded views ``device.pad`` names there. With ``timed=True`` (``hetload bench``) the dataset and
the collate function are wrapped to measure, in the process that does the work, the seconds
spent reading and collating (:class:`StageTimes`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from hetload.batch import HeteroBatch
from hetload.config.load import LoaderConfig
from hetload.data.threaded import ThreadedLoader
from hetload.guards import shown
from hetload.ragged import Ragged

__all__ = ["Loader", "StageTimes", "TimedCollate", "TimedReads", "TimedStream"]


class StageTimes:
    """Seconds spent per stage, summed over batches (filled when built with ``timed=True``).

    ``read`` and ``collate`` are measured inside the process that does them (a worker when
    ``num_workers > 0``, running in parallel with the main loop); ``transfer`` and ``pad`` are
    measured in the main process with the device synchronized around each step.
    """

    def __init__(self) -> None:
        self.read = 0.0
        self.collate = 0.0
        self.transfer = 0.0
        self.pad = 0.0
        self.batches = 0

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in ("read", "collate", "transfer", "pad")}


class Loader:
    """Batches as the config describes them, on the configured device.

    Iterating gives :class:`~hetload.HeteroBatch` es moved to :attr:`device` (only the packed
    buffers cross), with the padded views of ``device.pad`` fields already built there.

    Attributes:
        config: the validated :class:`~hetload.config.LoaderConfig`.
        dataset: the dataset (map-style or iterable).
        batch_sampler: the batch sampler of a map-style dataset (``None`` for streams).
        dataloader: the underlying ``torch.utils.data.DataLoader``.
        device: the ``torch.device`` batches are moved to.
        times: per-stage seconds when built with ``timed=True`` (``hetload bench``), else None.
    """

    def __init__(
        self,
        config: LoaderConfig,
        dataset: Any,
        batch_sampler: Any,
        dataloader: DataLoader | ThreadedLoader,
        device: torch.device,
        times: StageTimes | None,
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.dataloader = dataloader
        self.device = device
        self.times = times
        self._pad = tuple(config.device["pad"])
        self._non_blocking = config.device["non_blocking"]
        self._batched = _batched_steps(config)
        self.epoch = 0
        self._step: int | None = None  # batches of this epoch the consumer has taken

    def _source(self) -> Any:
        """What holds the epoch's plan and state: the batch sampler, else the stream."""
        if not self.config.loader["in_order"]:
            # batches then come in the order workers finish them: "the first k batches" is not
            # a prefix of the plan, and no state can say which were served
            raise TypeError(
                "loader.in_order is false: batches arrive in completion order, so the loader "
                "keeps no exact resume state; set loader.in_order: true to checkpoint"
            )
        part = self.batch_sampler if self.batch_sampler is not None else self.dataset
        if not hasattr(part, "state_dict"):
            raise TypeError(
                f"{type(part).__name__} keeps no resumable state; use sampler.type: bucket "
                "(BucketBatchSampler) or dataset.type: ShardStream"
            )
        return part

    def _resume_step(self) -> int:
        part = self._source()
        if part is self.dataset:
            return part.resume_step(self.dataloader.num_workers)
        return part.resume_step

    def state_dict(self) -> dict[str, Any]:
        """Where the run stands: the epoch, and the batches of it the consumer has taken (not
        those DataLoader workers prefetched). Plain data for a checkpoint; the same on every
        rank, and any rank's state resumes the whole job, also at another world size or
        worker count (:meth:`load_state_dict`)."""
        part = self._source()
        step = self._resume_step() if self._step is None else self._step
        if part is self.dataset:
            source = part.state_dict(step=step, num_workers=self.dataloader.num_workers)
        else:
            source = part.state_dict(consumed=step)
        return {"version": 1, "epoch": self.epoch, "step": step, "source": source}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next iteration (after ``set_epoch`` of the saved
        epoch, or none) serves the rest of the saved epoch, exactly once per sample over all
        ranks, at this world size and worker count."""
        if not isinstance(state, dict) or "source" not in state or "epoch" not in state:
            raise ValueError("Loader.load_state_dict: not a Loader.state_dict()")
        self._source().load_state_dict(state["source"])
        self.epoch = int(state["epoch"])
        self._step = None

    def set_epoch(self, epoch: int) -> None:
        """Fresh batches for ``epoch`` (call before each epoch, as with DistributedSampler).
        Setting the epoch a loaded state is in keeps its resume point."""
        if int(epoch) != self.epoch:
            self._step = None
        self.epoch = int(epoch)
        for part in (self.batch_sampler, self.dataset):
            setter = getattr(part, "set_epoch", None)
            if setter is not None:
                setter(self.epoch)
        sampler = getattr(self.batch_sampler, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        count = getattr(self.dataset, "num_batches", None)
        if count is None:
            raise TypeError(f"{type(self.dataset).__name__} does not know its batch count")
        return count(self.dataloader.num_workers)

    def __iter__(self) -> Iterator[HeteroBatch]:
        resumable = self.config.loader["in_order"] and (
            self.batch_sampler is None or hasattr(self.batch_sampler, "state_dict")
        )
        self._step = self._resume_step() if resumable else 0
        share = getattr(self.dataset, "share_plan", None)
        if share is not None:
            # a ShardStream: one all-gather of the ranks' batch counts (a no-op without a
            # process group), before the workers start, so that they inherit it and each rank
            # dry-runs only its own workers (ShardStream.share_plan)
            share(self.dataloader.num_workers)
        for item in self.dataloader:
            if self.times is not None:
                batch, read_s, collate_s = item
                self.times.read += read_s
                self.times.collate += collate_s
                self.times.batches += 1
            else:
                batch = item
            batch = self._on_device(batch)
            self._step += 1  # taken by the consumer once it has the batch
            yield batch

    def _on_device(self, batch: HeteroBatch) -> HeteroBatch:
        timing = self.times is not None and self.device.type == "cuda"
        if self.device.type != "cpu":
            start = _sync_clock(self.device) if timing else 0.0
            batch = batch.to(self.device, non_blocking=self._non_blocking)
            if timing:
                self.times.transfer += _sync_clock(self.device) - start
        start = _sync_clock(self.device) if timing else 0.0
        if self._batched is not None:
            batch = self._batched(batch, self.epoch)
        for name in self._pad:
            field = batch.get(name)
            if not isinstance(field, Ragged):
                raise self.config.error(
                    "device.pad",
                    f"the batch has no ragged field {shown(name)} "
                    f"(fields: {', '.join(batch.keys()) or 'none: an empty batch'})",
                )
            field.padded()
            field.mask  # noqa: B018 (built and cached with the padded view)
        if timing:
            self.times.pad += _sync_clock(self.device) - start
        return batch

    def __repr__(self) -> str:
        return (
            f"Loader({type(self.dataset).__name__}, batches={len(self) if self._sized() else '?'}, "
            f"workers={self.dataloader.num_workers}, device={self.device})"
        )

    def _sized(self) -> bool:
        try:
            len(self)
        except (TypeError, ValueError):
            return False
        return True


def _batched_steps(config: LoaderConfig) -> Callable | None:
    """``device.transforms`` as ``fn(batch, epoch) -> batch`` (None when empty)."""
    if not config.device["transforms"]:
        return None
    from hetload.batched.pipeline import Seeded, build

    return Seeded(build(config.device["transforms"]), config.sampler["seed"])


def _sync_clock(device: torch.device) -> float:
    torch.cuda.synchronize(device)
    return time.perf_counter()


class TimedCollate:
    """``collate`` returning ``(batch, read seconds since the last batch, collate seconds)``.

    Runs in the process that reads (a worker or the main process), so the read clock is that
    process's: :class:`TimedReads` adds to it, this resets it.
    """

    def __init__(self, collate_fn: Callable) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list[Any]) -> tuple[HeteroBatch, float, float]:
        start = time.perf_counter()
        batch = self.collate_fn(samples)
        collated = time.perf_counter() - start
        read = _READ_CLOCK.seconds
        _READ_CLOCK.seconds = 0.0
        return batch, read, collated


class _ReadClock(threading.local):
    """Seconds spent reading since the last collate, per thread (a worker process's main
    thread, or each reader thread of a ThreadedLoader: a batch is read and collated by one)."""

    seconds = 0.0


_READ_CLOCK = _ReadClock()


class TimedReads(torch.utils.data.Dataset):
    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        start = time.perf_counter()
        try:
            return self.dataset[i]
        finally:
            _READ_CLOCK.seconds += time.perf_counter() - start

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        # the dataset's own batch read (it keeps a batch from coming back empty under skip)
        start = time.perf_counter()
        try:
            getitems = getattr(self.dataset, "__getitems__", None)
            return getitems(indices) if getitems else [self.dataset[i] for i in indices]
        finally:
            _READ_CLOCK.seconds += time.perf_counter() - start


class TimedStream(IterableDataset):
    """A stream of ``(batch, _, collate seconds)`` -> ``(batch, read seconds, collate seconds)``,
    read being the rest of the time the stream took to yield the batch."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[tuple[HeteroBatch, float, float]]:
        it = iter(self.stream)
        while True:
            start = time.perf_counter()
            try:
                batch, _, collated = next(it)
            except StopIteration:
                return
            yield batch, time.perf_counter() - start - collated, collated
