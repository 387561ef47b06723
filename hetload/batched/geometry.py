"""Per-sample geometric augmentation and normalization of packed point batches.

Every function takes a :class:`~hetload.Ragged` of points ``[sum N_i, 3]`` (any float dtype, any
device) and returns a new one with the same offsets and dtype. The random ones take
``seeds: int64 [B]`` (:func:`hetload.batched.sample_seeds`) and draw each sample's parameters
from its own seed only (:mod:`hetload.batched.random`), so a sample is transformed the same way
in any batch and on any device. Arithmetic is float64, cast back at the end.
"""

from __future__ import annotations

import torch

from hetload.batched import random
from hetload.batched._packed import (
    check_points,
    check_seeds,
    segment_reduce,
    segment_sum,
    with_values,
)
from hetload.ragged import Ragged

__all__ = [
    "center",
    "centers",
    "flip_signs",
    "jitter",
    "normalize_unit_sphere",
    "random_flip",
    "random_rotation",
    "random_scale",
    "rotation_matrices",
    "scale_factors",
]


def _axis(axis: int | str | None, who: str) -> int | None:
    if isinstance(axis, str):
        if axis not in ("x", "y", "z"):
            raise ValueError(f"{who}(axis=...) must be x, y, z or None, got {axis!r}")
        return "xyz".index(axis)
    if axis not in (None, 0, 1, 2):
        raise ValueError(f"{who}(axis=...) must be 0, 1, 2 or None, got {axis!r}")
    return axis


def rotation_matrices(seeds: torch.Tensor, axis: int | str | None = None) -> torch.Tensor:
    """float64 ``[B, 3, 3]``: per seed, a rotation uniform over SO(3) (a normalized Gaussian
    quaternion, normals from counters 0..3) or, with ``axis``, about that axis by an angle
    uniform in ``[0, 2 pi)`` (counter 0)."""
    axis = _axis(axis, "rotation_matrices")
    stream = random.STREAMS["rotation"]
    batch = seeds.shape[0]
    eye = torch.eye(3, dtype=torch.float64, device=seeds.device)
    r = eye.repeat(batch, 1, 1)
    if axis is not None:
        angle = 2 * torch.pi * random.uniform(seeds, stream, seeds.new_zeros(()))
        c, s = torch.cos(angle), torch.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
        return r
    q = random.normal(seeds[:, None], stream, torch.arange(4, device=seeds.device))
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], 1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], 1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1),
        ],
        1,
    )


def _values_for_kernel(points: Ragged) -> torch.Tensor:
    """The values the float32 / float64 kernels take: float16 / bfloat16 go as float64 (the
    arithmetic is float64 anyway; the result is cast back once)."""
    values = points.values
    return values if values.dtype in (torch.float32, torch.float64) else values.double()


def _per_sample_linear(points: Ragged, matrices: torch.Tensor) -> Ragged:
    """Row ``p`` of sample ``b`` -> ``matrices[b] @ p`` (``hetload::per_sample_matmul``: one
    pass, the compiled kernel where built)."""
    out = torch.ops.hetload.per_sample_matmul(
        _values_for_kernel(points), points.offsets, matrices.contiguous()
    )
    return with_values(points, out.to(points.dtype))


def _per_sample_scale(points: Ragged, factors: torch.Tensor) -> Ragged:
    """Row ``p`` of sample ``b`` -> ``p * factors[b]`` (``hetload::per_sample_scale``)."""
    out = torch.ops.hetload.per_sample_scale(
        _values_for_kernel(points), points.offsets, factors.to(torch.float64).contiguous()
    )
    return with_values(points, out.to(points.dtype))


def random_rotation(points: Ragged, seeds: torch.Tensor, axis: int | str | None = None) -> Ragged:
    """Rotate each sample by its own random rotation (:func:`rotation_matrices`)."""
    check_points(points, "random_rotation")
    check_seeds(seeds, points.batch_size, "random_rotation")
    return _per_sample_linear(points, rotation_matrices(seeds.to(points.device), axis))


def scale_factors(
    seeds: torch.Tensor, low: float, high: float, anisotropic: bool = False
) -> torch.Tensor:
    """float64 ``[B, 3]``: per seed, a factor uniform in ``[low, high)`` (counter 0), or one per
    axis (counters 0..2) when ``anisotropic``."""
    if not 0 < low <= high:
        raise ValueError(f"random_scale needs 0 < low <= high, got {low}, {high}")
    counters = torch.arange(3 if anisotropic else 1, device=seeds.device)
    u = random.uniform(seeds[:, None], random.STREAMS["scale"], counters)
    return (low + (high - low) * u).expand(seeds.shape[0], 3)


