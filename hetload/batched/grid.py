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

The work is one op, ``torch.ops.hetload.grid_sample``: the compiled CPU / CUDA kernels from
``cuda/grid_*`` when built (one sort per sample), else the pure-torch path
(:mod:`hetload.ops.grid_impl`, two stable sorts of the whole batch); both give the same bits.
Coordinates that are not finite, or more than 2**62 voxels from 0, are refused (a ValueError
naming the field and the sample), never hashed.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from hetload.batched import random
from hetload.batched._packed import check_points, check_seeds, segment_reduce
from hetload.ragged import Ragged

__all__ = ["GridSampled", "fnv_hash", "fnv_hash_split", "grid_coords", "grid_sample"]

FNV_BASIS = 14695981039346656037
FNV_PRIME = 1099511628211
_BAD_COORDINATE = re.compile(r"sample \d+ has a coordinate that is not finite[^\n]*")


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
    # a tensor divisor: CUDA computes x / python_scalar as x * (1 / scalar), which rounds apart
    divisor = torch.tensor(float(grid_size), dtype=torch.float64, device=points.device)
    grid = torch.floor(points.values.double() / divisor).long()
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
    if isinstance(grid_size, bool) or not isinstance(grid_size, (int, float)):
        raise TypeError(f"grid_sample: grid_size must be a number, got {type(grid_size).__name__}")
    if not (grid_size > 0 and math.isfinite(grid_size)):
        raise ValueError(f"grid_sample: grid_size must be finite and > 0, got {grid_size}")
    device = points.device
    if mode == "train":
        if seeds is None:
            raise ValueError("grid_sample: mode='train' needs seeds (or use mode='first')")
        seeds = check_seeds(seeds, points.batch_size, "grid_sample").to(device)
    else:
        seeds = torch.zeros(points.batch_size, dtype=torch.int64, device=device)
    values = points.values
    if values.dtype not in (torch.float32, torch.float64):
        values = values.float()  # float16 / bfloat16: exact in float32, the same voxels
    try:
        kept, coords, out_offsets, inverse = torch.ops.hetload.grid_sample(
            values, points.offsets, float(grid_size), seeds, random.STREAMS["grid"], mode == "train"
        )
    except RuntimeError as exc:
        bad = _BAD_COORDINATE.search(str(exc))
        if bad is None:
            raise
        raise ValueError(f"grid_sample: field {points.name!r}: {bad.group(0)}") from None
    index = Ragged(
        kept, out_offsets, name=f"{points.name}_grid", index_base=points.offsets, validate=False
    )
    coords = Ragged(coords, out_offsets, name="grid_coord", validate=False)
    return GridSampled(index, coords, inverse)
