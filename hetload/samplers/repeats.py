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
    """A batch's indices and ``is_repeat``: whether its samples were already served this epoch.

    A plain ``list`` otherwise; it keeps its class and flag through a DataLoader's worker
    queues (pickled)."""

    def __init__(self, indices: Sequence[int] = (), is_repeat: bool = False) -> None:
        super().__init__(indices)
        self.is_repeat = bool(is_repeat)


def is_repeat(indices: Any) -> bool:
    """True for the index list of a repeated batch."""
    return bool(getattr(indices, "is_repeat", False))


def mark(samples: list[Any], repeat: bool) -> list[Any]:
    """Each dict sample with ``is_repeat`` set (a shallow copy; others unchanged)."""
    return [{**s, "is_repeat": repeat} if isinstance(s, dict) else s for s in samples]


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
        if isinstance(samples, PackedSamples) and "is_repeat" not in samples.fields:
            return samples.with_value("is_repeat", is_repeat(indices))  # stays a packed batch
        return mark(list(samples), is_repeat(indices))

    def __getattr__(self, name: str) -> Any:
        # sizes, set_epoch, report, ...: the wrapped dataset's
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
