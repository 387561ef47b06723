"""Pure-torch voxel grid sampling of packed points (``hetload::grid_sample``).

It serves every device where the compiled kernels (``cuda/grid_*``) are not built, and is the
reference they must equal bit for bit (Pointcept's ``GridSample`` conventions, see
:mod:`hetload.batched.grid`): voxel coordinates ``floor(p / grid_size)`` in float64 minus each
sample's minimum, keys by Pointcept's FNV hash, voxels in increasing key order (as uint64),
points of a voxel in row order, the kept point ``hash32(seed, stream, ordinal) % count`` of the
voxel (``train``) or its first. Errors are the kernels' (type and reason), so a caller sees the
same refusal whichever path serves.

Two stable sorts of the whole batch (by key, then by sample) stand in for the kernels' one sort
per sample; the division is by a float64 tensor on the points' device, never a Python scalar
(CUDA turns ``x / scalar`` into ``x * (1 / scalar)``, which rounds differently).
"""

from __future__ import annotations

import math

import torch

__all__ = ["MAX_VOXEL", "grid_sample"]

OP = "hetload::grid_sample"
#: voxel coordinates beyond this (or not finite) are refused: differences stay within int64
MAX_VOXEL = 2.0**62
_SIGN = -(1 << 63)


def _fail(reason: str) -> RuntimeError:
    return RuntimeError(f"{OP}: {reason}")


def check_args(
    points: torch.Tensor, offsets: torch.Tensor, grid_size: float, seeds: torch.Tensor
) -> None:
    """The kernels' argument checks, in their order and words."""
    if points.dim() != 2:
        raise _fail("points must be [sum N_i, D]")
    if points.dtype not in (torch.float32, torch.float64):
        raise _fail(f"points must be float32 or float64, got {str(points.dtype)[6:]}")
    if not (grid_size > 0 and math.isfinite(grid_size)):
        raise _fail("grid_size must be finite and > 0")
    if offsets.dtype != torch.int64:
        raise _fail(f"offsets must be int64, got {str(offsets.dtype)[6:]}")
    if offsets.dim() != 1 or offsets.numel() < 1:
        raise _fail(
            f"offsets must be 1-D with B+1 >= 1 entries, got {offsets.dim()} dims and "
            f"{offsets.numel()} entries"
        )
    if offsets.device != points.device:
        raise _fail("offsets must be on the same device as the data")
    batch = offsets.numel() - 1
    if (
        seeds.dtype != torch.int64
        or seeds.dim() != 1
        or seeds.numel() != batch
        or seeds.device != points.device
    ):
        raise _fail(f"seeds must be int64 [B] on the points' device, B = {batch}")
    rows = points.shape[0]
    if int(offsets[0]) != 0 or int(offsets[-1]) != rows:
        raise _fail(f"offsets must run from 0 to the packed rows ({rows})")
    if batch and bool((offsets[1:] < offsets[:-1]).any()):
        raise _fail("offsets must be non-decreasing")


def grid_sample(
    points: torch.Tensor,
    offsets: torch.Tensor,
    grid_size: float,
    seeds: torch.Tensor,
    stream: int,
    train: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One point per occupied voxel of each sample.

    Args:
        points: float32 / float64 ``[sum N_i, D]``.
        offsets: ``int64 [B+1]`` of ``points``.
        grid_size: the voxel edge (finite, > 0).
        seeds: ``int64 [B]``, each sample's seed (read only when ``train``).
        stream: the draw stream of :func:`hetload.batched.random.hash32`.
        train: a random point per voxel; else the voxel's first (lowest) row.

    Returns:
        ``(kept, grid_coord, out_offsets, inverse)``: ``kept int64 [sum K_i]`` global rows of
        the kept points, per sample in voxel-key order; ``grid_coord int64 [sum K_i, D]`` their
        voxel coordinates; ``out_offsets int64 [B+1]``; ``inverse int64 [sum N_i]``, per point
        its voxel's ordinal within its sample.
    """
    from hetload.batched import grid as hgrid  # the hashes; hetload.batched imports the ops
    from hetload.batched import random as hrandom

    check_args(points, offsets, grid_size, seeds)
    device = points.device
    rows, dims = points.shape
    batch = offsets.numel() - 1
    lengths = offsets[1:] - offsets[:-1]
    sample = torch.repeat_interleave(torch.arange(batch, device=device), lengths, output_size=rows)
    divisor = torch.tensor(grid_size, dtype=torch.float64, device=device)
    q = torch.floor(points.double() / divisor)
    bad = ~(q.abs() <= MAX_VOXEL).all(1)  # NaN compares False: refused too
    if bool(bad.any()):
        first = int(sample[bad].min())
        raise _fail(
            f"sample {first} has a coordinate that is not finite or lies beyond 2**62 voxels"
        )
    grid = q.long()
    low = grid.new_zeros((batch, dims))
    low.scatter_reduce_(0, sample[:, None].expand_as(grid), grid, reduce="amin", include_self=False)
    grid = grid - low[sample]
    key = hgrid.fnv_hash(grid)
    # order by (sample, key as uint64, row): stable sorts, least significant first
    order = torch.argsort(key ^ _SIGN, stable=True)
    order = order[torch.argsort(sample[order], stable=True)]
    key_sorted, sample_sorted = key[order], sample[order]
    new_voxel = torch.ones_like(key_sorted, dtype=torch.bool)
    if rows > 1:
        new_voxel[1:] = (key_sorted[1:] != key_sorted[:-1]) | (
            sample_sorted[1:] != sample_sorted[:-1]
        )
    voxel_of_sorted = torch.cumsum(new_voxel.long(), 0) - 1  # global voxel number
    starts = torch.nonzero(new_voxel).flatten()
    voxels = starts.numel()
    counts = torch.diff(starts, append=starts.new_tensor([rows]))
    voxel_sample = sample_sorted[starts]
    per_sample = torch.zeros(batch, dtype=torch.int64, device=device)
    per_sample.index_add_(0, voxel_sample, torch.ones_like(voxel_sample))
    out_offsets = torch.zeros(batch + 1, dtype=torch.int64, device=device)
    torch.cumsum(per_sample, 0, out=out_offsets[1:])
    ordinal = torch.arange(voxels, device=device) - out_offsets[:-1][voxel_sample]
    if train:
        draw = hrandom.hash32(seeds[voxel_sample], stream, ordinal)
        pick = starts + draw % counts
    else:
        pick = starts
    kept = order[pick]
    inverse = torch.empty_like(order)
    inverse[order] = ordinal[voxel_of_sorted]
    return kept, grid[kept], out_offsets, inverse
