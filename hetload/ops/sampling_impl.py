"""Pure-torch farthest point sampling of packed points (``hetload::farthest_point_sample``).

It serves every device where the compiled kernels (``cuda/sampling_*.cpp|cu``) are not built, and
is the reference they must equal bit for bit: distances are accumulated in float64 one
coordinate at a time, ``min`` keeps the smaller distance, and the next point is the first one
of largest distance (``argmax``'s tie rule).
"""

from __future__ import annotations

import torch

__all__ = ["farthest_point_sample"]


def farthest_point_sample(
    points: torch.Tensor,
    offsets: torch.Tensor,
    out_offsets: torch.Tensor,
    start: torch.Tensor,
    total: int,
) -> torch.Tensor:
    """Per sample ``b``, the first ``k_b = out_offsets[b+1] - out_offsets[b]`` points of its
    farthest-point order from local row ``start[b]``.

    Args:
        points: float ``[sum N_i, D]``.
        offsets: ``int64 [B+1]`` of ``points``.
        out_offsets: ``int64 [B+1]``, ``k_b <= N_b``.
        start: ``int64 [B]``, each sample's first point (a local row, ``< N_b`` when ``k_b > 0``).
        total: ``out_offsets[-1]``.

    Returns:
        ``int64 [total]``: global row numbers into ``points``, sample by sample.
    """
    out = torch.empty(total, dtype=torch.int64, device=points.device)
    if total == 0:
        return out
    batch = offsets.numel() - 1
    lengths = offsets[1:] - offsets[:-1]
    counts = out_offsets[1:] - out_offsets[:-1]
    max_len, max_k = int(lengths.max()), int(counts.max())
    padded = torch.ops.hetload.packed_to_padded(points.double(), offsets, max_len, 0.0)
    valid = torch.arange(max_len, device=points.device) < lengths[:, None]
    # padding rows sit at distance -1, below every real one, so argmax never picks them
    dist = torch.where(valid, torch.inf, -1.0).to(torch.float64)
    rows = torch.arange(batch, device=points.device)
    current = start.clone()
    chosen = torch.empty(batch, max_k, dtype=torch.int64, device=points.device)
    for step in range(max_k):
        chosen[:, step] = current
        center = padded[rows, current]  # [B, D]
        d = torch.zeros_like(dist)
        for axis in range(padded.shape[2]):
            diff = padded[:, :, axis] - center[:, axis, None]
            d = d + diff * diff
        dist = torch.where(valid, torch.minimum(dist, d), -1.0)
        current = torch.argmax(dist, dim=1)
    keep = torch.arange(max_k, device=points.device) < counts[:, None]
    out.copy_((chosen + offsets[:-1, None])[keep])
    return out
