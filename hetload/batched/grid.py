"""Voxel grid sampling of packed point batches, in Pointcept's ``GridSample`` conventions.

Per sample (as Pointcept does per scene):

- ``grid_coord = floor(coord / grid_size) - min over the sample``, int64, so every sample's
  grid starts at 0 (the coordinates spconv / torchsparse take, with the batch index beside);
- each point's voxel key is the 64-bit FNV-1a-style hash of its ``grid_coord``
  (``fnv_hash_vec``: start from the FNV offset basis, per axis multiply by the FNV prime then
  xor the coordinate, wrapping mod 2**64); points with equal keys share a voxel;
- voxels come out in increasing key order (keys compared as unsigned 64-bit integers);
- one point per voxel: in ``mode="train"`` a random one (Pointcept: ``randint % count``; here
  ``hash(seed, voxel ordinal) % count``, so it is reproducible per sample), in ``"first"`` the
  lowest original row of the voxel (Pointcept's test mode part 0, made deterministic by a
  stable sort).
"""

from __future__ import annotations

import numpy as np
import torch

from hetload.batched import random
from hetload.batched._packed import check_points, check_seeds, segment_reduce
from hetload.ragged import Ragged

__all__ = ["GridSampled", "fnv_hash", "fnv_hash_split", "grid_coords", "grid_sample"]

FNV_BASIS = 14695981039346656037
FNV_PRIME = 1099511628211
_SIGN = -(1 << 63)


