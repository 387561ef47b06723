"""Datasets ``build_loader`` wraps around a configured dataset: fields kept, transforms applied,
folder labels added. Each keeps the dataset's indices, passes its attributes (``sizes``,
``report``, ``policy``...) through, and reads batches with
:func:`hetload.data.substitute.getitems`, so that a batch is never empty under the skip policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from hetload.data.substitute import getitems
from hetload.guards import check_seed, shown

__all__ = ["Chain", "KeepFields", "Mapped"]


class KeepFields:
    """Drop every field but ``fields`` (picklable, for worker processes)."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)

    def __call__(self, sample: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if sample is None:
            return None
        missing = [f for f in self.fields if f not in sample]
        if missing:
            source = sample.get("path") or sample.get("key") or "a sample"
            raise ValueError(
                f"{source} has no field {shown(missing[0])} listed in dataset.fields "
                f"(it has: {', '.join(sample)})"
            )
        return {f: sample[f] for f in self.fields}


class Chain:
    """Apply callables in order, passing ``None`` (a dropped sample) through."""

    def __init__(self, steps: Sequence[Callable]) -> None:
        self.steps = tuple(steps)

    def __call__(self, sample: Any) -> Any:
        for step in self.steps:
            if sample is None:
                return None
            sample = step(sample)
        return sample

    def out_size(self, n: np.ndarray, field: str = "verts") -> np.ndarray:
        """The steps' sizes (:func:`hetload.transforms.out_sizes`): the dataset's ``sizes``
        follow them, and so does the sampler's budget."""
        from hetload.transforms import out_sizes

        for step in self.steps:
            n = out_sizes(step, n, field)
        return n


class Mapped(torch.utils.data.Dataset):
    """A map-style dataset with ``fn`` applied to each sample, for sources without a
    ``transform`` argument. Transforms draw from the generator of ``(seed, epoch, index)``, as
    in MeshFolder; the epoch lives in shared memory so that workers see :meth:`set_epoch`.
    ``sizes``, ``report`` and the rest pass through."""

    def __init__(self, dataset: Any, fn: Callable, seed: int) -> None:
        self.dataset = dataset
        self.fn = fn
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(check_seed(epoch, "epoch"))
        setter = getattr(self.dataset, "set_epoch", None)
        if setter is not None:
            setter(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        from hetload.transforms import run_checked, sample_rng

        rng = sample_rng(self.seed, int(self._epoch), i)
        return run_checked(
            self.fn, self.dataset[i], rng, f"{type(self.dataset).__name__} sample {i}"
        )

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        return getitems(self, indices)

    @property
    def sizes(self) -> np.ndarray:
        from hetload.transforms import out_sizes

        return out_sizes(self.fn, self.dataset.sizes, "verts")

    @property
    def field_sizes(self) -> dict[str, np.ndarray]:
        from hetload.transforms import out_sizes

        table = getattr(self.dataset, "field_sizes", None) or {}
        return {name: out_sizes(self.fn, rows, name) for name, rows in table.items()}

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "fn", "seed", "_epoch", "_size_order") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
