"""Small helpers shared by the batched transforms: argument checks, segment reductions, and a
Ragged with new values but the same structure."""

from __future__ import annotations

import torch

from hetload.ragged import Ragged


def check_points(points: Ragged, who: str, dim: int | None = 3) -> None:
    if not isinstance(points, Ragged):
        raise TypeError(f"{who} needs a hetload.Ragged, got {type(points).__name__}")
    values = points.values
    if values.dim() != 2 or (dim is not None and values.shape[1] != dim):
        want = f"[sum N_i, {dim}]" if dim is not None else "[sum N_i, D]"
        raise ValueError(f"{who}: field {points.name!r} must be {want}, got {tuple(values.shape)}")
    if not values.is_floating_point():
        raise ValueError(f"{who}: field {points.name!r} must be floating point, got {values.dtype}")


def check_seeds(seeds: torch.Tensor, batch: int, who: str) -> torch.Tensor:
    if not isinstance(seeds, torch.Tensor) or seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise ValueError(f"{who}: seeds must be an int64 [B] tensor (see sample_seeds)")
    if seeds.shape[0] != batch:
        raise ValueError(f"{who}: {seeds.shape[0]} seeds for a batch of {batch} samples")
    return seeds


def with_values(ragged: Ragged, values: torch.Tensor) -> Ragged:
    """``ragged``'s structure (offsets, name, max_len, batch_idx) with new ``values``."""
    out = Ragged(
        values,
        ragged.offsets,
        name=ragged.name,
        index_base=ragged.index_base,
        max_len=ragged._max_len,
        validate=False,
    )
    out._lengths = ragged._lengths
    out._batch_idx = ragged._batch_idx
    return out


def segment_sum(values: torch.Tensor, batch_idx: torch.Tensor, batch: int) -> torch.Tensor:
    """Per-sample sums ``[B, *D]`` of rows ``[sum N_i, *D]``."""
    out = values.new_zeros((batch, *values.shape[1:]))
    return out.index_add_(0, batch_idx, values)


def segment_reduce(
    values: torch.Tensor, batch_idx: torch.Tensor, batch: int, how: str
) -> torch.Tensor:
    """Per-sample ``"amin"`` / ``"amax"`` ``[B, D]`` of ``[sum N_i, D]`` (0 for empty samples)."""
    out = values.new_zeros((batch, values.shape[1]))
    index = batch_idx.unsqueeze(1).expand_as(values)
    return out.scatter_reduce_(0, index, values, reduce=how, include_self=False)