def _signed(value: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _mul64(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**64`` on int64 bit patterns, from 32-bit halves whose products stay
    below 2**63 (no reliance on signed overflow)."""
    mask = 0xFFFFFFFF
    x_lo, x_hi = x & mask, (x >> 32) & mask
    c_lo, c_hi = c & mask, (c >> 32) & mask
    cross = (random._mul32(x_hi, c_lo) + random._mul32(x_lo, c_hi)) & mask
    lo_lo_hi = ((x_lo >> 16) * c_lo + (((x_lo & 0xFFFF) * c_lo) >> 16)) >> 16
    low = random._mul32(x_lo, c_lo)
    high = (lo_lo_hi + cross) & mask
    # assemble high:low as int64 bits: shift the high half into the sign bit's place
    return torch.where(high >= 1 << 31, (high - (1 << 32)) << 32, high << 32) | low


def fnv_hash(grid: torch.Tensor) -> torch.Tensor:
    """int64 ``[N]`` bit patterns of Pointcept's ``fnv_hash_vec`` (uint64) of ``grid [N, D]``
    (coordinates as uint64: non-negative ones, as grid_coord's are, are the same number).

    On the CPU numpy's wrapping uint64 arithmetic computes it directly; other devices use
    :func:`fnv_hash_split` (products split into 32-bit halves), which gives the same bits.
    """
    if grid.device.type == "cpu" and not torch.compiler.is_compiling():
        coords = grid.numpy().astype(np.uint64)
        h = np.full(coords.shape[0], np.uint64(FNV_BASIS))
        with np.errstate(over="ignore"):  # the wrap is the point
            for axis in range(coords.shape[1]):
                h = (h * np.uint64(FNV_PRIME)) ^ coords[:, axis]
        return torch.from_numpy(h.view(np.int64))
    return fnv_hash_split(grid)


def fnv_hash_split(grid: torch.Tensor) -> torch.Tensor:
    """:func:`fnv_hash` from int64 tensor ops alone (any device)."""
    h = torch.full(grid.shape[:1], _signed(FNV_BASIS), dtype=torch.int64, device=grid.device)
    for axis in range(grid.shape[1]):
        h = _mul64(h, FNV_PRIME) ^ grid[:, axis].long()
    return h


def grid_coords(points: Ragged, grid_size: float) -> torch.Tensor:
    """int64 ``[sum N_i, 3]``: ``floor(p / grid_size)`` (in float64) minus each sample's min."""
    if not grid_size > 0:
        raise ValueError(f"grid_sample: grid_size must be > 0, got {grid_size}")
    grid = torch.floor(points.values.double() / grid_size).long()
    low = segment_reduce(grid, points.batch_idx, points.batch_size, "amin")
    return grid - low[points.batch_idx]


class GridSampled:
    """What :func:`grid_sample` returns.

    Attributes:
        index: an index field ``int64 [sum K_i]``, global rows of the kept points, per sample
            in voxel-key order (``index_base`` = the points' offsets).
        grid_coord: ``int64 [sum K_i, 3]`` Ragged, the kept points' voxel coordinates.
        inverse: ``int64 [sum N_i]``, per input point, its voxel's position within its
            sample's kept points (Pointcept's ``inverse``).
    """

    __slots__ = ("grid_coord", "index", "inverse")

    def __init__(self, index: Ragged, grid_coord: Ragged, inverse: torch.Tensor) -> None:
        self.index, self.grid_coord, self.inverse = index, grid_coord, inverse


def grid_sample(
    points: Ragged,
    grid_size: float,
    seeds: torch.Tensor | None = None,
    *,
    mode: str = "train",
) -> GridSampled:
    """Keep one point per occupied voxel of each sample (Pointcept ``GridSample``).

    Args:
        points: float ``[sum N_i, 3]``.
        grid_size: the voxel edge, in the points' units.
        seeds: ``int64 [B]``, needed for ``mode="train"`` (which point a voxel keeps).
        mode: ``"train"`` (a random point per voxel) or ``"first"`` (its lowest row).
    """
    check_points(points, "grid_sample")
    if mode not in ("train", "first"):
        raise ValueError(f"grid_sample: mode must be 'train' or 'first', got {mode!r}")
    device = points.device
    batch = points.batch_size
    grid = grid_coords(points, grid_size)
    key = fnv_hash(grid)
    sample = points.batch_idx
    # order by (sample, key as uint64, row): stable sorts, least significant first
    order = torch.argsort(key ^ _SIGN, stable=True)
    order = order[torch.argsort(sample[order], stable=True)]
    key_sorted, sample_sorted = key[order], sample[order]
    new_voxel = torch.ones_like(key_sorted, dtype=torch.bool)
    if key_sorted.numel() > 1:
        new_voxel[1:] = (key_sorted[1:] != key_sorted[:-1]) | (
            sample_sorted[1:] != sample_sorted[:-1]
        )
    voxel_of_sorted = torch.cumsum(new_voxel.long(), 0) - 1  # global voxel number
    starts = torch.nonzero(new_voxel).flatten()
    voxels = starts.numel()
    counts = torch.diff(starts, append=starts.new_tensor([key_sorted.numel()]))
    voxel_sample = sample_sorted[starts]
    per_sample = torch.zeros(batch, dtype=torch.int64, device=device)
    per_sample.index_add_(0, voxel_sample, torch.ones_like(voxel_sample))
    out_offsets = torch.zeros(batch + 1, dtype=torch.int64, device=device)
    torch.cumsum(per_sample, 0, out=out_offsets[1:])
    ordinal = torch.arange(voxels, device=device) - out_offsets[:-1][voxel_sample]
    if mode == "train":
        if seeds is None:
            raise ValueError("grid_sample: mode='train' needs seeds (or use mode='first')")
        check_seeds(seeds, batch, "grid_sample")
        draw = random.hash32(seeds.to(device)[voxel_sample], random.STREAMS["grid"], ordinal)
        pick = starts + draw % counts
    else:
        pick = starts
    kept = order[pick]
    inverse = torch.empty_like(order)
    inverse[order] = ordinal[voxel_of_sorted]
    index = Ragged(
        kept, out_offsets, name=f"{points.name}_grid", index_base=points.offsets, validate=False
    )
    coords = Ragged(grid[kept], out_offsets, name="grid_coord", validate=False)
    return GridSampled(index, coords, inverse)
