"""What batching costs on a dataset: size percentiles, padding efficiency and bytes over the bus,
for fixed-size batches against bucketed batches. Shared by ``hetload stats`` and ``hetload bench``.

Two ways of moving a batch to the GPU are counted, per strategy:

- *padded on the host* (what ``default_collate`` + padding does): every field crosses as
  ``[B, max N_i, *D]``: ``B * max_i N_i * row_bytes`` bytes per field;
- *packed* (hetload): every field crosses as ``[sum N_i, *D]`` plus ``int64 [B+1]`` offsets, and
  is padded on the device.

*Padding efficiency* is ``sum N_i / (B * max N_i)`` summed over the batches of an epoch, for the
size field (``verts`` or ``points``): the share of the padded tensor that is data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_ROW_BYTES",
    "SizeSummary",
    "StrategyCost",
    "batch_cost",
    "bucket_batches",
    "compare",
    "fixed_batches",
    "matched_batch_size",
    "plot",
    "size_summary",
]

#: bytes per row of the fields hetload's readers produce, at their default dtypes
DEFAULT_ROW_BYTES = {
    "verts": 12,  # f32 [N, 3]
    "points": 12,
    "normals": 12,
    "faces": 24,  # i64 [F, 3]
    "edges": 16,
    "colors": 3,  # u8 [N, 3]
    "uvs": 8,
    "labels": 8,
}
PERCENTILES = (0, 5, 25, 50, 75, 95, 99, 100)


@dataclass(frozen=True)
class SizeSummary:
    """Rows per sample of one field: ``percentiles`` at :data:`PERCENTILES`."""

    field: str
    samples: int
    percentiles: tuple[int, ...]
    mean: float
    total: int


def size_summary(sizes: Mapping[str, np.ndarray]) -> list[SizeSummary]:
    """One :class:`SizeSummary` per field of ``sizes`` (``{field: int [N]}``; ``-1`` = absent,
    left out)."""
    out = []
    for name, column in sizes.items():
        column = np.asarray(column, dtype=np.int64)
        column = column[column >= 0]
        if column.size == 0:
            continue
        pct = np.percentile(column, PERCENTILES, method="nearest")
        out.append(
            SizeSummary(
                name,
                int(column.size),
                tuple(int(v) for v in pct),
                float(column.mean()),
                int(column.sum()),
            )
        )
    return out


@dataclass(frozen=True)
class StrategyCost:
    """One epoch of one batching strategy, costed."""

    name: str
    batches: int
    mean_batch_size: float
    padding_efficiency: float  #: of the size field; 1.0 means no padding at all
    worst_padded: int  #: the largest ``B * max N_i`` of the size field
    bytes_padded: int  #: over the bus when padded on the host, summed over the epoch
    bytes_packed: int  #: over the bus when packed (values + offsets), summed over the epoch


def fixed_batches(n: int, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """A random permutation of ``n`` indices cut into batches of ``batch_size`` (the last may
    be shorter): what ``DataLoader(shuffle=True, batch_size=...)`` does."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng(seed).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def bucket_batches(
    sizes: np.ndarray, max_tokens: int, seed: int = 0, **sampler_options
) -> list[np.ndarray]:
    """One epoch of :class:`~hetload.samplers.BucketBatchSampler` over ``sizes`` (one rank).
    Samples larger than the budget get a batch of their own unless ``oversize`` says otherwise."""
    from hetload.samplers import BucketBatchSampler

    sampler_options.setdefault("oversize", "alone")
    sampler = BucketBatchSampler(
        sizes, max_tokens=max_tokens, seed=seed, num_replicas=1, rank=0, **sampler_options
    )
    return [np.asarray(b, dtype=np.int64) for b in sampler]


def batch_cost(
    name: str,
    batches: Sequence[np.ndarray],
    sizes: Mapping[str, np.ndarray],
    row_bytes: Mapping[str, int],
    size_field: str,
) -> StrategyCost:
    """Cost ``batches`` (index arrays) given per-sample rows ``sizes`` (``{field: int [N]}``,
    ``-1`` = absent, counted as 0) and the bytes of one row of each field."""
    if not batches:
        return StrategyCost(name, 0, 0.0, 1.0, 0, 0, 0)
    counts = np.array([len(b) for b in batches], dtype=np.int64)
    cuts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    flat = np.concatenate(batches).astype(np.int64)
    bytes_padded = bytes_packed = 0
    efficiency, worst = 1.0, 0
    for field, column in sizes.items():
        rows = np.maximum(np.asarray(column, dtype=np.int64), 0)[flat]
        longest = np.maximum.reduceat(rows, cuts) if rows.size else np.zeros(0, np.int64)
        real = np.add.reduceat(rows, cuts) if rows.size else np.zeros(0, np.int64)
        padded = counts * longest
        width = int(row_bytes.get(field, 0))
        bytes_padded += int(padded.sum()) * width
        bytes_packed += int(real.sum()) * width + 8 * int((counts + 1).sum())
        if field == size_field:
            total = int(padded.sum())
            efficiency = int(real.sum()) / total if total else 1.0
            worst = int(padded.max())
    return StrategyCost(
        name=name,
        batches=len(batches),
        mean_batch_size=float(counts.mean()),
        padding_efficiency=efficiency,
        worst_padded=worst,
        bytes_padded=bytes_padded,
        bytes_packed=bytes_packed,
    )


