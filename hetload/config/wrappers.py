"""Datasets ``build_loader`` wraps around a configured dataset: fields kept, transforms applied,
folder labels added. Each keeps the dataset's indices, passes its attributes (``sizes``,
``report``, ``policy``...) through, and reads batches with
:func:`hetload.data.substitute.getitems`, so that a batch is never empty under the skip policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hetload.data.substitute import getitems
from hetload.guards import check_seed, shown

__all__ = ["Chain", "FolderLabels", "KeepFields", "Mapped"]


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
        from hetload.transforms import run_seeded, sample_rng

        return run_seeded(self.fn, self.dataset[i], sample_rng(self.seed, int(self._epoch), i))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        return getitems(self, indices)

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "fn", "seed", "_epoch", "_size_order") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


class FolderLabels(torch.utils.data.Dataset):
    """Adds ``label``: the index of each file's top folder under ``root`` among the sorted
    folder names (:attr:`classes`), as ModelNet-style layouts encode the class."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        root = Path(dataset.root)
        tops = [Path(f).relative_to(root).parts[0] for f in dataset.files]
        nested = [
            Path(f).relative_to(root)
            for f in dataset.files
            if len(Path(f).relative_to(root).parts) < 2
        ]
        if nested:
            raise ValueError(
                f"dataset.labels: folder needs every file in a class folder under {root}; "
                f"{nested[0]} is not"
            )
        self.classes = sorted(set(tops))
        lookup = {name: i for i, name in enumerate(self.classes)}
        self.labels = np.array([lookup[t] for t in tops], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        sample = self.dataset[i]
        if sample is None:
            return None
        return {**sample, "label": int(self.labels[i])}

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        return getitems(self, indices)

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "classes", "labels", "_size_order") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
