"""Farthest point sampling per sample of a packed point batch.

Each sample's first point is row 0 (PyTorch3D's ``sample_farthest_points`` default) or, with
``random_start``, a row drawn from its own seed; every next point is the one farthest (squared
Euclidean, float64) from those chosen so far, the first such row on ties. The work runs in
``torch.ops.hetload.farthest_point_sample``: the compiled CPU / CUDA kernel from ``cuda/`` when
built, else a vectorized torch loop (``hetload/ops/sampling_impl.py``); all three give the same
indices.
"""

from __future__ import annotations

import torch

from hetload.batched import random
from hetload.batched._packed import check_points, check_seeds
from hetload.ragged import Ragged

__all__ = ["farthest_point_sampling"]


def farthest_point_sampling(
    points: Ragged,
    n: int,
    seeds: torch.Tensor | None = None,
    *,
    random_start: bool = False,
) -> Ragged:
    """The indices of ``min(n, N_i)`` farthest points of each sample.

    Args:
        points: float32 / float64 ``[sum N_i, D]``.
        n: points to keep per sample (all of a smaller sample).
        seeds: ``int64 [B]`` (:func:`hetload.batched.sample_seeds`), needed with ``random_start``.
        random_start: start each sample at a row drawn from its seed instead of row 0.

    Returns:
        An index field ``int64 [sum min(n, N_i)]`` of global rows into ``points.values`` in
        selection order (``index_base = points.offsets``: ``.padded()`` gives local rows, ``-1``
        padded). Gather other per-point fields with ``field.values[idx.values]``.

    Reads the per-sample counts on the host once (a sync when ``points`` is on a GPU).
    """
    check_points(points, "farthest_point_sampling", dim=None)
    if points.dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"farthest_point_sampling: field {points.name!r} must be float32 or float64, "
            f"got {points.dtype}"
        )
    if n < 0:
        raise ValueError(f"farthest_point_sampling: n must be >= 0, got {n}")
    device = points.device
    lengths = points.lengths
    counts = lengths.clamp(max=n)
    out_offsets = torch.zeros_like(points.offsets)
    torch.cumsum(counts, 0, out=out_offsets[1:])
    if random_start:
        if seeds is None:
            raise ValueError("farthest_point_sampling: random_start needs seeds")
        check_seeds(seeds, points.batch_size, "farthest_point_sampling")
        u = random.uniform(
            seeds.to(device), random.STREAMS["fps"], seeds.new_zeros((), device=device)
        )
        start = torch.minimum((u * lengths).long(), (lengths - 1).clamp(min=0))
    else:
        start = torch.zeros_like(lengths)
    total = int(out_offsets[-1])
    idx = torch.ops.hetload.farthest_point_sample(
        points.values.contiguous(), points.offsets, out_offsets, start, total
    )
    out = Ragged(
        idx, out_offsets, name=f"{points.name}_fps", index_base=points.offsets, validate=False
    )
    if points._max_len is not None:
        out._max_len = min(points._max_len, n)
    return out