def matched_batch_size(sizes: np.ndarray, max_tokens: int) -> int:
    """The fixed batch size whose batches hold ``max_tokens`` real points on average: the fair
    fixed-size counterpart of a bucketing budget."""
    sizes = np.asarray(sizes)
    sizes = sizes[sizes >= 0]
    mean = float(sizes.mean()) if sizes.size else 0.0
    return max(1, int(max_tokens // mean)) if mean > 0 else 1


def compare(
    sizes: Mapping[str, np.ndarray],
    *,
    max_tokens: int,
    batch_size: int | None = None,
    size_field: str | None = None,
    row_bytes: Mapping[str, int] | None = None,
    seed: int = 0,
) -> list[StrategyCost]:
    """Fixed-size random batches vs bucketed batches at ``max_tokens``, costed on ``sizes``.

    Args:
        sizes: ``{field: int [N]}`` rows per sample (``-1`` where a sample lacks the field).
        max_tokens: the bucketing budget in padded points of ``size_field``.
        batch_size: the fixed batch size; default :func:`matched_batch_size`.
        size_field: the field the budget counts; default ``verts``, else ``points``, else the
            first field.
        row_bytes: bytes per row per field; default :data:`DEFAULT_ROW_BYTES` (unknown: 4).
        seed: seeds both strategies.

    Returns:
        ``[fixed, bucketed]`` :class:`StrategyCost` rows.
    """
    if not sizes:
        raise ValueError("no size fields to compare")
    if size_field is None:
        size_field = next((f for f in ("verts", "points") if f in sizes), next(iter(sizes)))
    if size_field not in sizes:
        raise ValueError(f"size field {size_field!r} is not one of {sorted(sizes)}")
    widths = {f: (row_bytes or DEFAULT_ROW_BYTES).get(f, 4) for f in sizes}
    column = np.maximum(np.asarray(sizes[size_field], dtype=np.int64), 0)
    if batch_size is None:
        batch_size = matched_batch_size(column, max_tokens)
    fixed = batch_cost(
        f"fixed batch_size={batch_size}",
        fixed_batches(len(column), batch_size, seed),
        sizes,
        widths,
        size_field,
    )
    bucketed = batch_cost(
        f"bucket max_tokens={max_tokens:,}",
        bucket_batches(column, max_tokens, seed),
        sizes,
        widths,
        size_field,
    )
    return [fixed, bucketed]


def plot(
    path: str | os.PathLike,
    sizes: np.ndarray,
    strategies: Sequence[StrategyCost],
    *,
    size_field: str = "verts",
    title: str = "",
) -> Path:
    """A PNG: the size histogram (log bins) beside padding efficiency and bus bytes per strategy.

    Raises:
        ImportError: matplotlib is missing (``pip install 'hetload[plot]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'hetload[plot]'") from exc
    sizes = np.asarray(sizes)
    sizes = sizes[sizes > 0]
    fig, (ax_hist, ax_eff, ax_bytes) = plt.subplots(
        1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [1.6, 1, 1]}
    )
    if sizes.size:
        lo, hi = math.log10(sizes.min()), math.log10(sizes.max())
        bins = np.logspace(lo, hi if hi > lo else lo + 1, 40)
        ax_hist.hist(sizes, bins=bins, color="#4C72B0", edgecolor="white")
        ax_hist.set_xscale("log")
        for q, style in ((50, "-"), (99, "--")):
            v = np.percentile(sizes, q, method="nearest")
            ax_hist.axvline(v, color="#333333", linestyle=style, linewidth=1)
            ax_hist.annotate(
                f"p{q} {v:,.0f}",
                (v, 0.95),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
            )
    ax_hist.set_xlabel(f"{size_field} per sample (log scale)")
    ax_hist.set_ylabel("samples")
    ax_hist.set_title(f"size distribution ({sizes.size:,} samples)")

    names = [s.name.replace(" ", "\n", 1) for s in strategies]
    colors = ["#C44E52", "#55A868", "#8172B2", "#CCB974"][: len(strategies)]
    effs = [s.padding_efficiency for s in strategies]
    bars = ax_eff.bar(names, effs, color=colors)
    ax_eff.bar_label(bars, labels=[f"{e:.1%}" for e in effs], fontsize=9)
    ax_eff.set_ylim(0, 1.1)
    ax_eff.set_ylabel("padding efficiency (real / padded)")
    ax_eff.set_title("padding efficiency")

    x = np.arange(len(strategies))
    gib = 1024**3
    padded = [s.bytes_padded / gib for s in strategies]
    packed = [s.bytes_packed / gib for s in strategies]
    b1 = ax_bytes.bar(x - 0.2, padded, 0.4, label="padded on host", color="#DD8452")
    b2 = ax_bytes.bar(x + 0.2, packed, 0.4, label="packed (hetload)", color="#4C72B0")
    ax_bytes.bar_label(b1, labels=[f"{v:.2f}" for v in padded], fontsize=8)
    ax_bytes.bar_label(b2, labels=[f"{v:.2f}" for v in packed], fontsize=8)
    ax_bytes.set_xticks(x, names)
    ax_bytes.set_ylabel("GiB over the bus per epoch")
    ax_bytes.set_title("bytes host -> device")
    ax_bytes.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return out
