"""Pure-torch per-sample point transforms of packed points (``hetload::per_sample_matmul``,
``hetload::per_sample_scale``, ``hetload::jitter_points``).

They serve every device where the compiled kernels (``cuda/augment_*``) are not built, and are
the reference those kernels must equal within float64 rounding (a sum of products in another
order; the CPU kernel's own branch-free ``log`` and ``cos``, within about 1e-15 of torch's; the
random draws themselves are the same bits; scaling is exact). Errors are the kernels' (type
and reason).
"""

from __future__ import annotations

import torch

__all__ = ["jitter_points", "per_sample_matmul", "per_sample_scale"]


def _check(points: torch.Tensor, offsets: torch.Tensor, op: str) -> int:
    """The checks the kernels share, in their order and words; returns B."""
    if points.dim() != 2:
        raise RuntimeError(f"{op}: points must be [sum N_i, D]")
    if points.dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"{op}: points must be float32 or float64, got {str(points.dtype)[6:]}")
    if offsets.dtype != torch.int64:
        raise RuntimeError(f"{op}: offsets must be int64, got {str(offsets.dtype)[6:]}")
    if offsets.dim() != 1 or offsets.numel() < 1:
        raise RuntimeError(
            f"{op}: offsets must be 1-D with B+1 >= 1 entries, got {offsets.dim()} dims and "
            f"{offsets.numel()} entries"
        )
    if offsets.device != points.device:
        raise RuntimeError(f"{op}: offsets must be on the same device as the data")
    return offsets.numel() - 1


def _check_span(points: torch.Tensor, offsets: torch.Tensor, op: str) -> None:
    rows, batch = points.shape[0], offsets.numel() - 1
    if int(offsets[0]) != 0 or int(offsets[-1]) != rows:
        raise RuntimeError(f"{op}: offsets must run from 0 to the packed rows ({rows})")
    if batch and bool((offsets[1:] < offsets[:-1]).any()):
        raise RuntimeError(f"{op}: offsets must be non-decreasing")


def _sample_of_rows(offsets: torch.Tensor, rows: int) -> torch.Tensor:
    batch = offsets.numel() - 1
    lengths = offsets[1:] - offsets[:-1]
    arange = torch.arange(batch, device=offsets.device)
    return torch.repeat_interleave(arange, lengths, output_size=rows)


def per_sample_matmul(
    points: torch.Tensor, offsets: torch.Tensor, matrices: torch.Tensor
) -> torch.Tensor:
    """Row ``p`` of sample ``b`` -> ``matrices[b] @ p`` in float64, cast to ``points.dtype``.

    Args:
        points: float32 / float64 ``[sum N_i, D]``.
        offsets: ``int64 [B+1]``.
        matrices: float64 ``[B, D, D]``.
    """
    op = "hetload::per_sample_matmul"
    batch = _check(points, offsets, op)
    dims = points.shape[1]
    if (
        matrices.dtype != torch.float64
        or matrices.shape != (batch, dims, dims)
        or matrices.device != points.device
    ):
        raise RuntimeError(f"{op}: matrices must be float64 [B, D, D] on the points' device")
    _check_span(points, offsets, op)
    m = matrices[_sample_of_rows(offsets, points.shape[0])]
    return torch.einsum("nij,nj->ni", m, points.double()).to(points.dtype)


def per_sample_scale(
    points: torch.Tensor, offsets: torch.Tensor, factors: torch.Tensor
) -> torch.Tensor:
    """Row ``p`` of sample ``b`` -> ``p * factors[b]`` in float64, cast to ``points.dtype``.

    Args:
        points: float32 / float64 ``[sum N_i, D]``.
        offsets: ``int64 [B+1]``.
        factors: float64 ``[B, D]``.
    """
    op = "hetload::per_sample_scale"
    batch = _check(points, offsets, op)
    dims = points.shape[1]
    if (
        factors.dtype != torch.float64
        or factors.shape != (batch, dims)
        or factors.device != points.device
    ):
        raise RuntimeError(f"{op}: factors must be float64 [B, D] on the points' device")
    _check_span(points, offsets, op)
    return (points.double() * factors[_sample_of_rows(offsets, points.shape[0])]).to(points.dtype)


def jitter_points(
    points: torch.Tensor,
    offsets: torch.Tensor,
    seeds: torch.Tensor,
    stream: int,
    sigma: float,
    clip: float,
) -> torch.Tensor:
    """``p + clamp(sigma * N(0, 1), -clip, clip)`` per coordinate; coordinate ``c`` of local row
    ``r`` of sample ``b`` draws counter ``D r + c`` of ``seeds[b]``'s stream ``stream``
    (:func:`hetload.batched.random.normal`). float64 arithmetic, cast to ``points.dtype``.

    Args:
        points: float32 / float64 ``[sum N_i, D]``.
        offsets: ``int64 [B+1]``.
        seeds: ``int64 [B]``.
    """
    from hetload.batched import random as hrandom  # hetload.batched imports the ops

    op = "hetload::jitter_points"
    batch = _check(points, offsets, op)
    if (
        seeds.dtype != torch.int64
        or seeds.dim() != 1
        or seeds.numel() != batch
        or seeds.device != points.device
    ):
        raise RuntimeError(f"{op}: seeds must be int64 [B] on the points' device, B = {batch}")
    if not (sigma >= 0 and clip >= 0):
        raise RuntimeError(f"{op}: sigma and clip must be >= 0")
    _check_span(points, offsets, op)
    rows, dims = points.shape
    sample = _sample_of_rows(offsets, rows)
    local = torch.arange(rows, device=points.device) - offsets[:-1][sample]
    counters = dims * local[:, None] + torch.arange(dims, device=points.device)
    noise = hrandom.normal(seeds[sample][:, None], stream, counters)
    return (points.double() + (sigma * noise).clamp(-clip, clip)).to(points.dtype)