def random_scale(
    points: Ragged,
    seeds: torch.Tensor,
    low: float = 0.8,
    high: float = 1.25,
    anisotropic: bool = False,
) -> Ragged:
    """Scale each sample by its own factor(s) (:func:`scale_factors`)."""
    check_points(points, "random_scale")
    check_seeds(seeds, points.batch_size, "random_scale")
    factors = scale_factors(seeds.to(points.device), low, high, anisotropic)
    return _per_sample_scale(points, factors)


def jitter(points: Ragged, seeds: torch.Tensor, sigma: float = 0.01, clip: float = 0.05) -> Ragged:
    """Add ``N(0, sigma)`` noise clipped to ``[-clip, clip]`` to every coordinate: coordinate
    ``c`` of row ``r`` of a sample uses its counter ``3 r + c`` (``hetload::jitter_points``:
    draws, Box-Muller and the add in one pass, the compiled kernel where built)."""
    if not (sigma >= 0 and clip >= 0):  # NaN too
        raise ValueError(f"jitter needs sigma, clip >= 0, got {sigma}, {clip}")
    check_points(points, "jitter")
    check_seeds(seeds, points.batch_size, "jitter")
    out = torch.ops.hetload.jitter_points(
        _values_for_kernel(points),
        points.offsets,
        seeds.to(points.device),
        random.STREAMS["jitter"],
        float(sigma),
        float(clip),
    )
    return with_values(points, out.to(points.dtype))


def flip_signs(seeds: torch.Tensor, axes: tuple[int, ...], p: float) -> torch.Tensor:
    """float64 ``[B, 3]`` of ``-1`` / ``1``: axis ``a`` of a sample is flipped when its uniform
    (counter ``a``) is below ``p``; axes not listed are never flipped."""
    u = random.uniform(seeds[:, None], random.STREAMS["flip"], torch.arange(3, device=seeds.device))
    listed = torch.zeros(3, dtype=torch.bool, device=seeds.device)
    listed[list(axes)] = True
    return torch.where((u < p) & listed, -1.0, 1.0)


def random_flip(
    points: Ragged, seeds: torch.Tensor, axes: tuple[int, ...] | list[int] = (0,), p: float = 0.5
) -> Ragged:
    """Mirror each sample along each of ``axes`` with probability ``p`` (:func:`flip_signs`)."""
    axes = tuple(_axis(a, "random_flip") for a in axes)
    if None in axes or not 0 <= p <= 1:
        raise ValueError(f"random_flip needs axes in 0..2 and 0 <= p <= 1, got {axes}, {p}")
    check_points(points, "random_flip")
    check_seeds(seeds, points.batch_size, "random_flip")
    return _per_sample_scale(points, flip_signs(seeds.to(points.device), axes, p))


def centers(points: Ragged, how: str = "mean") -> torch.Tensor:
    """float64 ``[B, 3]``: each sample's mean or bounding-box center (0 for empty samples)."""
    if how not in ("mean", "bbox"):
        raise ValueError(f"center must be 'mean' or 'bbox', got {how!r}")
    values, idx, batch = points.values.double(), points.batch_idx, points.batch_size
    if how == "mean":
        counts = points.lengths.clamp(min=1).to(torch.float64)
        return segment_sum(values, idx, batch) / counts[:, None]
    low = segment_reduce(values, idx, batch, "amin")
    high = segment_reduce(values, idx, batch, "amax")
    return (low + high) / 2


def center(points: Ragged, how: str = "mean") -> Ragged:
    """Move each sample so its mean (``"mean"``) or bounding-box center (``"bbox"``) is 0."""
    check_points(points, "center")
    shift = centers(points, how)
    return with_values(points, (points.values.double() - shift[points.batch_idx]).to(points.dtype))


def normalize_unit_sphere(points: Ragged, how: str = "mean") -> Ragged:
    """Center each sample (``how``), then divide it by its largest point norm, so it fits the
    unit sphere (samples whose points are all at the center only move)."""
    check_points(points, "normalize_unit_sphere")
    shifted = points.values.double() - centers(points, how)[points.batch_idx]
    norms = shifted.norm(dim=1, keepdim=True)
    radius = segment_reduce(norms, points.batch_idx, points.batch_size, "amax")
    radius = torch.where(radius > 0, radius, torch.ones_like(radius))
    return with_values(points, (shifted / radius[points.batch_idx]).to(points.dtype))
