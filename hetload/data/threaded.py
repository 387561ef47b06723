"""``ThreadedLoader``: batches read by threads of the training process, no worker processes.

For local shards the work of a batch is system calls and large copies (``preadv`` into the batch
buffer, the index rebase), which release the GIL: threads overlap them as worker processes
would, without sending each batch between processes (shared-memory segments, descriptors,
unpickling). The batches are those of ``DataLoader(dataset, batch_sampler=...,
collate_fn=hetload.collate, num_workers=0)``, in the same order; with ``pin_memory=True`` a
:class:`~hetload.data.ShardDataset` reads straight into page-locked memory (no copy after the
read for its arrays).
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch.utils.data._utils.pin_memory import pin_memory

from hetload.collate import collate

__all__ = ["ThreadedLoader"]


def _pinned(nbytes: int) -> torch.Tensor:
    return torch.empty(max(int(nbytes), 1), dtype=torch.uint8, pin_memory=True)


class ThreadedLoader:
    """An iterable of batches, loaded ahead by ``threads`` threads.

    Args:
        dataset: map-style; read through ``__getitems__(indices)`` where it has one, else
            ``dataset[i]``. It must allow concurrent reads from threads
            (:class:`~hetload.data.ShardDataset` does).
        batch_sampler: an iterable of index lists (e.g.
            :class:`~hetload.samplers.BucketBatchSampler`); iterated in the consuming thread.
        threads: reading threads (``>= 1``).
        prefetch: batches loaded ahead of the consumer (default ``2 * threads``).
        collate_fn: turns a batch's samples into a batch (default :func:`hetload.collate`).
        pin_memory: batches in page-locked memory (ignored, with a warning, without CUDA).

    ``len``, ``set_epoch`` and ``state_dict`` / ``load_state_dict`` delegate to the sampler
    (the state counts the batches the consumer took, not those read ahead: ``consumed=`` where
    the sampler's ``state_dict`` takes it, else a deep copy of the sampler's state taken as each
    batch is drawn, as torchdata's ``StatefulDataLoader`` keeps it). An error while
    loading a batch is raised in the consuming loop, noting the batch's indices (the error of
    a shard names the shard and the sample's key). Leaving the loop early (``break``, an
    exception) stops and joins the threads.
    """

    def __init__(
        self,
        dataset: Any,
        batch_sampler: Iterable[Sequence[int]],
        *,
        threads: int = 2,
        prefetch: int | None = None,
        collate_fn: Callable[[Any], Any] = collate,
        pin_memory: bool = False,
    ) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"ThreadedLoader: threads must be an int >= 1, got {threads!r}")
        prefetch = 2 * threads if prefetch is None else prefetch
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"ThreadedLoader: prefetch must be an int >= 1, got {prefetch!r}")
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.threads = threads
        self.prefetch = prefetch
        self.collate_fn = collate_fn
        if pin_memory and not torch.cuda.is_available():
            warnings.warn(
                "ThreadedLoader(pin_memory=True): no CUDA device, batches are not pinned",
                stacklevel=2,
            )
            pin_memory = False
        self.pin_memory = pin_memory
        # batches of the epoch consumed: those before a resume, and those taken since
        self._base = 0
        self._consumed = 0
        self._resuming = False
        # for a sampler whose state_dict takes no ``consumed``: its state right after drawing
        # the last batch the consumer took (None: ask the sampler, nothing is read ahead)
        self._state: dict[str, Any] | None = None

    #: as ``DataLoader.num_workers``: no worker process (batches come in order, read in this
    #: process), so a sampler's or stream's resume arithmetic is that of ``num_workers=0``
    num_workers = 0

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """The sampler's (and the dataset's, where it has one) ``set_epoch``."""
        for part in (self.batch_sampler, self.dataset):
            set_epoch = getattr(part, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state at the batches the loop consumed (``consumed=`` where its
        ``state_dict`` takes it)."""
        state_dict = getattr(self.batch_sampler, "state_dict", None)
        if state_dict is None:
            raise TypeError(f"{type(self.batch_sampler).__name__} keeps no state (state_dict)")
        if _takes_consumed(state_dict):
            return state_dict(consumed=self._base + self._consumed)
        if self._state is not None:
            # the sampler itself has moved on by the batches read ahead: its state as it was
            # when the last consumed batch was drawn (as torchdata's StatefulDataLoader keeps)
            return copy.deepcopy(self._state)
        return state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The sampler's ``load_state_dict``: the next iteration serves the rest of its epoch."""
        self.batch_sampler.load_state_dict(state)  # type: ignore[attr-defined]
        consumed = state.get("consumed", 0) if isinstance(state, dict) else 0
        self._base = int(consumed)
        self._consumed = 0
        self._resuming = True
        self._state = None

    def _load(self, indices: Sequence[int]) -> Any:
        into = getattr(self.dataset, "_getitems_into", None)
        if self.pin_memory and into is not None:
            samples = into(indices, _pinned)
        elif hasattr(self.dataset, "__getitems__"):
            samples = self.dataset.__getitems__(indices)
        else:
            samples = [self.dataset[i] for i in indices]
        batch = self.collate_fn(samples)
        if self.pin_memory:
            # as DataLoader's pin thread does (nested containers, objects with pin_memory());
            # tensors already pinned (the arrays read into pinned memory) are kept, not copied
            batch = pin_memory(batch)
        return batch

    def __iter__(self) -> Iterator[Any]:
        # a new epoch starts at 0; the first iteration after load_state_dict at its step
        self._base = self._base if self._resuming else 0
        self._consumed, self._resuming = 0, False
        # a sampler without ``consumed``: snapshot its state as each batch is drawn
        snapshot = getattr(self.batch_sampler, "state_dict", None)
        if snapshot is not None and _takes_consumed(snapshot):
            snapshot = None
        self._state = None if snapshot is None else copy.deepcopy(snapshot())
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hetload-reader")
        pending: deque[tuple[Sequence[int], Future, Any]] = deque()
        batches = iter(self.batch_sampler)
        try:
            while True:
                while len(pending) < self.prefetch:
                    # passed on as the sampler made it (MarkedIndices carries is_repeat)
                    indices = next(batches, None)
                    if indices is None:
                        break
                    state = None if snapshot is None else copy.deepcopy(snapshot())
                    pending.append((indices, pool.submit(self._load, indices), state))
                if not pending:
                    self._state = None  # drawn to the end: the sampler's own state is exact
                    return
                indices, future, state = pending.popleft()
                try:
                    batch = future.result()
                except Exception as exc:
                    shown = [*indices] if len(indices) <= 16 else [*indices[:16], "..."]
                    exc.add_note(f"ThreadedLoader: while loading the batch of samples {shown}")
                    raise
                self._consumed += 1
                if snapshot is not None:
                    self._state = state
                yield batch
        finally:
            for _, future, _ in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self) -> str:
        return (
            f"ThreadedLoader({type(self.dataset).__name__}, threads={self.threads}, "
            f"prefetch={self.prefetch}, pin_memory={self.pin_memory})"
        )


def _takes_consumed(state_dict: Callable[..., Any]) -> bool:
    """Whether a sampler's ``state_dict`` takes ``consumed=`` (the batches the loop used)."""
    try:
        return "consumed" in inspect.signature(state_dict).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False
