"""Area-weighted random points on the surfaces of a packed batch of triangle meshes.

For each sample, ``n`` points: a face is drawn with probability proportional to its area, then
a point uniform on it from two uniforms ``r1, r2`` with barycentric weights
``(1 - sqrt(r1), sqrt(r1) (1 - r2), sqrt(r1) r2)`` (the construction of PyTorch3D's
``sample_points_from_meshes``). Point ``j`` of a sample uses counters ``3 j`` (face), ``3 j + 1``
and ``3 j + 2`` of its seed, so its result does not depend on the batch or the device.
"""

from __future__ import annotations

import torch

from hetload.batched import random
from hetload.batched._packed import check_points, check_seeds, ragged_from_lengths
from hetload.ragged import Ragged

__all__ = ["face_areas", "sample_surface"]


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """float64 ``[F]`` triangle areas; ``verts [V, 3]``, ``faces [F, 3]`` (global indices)."""
    v = verts.double()
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return 0.5 * torch.linalg.cross(b - a, c - a).norm(dim=1)


def sample_surface(
    verts: Ragged,
    faces: Ragged,
    n: int,
    seeds: torch.Tensor,
    *,
    with_normals: bool = False,
) -> Ragged | tuple[Ragged, Ragged]:
    """``n`` area-weighted random surface points per mesh of a packed batch.

    Args:
        verts: ``[sum V_i, 3]`` float vertices.
        faces: an index field ``[sum F_i, 3]`` of global vertex indices (as :func:`hetload.collate`
            packs ``faces``), one item per sample.
        n: points per sample; a sample without faces gets none; one whose faces all have zero
            area draws its faces uniformly.
        seeds: ``int64 [B]``, :func:`hetload.batched.sample_seeds`.
        with_normals: also return each point's unit face normal (zero for degenerate faces).

    Returns:
        ``points``: a Ragged ``[sum n_i, 3]`` of ``verts``' dtype, ``n_i = n`` (0 without
        faces); with ``with_normals``, ``(points, normals)`` with the same offsets.
    """
    check_points(verts, "sample_surface")
    if not isinstance(faces, Ragged) or faces.values.dim() != 2 or faces.values.shape[1] != 3:
        raise ValueError("sample_surface: faces must be a Ragged [sum F_i, 3] of vertex indices")
    if faces.batch_size != verts.batch_size:
        raise ValueError(
            f"sample_surface: {faces.batch_size} face items for {verts.batch_size} vertex items"
        )
    if n < 0:
        raise ValueError(f"sample_surface: n must be >= 0, got {n}")
    check_seeds(seeds, verts.batch_size, "sample_surface")
    device = verts.device
    seeds = seeds.to(device)
    batch = verts.batch_size
    face_values = faces.values.long()
    areas = face_areas(verts.values, face_values)
    counts = faces.lengths
    has_faces = counts > 0
    # per-sample cumulative areas on the padded view: each row is summed on its own, so a
    # sample's sums (and the face each point lands on) do not depend on its neighbours
    cumulative = torch.cumsum(
        torch.ops.hetload.packed_to_padded(areas, faces.offsets, faces.max_len, 0.0), dim=1
    )
    totals = cumulative[:, -1] if faces.max_len else areas.new_zeros(batch)
    stream = random.STREAMS["surface"]
    j = torch.arange(n, device=device)
    u_face = random.uniform(seeds[:, None], stream, 3 * j)
    r1 = random.uniform(seeds[:, None], stream, 3 * j + 1)
    r2 = random.uniform(seeds[:, None], stream, 3 * j + 2)
    by_area = torch.searchsorted(cumulative, u_face * totals[:, None], right=True)
    by_count = (u_face * counts[:, None]).long()
    local = torch.where((totals > 0)[:, None], by_area, by_count)
    local = torch.minimum(local, (counts - 1).clamp(min=0)[:, None])
    keep = has_faces[:, None].expand(batch, n)
    chosen = (faces.offsets[:-1, None] + local)[keep]
    r1, r2 = r1[keep], r2[keep]
    tri = verts.values.double()[face_values[chosen]]  # [P, 3 corners, 3]
    root = torch.sqrt(r1)
    weights = torch.stack([1 - root, root * (1 - r2), root * r2], dim=1)
    points = (weights[:, :, None] * tri).sum(1).to(verts.dtype)
    lengths = torch.where(has_faces, n, 0)
    out = ragged_from_lengths(points, lengths, "points")
    if not with_normals:
        return out
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = normal.norm(dim=1, keepdim=True)
    normal = torch.where(length > 0, normal / length.clamp(min=1e-300), 0.0)
    return out, ragged_from_lengths(normal.to(verts.dtype), lengths, "normals")
