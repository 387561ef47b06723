"""Diagnostics of an epoch plan: padding efficiency, batch sizes, budget use, rank balance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hetload.samplers.cost import Budget
from hetload.samplers.plan import EpochPlan

__all__ = ["SamplerStats", "summarize"]


@dataclass(frozen=True)
class ColumnStats:
    """One size column over the scheduled batches of an epoch."""

    name: str
    padding_efficiency: float  #: real elements / padded elements (``count * max``), summed
    real_mean: float  #: real elements per batch
    real_std: float
    real_max: int
    padded_mean: float  #: padded elements (``count * max``) per batch
    padded_std: float
    padded_max: int


@dataclass(frozen=True)
class SamplerStats:
    """What one epoch of a :class:`~hetload.samplers.BucketBatchSampler` looks like."""

    epoch: int
    world_size: int
    windows: int
    samples: int  #: distinct samples scheduled this epoch
    batches: int  #: batches over all ranks (``steps * world_size``)
    steps: int  #: batches per rank
    columns: tuple[ColumnStats, ...]
    worst_load: float  #: the largest batch cost / budget (> 1 only under ``oversize="alone"``)
    mean_load: float
    step_imbalance: float  #: sum over steps of the largest cost / sum of the mean cost (1 = ideal)
    oversize: int  #: samples over the budget alone
    skipped: int  #: of those, left out (``oversize="skip"``)
    duplicated: int  #: samples scheduled twice so every rank has a batch
    dropped: int  #: samples left out by ``drop_last``
    batch_size_hist: tuple[tuple[int, int, int], ...] = field(default=())
    """``(lo, hi, batches)``: how many batches hold ``lo <= count < hi`` samples."""

    @property
    def padding_efficiency(self) -> float:
        """Padding efficiency of the first (or only) size column."""
        return self.columns[0].padding_efficiency

    def __str__(self) -> str:
        lines = [
            f"epoch {self.epoch}: {self.samples} samples in {self.batches} batches "
            f"= {self.steps} steps x {self.world_size} ranks ({self.windows} windows)",
            f"budget use: mean {self.mean_load:.3f}, worst {self.worst_load:.3f}; "
            f"step imbalance {self.step_imbalance:.4f}",
            f"oversize {self.oversize} (skipped {self.skipped}), duplicated {self.duplicated}, "
            f"dropped {self.dropped}",
            "",
            f"{'column':<10}{'pad eff':>9}{'real mean':>12}{'real std':>11}{'real max':>11}"
            f"{'padded mean':>13}{'padded max':>12}",
        ]
        for c in self.columns:
            lines.append(
                f"{c.name:<10}{c.padding_efficiency:>9.4f}{c.real_mean:>12.0f}{c.real_std:>11.0f}"
                f"{c.real_max:>11d}{c.padded_mean:>13.0f}{c.padded_max:>12d}"
            )
        lines += ["", f"{'samples/batch':<16}{'batches':>9}"]
        for lo, hi, n in self.batch_size_hist:
            label = f"{lo}" if hi == lo + 1 else f"{lo}..{hi - 1}"
            lines.append(f"{label:<16}{n:>9d}")
        return "\n".join(lines)


def summarize(
    plan: EpochPlan,
    budget: Budget,
    columns: Sequence[str],
    *,
    epoch: int,
    oversize: int,
    skipped: int,
) -> SamplerStats:
    """Statistics over the batches ``plan`` schedules (a repeated batch counts each time)."""
    ids = plan.schedule.ravel()
    count, maxes, sums = plan.count[ids], plan.maxes[ids], plan.sums[ids]
    padded = count[:, None] * maxes
    per_column = []
    for k, name in enumerate(columns):
        real, pad = sums[:, k], padded[:, k]
        per_column.append(
            ColumnStats(
                name=str(name),
                padding_efficiency=float(real.sum() / pad.sum()) if pad.sum() else 1.0,
                real_mean=_mean(real),
                real_std=float(real.std()) if real.size else 0.0,
                real_max=int(real.max()) if real.size else 0,
                padded_mean=_mean(pad),
                padded_std=float(pad.std()) if pad.size else 0.0,
                padded_max=int(pad.max()) if pad.size else 0,
            )
        )
    load = budget.load(count, maxes, sums)
    step_load = load.reshape(plan.schedule.shape)
    mean_step = step_load.mean(axis=1).sum() if step_load.size else 0.0
    imbalance = float(step_load.max(axis=1).sum() / mean_step) if mean_step else 1.0
    return SamplerStats(
        epoch=epoch,
        world_size=plan.schedule.shape[1],
        windows=plan.n_windows,
        samples=int(plan.count[np.unique(ids)].sum()),
        batches=int(ids.size),
        steps=int(plan.schedule.shape[0]),
        columns=tuple(per_column),
        worst_load=float(load.max()) if load.size else 0.0,
        mean_load=_mean(load),
        step_imbalance=imbalance,
        oversize=oversize,
        skipped=skipped,
        duplicated=plan.duplicated,
        dropped=plan.dropped,
        batch_size_hist=_pow2_hist(count),
    )


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else 0.0


def _pow2_hist(count: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    if count.size == 0:
        return ()
    bins = np.floor(np.log2(np.maximum(count, 1))).astype(np.int64)
    hist = np.bincount(bins)
    return tuple((1 << b, 1 << (b + 1), int(n)) for b, n in enumerate(hist) if n)
