"""Marking the samples a batch sampler repeats to keep ranks in step.

Every sample is served exactly once per epoch, except where the ranks could not step equally
otherwise (fewer samples than ranks, say): then a few samples are served a second time. In
such an epoch the batch sampler yields every batch's indices as a :class:`MarkedIndices` (a
``list`` with ``is_repeat``), and :class:`MarkRepeats` (around a map-style dataset) puts
``is_repeat`` in each sample, so that ``collate`` gives ``batch["is_repeat"]`` (bool ``[B]``)
and a loss can weigh the repeats 0 to count every sample once (an epoch without repeats, the
usual case, yields plain lists and batches without the field)::

    keep = ~batch["is_repeat"] if "is_repeat" in batch else torch.ones(len(batch), dtype=bool)
    loss = (per_sample_loss * keep).sum() / keep.sum().clamp(min=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from hetload.packed import PackedSamples

__all__ = ["MarkRepeats", "MarkedIndices", "is_repeat", "mark"]


class MarkedIndices(list):
    """A batch's indices and ``is_repeat``: whether its samples were already served this epoch,
    one flag for the whole batch or (``FixedBatchSampler``, whose padding repeats a few samples
    at the end of a batch) a tuple of one flag per index.

    A plain ``list`` otherwise; it keeps its class and flag through a DataLoader's worker
    queues (pickled)."""

    def __init__(
        self, indices: Sequence[int] = (), is_repeat: bool | Sequence[bool] = False
    ) -> None:
        super().__init__(indices)
        if isinstance(is_repeat, (bool, int)):
            self.is_repeat: bool | tuple[bool, ...] = bool(is_repeat)
        else:
            self.is_repeat = tuple(bool(r) for r in is_repeat)
            if len(self.is_repeat) != len(self):
                raise ValueError(
                    f"{len(self.is_repeat)} is_repeat flags for a batch of {len(self)} indices"
                )


def is_repeat(indices: Any) -> bool:
    """True for the index list of a repeated batch (for per-index flags: all repeated)."""
    flag = getattr(indices, "is_repeat", False)
    return all(flag) if isinstance(flag, tuple) else bool(flag)


def mark(samples: list[Any], repeat: bool | Sequence[bool]) -> list[Any]:
    """Each dict sample with ``is_repeat`` set (a shallow copy; others unchanged); ``repeat``
    one flag for all, or one per sample."""
    flags = [repeat] * len(samples) if isinstance(repeat, bool) else list(repeat)
    return [
        {**s, "is_repeat": bool(r)} if isinstance(s, dict) else s for s, r in zip(samples, flags)
    ]


class MarkRepeats(Dataset):
    """A map-style dataset whose samples, read a batch at a time, carry ``is_repeat`` when the
    batch sampler marks the batch (:class:`MarkedIndices`: in an epoch with repeats).

    ``DataLoader(MarkRepeats(ds), batch_sampler=BucketBatchSampler(...), collate_fn=collate)``.
    It reads through ``ds.__getitems__`` where ``ds`` has one (its skip policy keeps a batch
    from coming back empty)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        getitems = getattr(self.dataset, "__getitems__", None)
        samples = getitems(indices) if getitems else [self.dataset[i] for i in indices]
        if not hasattr(indices, "is_repeat"):
            return samples
        flags = indices.is_repeat
        if isinstance(flags, tuple) and len(samples) != len(flags):
            # a batch whose skipped samples were dropped: the flags no longer line up, and a
            # sample of unknown standing counts as served (never weighed 0 by mistake)
            flags = False
        if (
            isinstance(samples, PackedSamples)
            and "is_repeat" not in samples.fields
            and not isinstance(flags, tuple)
        ):
            return samples.with_value("is_repeat", bool(flags))  # stays a packed batch
        return mark(list(samples), flags)

    def __getattr__(self, name: str) -> Any:
        # sizes, set_epoch, report, ...: the wrapped dataset's
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
