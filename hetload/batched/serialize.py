"""Space-filling-curve serialization of packed voxel coordinates, in PTv3's conventions.

Point Transformer V3 (Pointcept ``models/utils/serialization``) orders the points of a batch by
a code per point: ``batch << (3 * depth) | curve(grid_coord)``, so points sort by sample first
and along the curve within it. The curves:

- ``"z"``: Morton order; bit ``i`` of x, y, z goes to bit ``3i + 2``, ``3i + 1``, ``3i``
  (x the most significant of each triple, OCNN's ``xyz2key``);
- ``"hilbert"``: Skilling's Hilbert index ("Programming the Hilbert curve", 2004) of
  ``(x, y, z)``, x the most significant axis;
- ``"z-trans"`` / ``"hilbert-trans"``: the same with x and y swapped.

``depth`` (bits per axis) defaults to PTv3's adaptive choice, the bit length of
``max(grid_coord) + 1`` over the batch (a host read); codes need ``3 * depth`` plus the batch
index's bits to fit 63 bits, and PTv3 caps ``depth`` at 16.
"""

from __future__ import annotations

import torch

from hetload.ragged import Ragged

__all__ = ["ORDERS", "Serialized", "hilbert_encode", "serialize", "z_order_encode"]

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")


def z_order_encode(grid: torch.Tensor, depth: int) -> torch.Tensor:
    """int64 ``[N]`` Morton codes of int ``grid [N, 3]`` (coordinates in ``[0, 2**depth)``)."""
    x, y, z = (grid[:, a].long() for a in range(3))
    code = torch.zeros_like(x)
    for bit in range(depth):
        code |= ((x >> bit) & 1) << (3 * bit + 2)
        code |= ((y >> bit) & 1) << (3 * bit + 1)
        code |= ((z >> bit) & 1) << (3 * bit)
    return code


def hilbert_encode(grid: torch.Tensor, depth: int) -> torch.Tensor:
    """int64 ``[N]`` Hilbert indices of int ``grid [N, 3]`` (coordinates in ``[0, 2**depth)``).

    Skilling's transform to the "transposed" index, vectorized over points: undo the
    excess work level by level from the top bit, Gray-decode the interleaved bits, then
    interleave them (axis 0 most significant at each level).
    """
    axes = [grid[:, a].long().clone() for a in range(3)]
    if depth == 0 or grid.shape[0] == 0:
        return torch.zeros(grid.shape[0], dtype=torch.int64, device=grid.device)
    q = 1 << (depth - 1)
    while q > 1:
        p = q - 1
        for i in range(3):
            on = (axes[i] & q) != 0
            swap = torch.where(on, 0, (axes[0] ^ axes[i]) & p)
            if i == 0:
                axes[0] = torch.where(on, axes[0] ^ p, axes[0])
            else:
                axes[0] = torch.where(on, axes[0] ^ p, axes[0] ^ swap)
                axes[i] = axes[i] ^ swap
        q >>= 1
    for i in range(1, 3):
        axes[i] = axes[i] ^ axes[i - 1]
    flips = torch.zeros_like(axes[0])
    q = 1 << (depth - 1)
    while q > 1:
        flips = torch.where((axes[2] & q) != 0, flips ^ (q - 1), flips)
        q >>= 1
    axes = [a ^ flips for a in axes]
    code = torch.zeros_like(axes[0])
    for bit in range(depth):
        for i in range(3):
            code |= ((axes[i] >> bit) & 1) << (3 * bit + 2 - i)
    return code


class Serialized:
    """What :func:`serialize` returns, per order ``k`` (PTv3's ``serialized_*`` fields).

    Attributes:
        code: ``int64 [K, sum N_i]``, ``batch << 3 depth | curve code``.
        order: ``int64 [K, sum N_i]``, ``argsort(code)``: packed rows in curve order (stays
            sample by sample, so the batch's offsets still hold).
        inverse: ``int64 [K, sum N_i]``, the inverse permutation of ``order``.
        depth: bits per axis used.
    """

    __slots__ = ("code", "depth", "inverse", "order")

    def __init__(self, code, order, inverse, depth) -> None:
        self.code, self.order, self.inverse, self.depth = code, order, inverse, depth


def serialize(
    grid_coord: Ragged,
    order: str | tuple[str, ...] | list[str] = "z",
    depth: int | None = None,
) -> Serialized:
    """PTv3's serialization of a packed batch of voxel coordinates.

    Args:
        grid_coord: int ``[sum N_i, 3]``, non-negative (e.g. :func:`grid_sample`'s
            ``grid_coord``).
        order: one of :data:`ORDERS` or a sequence of them.
        depth: bits per axis; ``None`` is PTv3's adaptive depth.
    """
    if (
        not isinstance(grid_coord, Ragged)
        or grid_coord.values.dim() != 2
        or (grid_coord.values.shape[1] != 3)
    ):
        raise ValueError("serialize: grid_coord must be a Ragged [sum N_i, 3] of voxel indices")
    values = grid_coord.values
    if values.is_floating_point() or values.dtype == torch.bool:
        raise ValueError(f"serialize: grid_coord must be integer, got {values.dtype}")
    orders = (order,) if isinstance(order, str) else tuple(order)
    for name in orders:
        if name not in ORDERS:
            raise ValueError(f"serialize: order must be one of {ORDERS}, got {name!r}")
    if values.numel() and bool((values < 0).any()):
        raise ValueError("serialize: grid_coord must be non-negative")
    if depth is None:
        depth = int(values.max() + 1).bit_length() if values.numel() else 0
    batch_bits = max(grid_coord.batch_size - 1, 0).bit_length()
    if not 0 <= depth <= 16 or 3 * depth + batch_bits > 63:
        raise ValueError(
            f"serialize: depth {depth} does not fit (0..16 bits per axis, 3 * depth + "
            f"{batch_bits} batch bits <= 63)"
        )
    if values.numel() and int(values.max()) >= 1 << depth:
        raise ValueError(f"serialize: a coordinate does not fit in depth={depth} bits")
    batch_code = grid_coord.batch_idx << (3 * depth)
    codes = []
    for name in orders:
        grid = values[:, [1, 0, 2]] if name.endswith("-trans") else values
        curve = z_order_encode if name.startswith("z") else hilbert_encode
        codes.append(batch_code | curve(grid, depth))
    code = torch.stack(codes)
    perm = torch.argsort(code, dim=1, stable=True)
    inverse = torch.empty_like(perm)
    inverse.scatter_(1, perm, torch.arange(perm.shape[1], device=perm.device).expand_as(perm))
    return Serialized(code, perm, inverse, depth)
