"""The skip policy's guarantee for map-style datasets: a batch is never empty.

Under ``on_error="skip"|"warn"`` a sample that fails to load comes back as ``None`` and
``collate`` leaves it out: the batch shrinks, stays under its budget, and no sample is served
twice. Only a batch whose *every* sample failed would be empty (a ``HeteroBatch`` without
fields, which breaks the training step, and under DDP the other ranks with it). For that batch
:func:`get_batch` serves one substitute instead: the readable sample that comes next below the
batch's smallest sample in the order of sizes (then above it, where nothing smaller is
readable). The choice depends only on the sizes and on which files are readable, so every rank
and worker makes the same one; the batch keeps its step, the budget holds (the substitute is not
larger unless nothing smaller can be read), and the report says which sample stood in for which.

DataLoader calls a dataset's ``__getitems__(indices)`` with each batch of a batch sampler;
:class:`~hetload.data.MeshFolder`, :class:`~hetload.data.ShardDataset` and the wrappers
``build_loader`` puts around them define it with :func:`getitems`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from hetload.errors import ErrorPolicy

__all__ = ["MAX_TRIES", "SizeOrder", "get_batch", "getitems"]

#: the most samples read to find one substitute
MAX_TRIES = 256


class SizeOrder:
    """The samples in the order of ``sizes`` (stable: equal sizes by index), and where a
    substitute is looked for."""

    def __init__(self, sizes: np.ndarray) -> None:
        self.order = np.argsort(np.asarray(sizes), kind="stable")
        self.position = np.empty_like(self.order)
        self.position[self.order] = np.arange(len(self.order))

    def candidates(self, index: int) -> Iterator[int]:
        """The samples below ``index`` in size order, nearest first, then those above it."""
        p = int(self.position[index])
        for q in range(p - 1, -1, -1):
            yield int(self.order[q])
        for q in range(p + 1, len(self.order)):
            yield int(self.order[q])


def get_batch(
    indices: Sequence[int],
    getitem: Callable[[int], Any],
    order: SizeOrder,
    policy: ErrorPolicy,
    describe: Callable[[int], str],
) -> list[Any]:
    """``[getitem(i) for i in indices]``, with one substitute where every item is ``None``.

    ``getitem`` returns ``None`` for a sample it skipped (and reported); ``describe(i)`` names
    sample ``i`` in the report.

    Raises:
        ValueError: every sample of the dataset is unreadable, or the :data:`MAX_TRIES`
            samples nearest in size are.
    """
    samples = [getitem(i) for i in indices]
    if not samples or any(sample is not None for sample in samples):
        return samples
    # every sample failed: the smallest of them decides where the substitute comes from
    first = min((int(i) % len(order.order) for i in indices), key=lambda i: order.position[i])
    tried = 0
    for j in order.candidates(first):
        if j in indices:
            continue
        if tried == MAX_TRIES:
            # a systematic failure (a field no sample has, a folder of broken files): stop
            # rather than read the whole dataset for every batch
            raise ValueError(
                f"the {len(samples)} samples of the batch of {describe(first)} and the "
                f"{MAX_TRIES} samples nearest to them in size were all skipped (see the "
                "dataset's report): is every sample broken the same way?"
            )
        tried += 1
        sample = getitem(j)
        if sample is not None:
            policy.note(
                describe(first),
                f"every sample of its batch ({len(samples)}) was skipped; sample {j} "
                f"({describe(j)}) was served in their place, so that the batch is not empty",
            )
            return [sample]
    raise ValueError(
        f"no sample can be read: the batch of {describe(first)} and every other sample were "
        "skipped (see the dataset's report)"
    )


def getitems(
    dataset: Any, indices: Sequence[int], getitem: Callable[[int], Any] | None = None
) -> list[Any]:
    """``dataset.__getitems__``: :func:`get_batch` over ``dataset[i]`` (or ``getitem(i)``,
    which must return what ``dataset[i]`` would), for a dataset with an
    :class:`~hetload.ErrorPolicy` ``policy`` and ``sizes`` (else a plain list of items).
    ``dataset._describe(i)``, where defined, names sample ``i`` in the report."""
    getitem = dataset.__getitem__ if getitem is None else getitem
    policy = getattr(dataset, "policy", None)
    sizes = getattr(dataset, "sizes", None)
    if not isinstance(policy, ErrorPolicy) or sizes is None:
        return [getitem(i) for i in indices]
    order = dataset.__dict__.get("_size_order")
    if order is None:  # built once per process, on its first batch
        order = dataset.__dict__["_size_order"] = SizeOrder(np.asarray(sizes))
    describe = getattr(dataset, "_describe", None) or (lambda i: f"sample {i}")
    return get_batch(indices, getitem, order, policy, describe)
