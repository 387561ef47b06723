"""Pure-torch area-weighted surface sampling of packed meshes (``hetload::sample_surface``).

It serves every device where the compiled kernels (``cuda/surface_*``) are not built, and is
the reference they equal: on the CPU bit for bit in practice (the same draws, the same float64
operations in the same order, cross products without fused multiply-adds, sequential running
sums); CUDA's parallel scan may round a running sum apart in the last bit, which moves a point
to the neighbouring face only when its draw lands on a face boundary to 1e-16. Errors are the
kernels' (type and reason). See :mod:`hetload.batched.surface` for the construction.
"""

from __future__ import annotations

import torch

__all__ = ["face_areas", "sample_surface"]

OP = "hetload::sample_surface"


def _cross(e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
    """``e1 x e2`` row-wise from separate products and differences: torch.linalg.cross may fuse
    a product into the difference (FMA), which leaves a rounding residue where the exact
    result is 0 (a degenerate face would get an area and an arbitrary normal)."""
    x = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
    y = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
    z = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    return torch.stack([x, y, z], dim=1)


def _norm(v: torch.Tensor) -> torch.Tensor:
    """Row norms ``sqrt((x x + y y) + z z)``, in the kernels' order."""
    return torch.sqrt(v[:, 0] * v[:, 0] + v[:, 1] * v[:, 1] + v[:, 2] * v[:, 2])


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """float64 ``[F]`` triangle areas; ``verts [V, 3]``, ``faces [F, 3]`` (global indices)."""
    v = verts.double()
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return 0.5 * _norm(_cross(b - a, c - a))


def _check(verts, faces, face_offsets, out_offsets, seeds, total) -> None:
    """The kernels' checks, in their order and words."""
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise RuntimeError(f"{OP}: verts must be [sum V_i, 3]")
    if verts.dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"{OP}: verts must be float32 or float64, got {str(verts.dtype)[6:]}")
    if (
        faces.dtype != torch.int64
        or faces.dim() != 2
        or faces.shape[1] != 3
        or faces.device != verts.device
    ):
        raise RuntimeError(f"{OP}: faces must be int64 [sum F_i, 3] on the verts' device")
    for name, offsets in (("face_offsets", face_offsets), ("out_offsets", out_offsets)):
        if offsets.dtype != torch.int64:
            raise RuntimeError(f"{OP}: {name} must be int64, got {str(offsets.dtype)[6:]}")
        if offsets.dim() != 1 or offsets.numel() < 1:
            raise RuntimeError(
                f"{OP}: {name} must be 1-D with B+1 >= 1 entries, got {offsets.dim()} dims "
                f"and {offsets.numel()} entries"
            )
        if offsets.device != verts.device:
            raise RuntimeError(f"{OP}: {name} must be on the same device as the data")
    batch = face_offsets.numel() - 1
    if out_offsets.numel() != batch + 1:
        raise RuntimeError(f"{OP}: face_offsets and out_offsets disagree on B")
    if (
        seeds.dtype != torch.int64
        or seeds.dim() != 1
        or seeds.numel() != batch
        or seeds.device != verts.device
    ):
        raise RuntimeError(f"{OP}: seeds must be int64 [B] on the verts' device, B = {batch}")
    fo, oo = face_offsets.tolist(), out_offsets.tolist()
    if fo[0] != 0 or fo[-1] != faces.shape[0] or oo[0] != 0 or oo[-1] != total:
        raise RuntimeError(
            f"{OP}: face_offsets must run from 0 to the face rows, out_offsets from 0 to total"
        )
    for b in range(batch):
        if fo[b + 1] < fo[b] or oo[b + 1] < oo[b]:
            raise RuntimeError(f"{OP}: offsets must be non-decreasing")
        if oo[b + 1] != oo[b] and fo[b + 1] == fo[b]:
            raise RuntimeError(
                f"{OP}: sample {b} has no faces but asks for {oo[b + 1] - oo[b]} points"
            )
    bad = (faces < 0) | (faces >= verts.shape[0])
    if bool(bad.any()):
        first = int(torch.nonzero(bad.flatten())[0])
        raise RuntimeError(
            f"{OP}: face row {first // 3} holds vertex index {int(faces.flatten()[first])}, "
            f"outside the {verts.shape[0]} vertices"
        )


def sample_surface(
    verts: torch.Tensor,
    faces: torch.Tensor,
    face_offsets: torch.Tensor,
    out_offsets: torch.Tensor,
    seeds: torch.Tensor,
    stream: int,
    total: int,
    with_normals: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample ``b``, ``k_b = out_offsets[b+1] - out_offsets[b]`` area-weighted points on
    its faces (``k_b > 0`` needs faces).

    Args:
        verts: float32 / float64 ``[sum V_i, 3]``.
        faces: ``int64 [sum F_i, 3]`` global vertex indices, per sample by ``face_offsets``.
        face_offsets, out_offsets: ``int64 [B+1]``.
        seeds: ``int64 [B]``; stream: the draw stream.
        total: ``out_offsets[-1]``.
        with_normals: also compute each point's unit face normal (zero for degenerate faces).

    Returns:
        ``(points [total, 3], normals [total, 3] or [0, 3])`` in ``verts``' dtype.
    """
    from hetload.batched import random  # hetload.batched imports the ops

    _check(verts, faces, face_offsets, out_offsets, seeds, total)
    device = verts.device
    batch = face_offsets.numel() - 1
    counts = face_offsets[1:] - face_offsets[:-1]
    k = out_offsets[1:] - out_offsets[:-1]
    max_faces = int(counts.max()) if batch else 0
    max_k = int(k.max()) if batch else 0
    areas = face_areas(verts, faces)
    # per-sample cumulative areas on the padded view: each row is summed on its own, so a
    # sample's sums (and the face each point lands on) do not depend on its neighbours
    cumulative = torch.cumsum(
        torch.ops.hetload.packed_to_padded(areas, face_offsets, max_faces, 0.0), dim=1
    )
    totals = cumulative[:, -1] if max_faces else areas.new_zeros(batch)
    j = torch.arange(max_k, device=device)
    u_face = random.uniform(seeds[:, None], stream, 3 * j)
    r1 = random.uniform(seeds[:, None], stream, 3 * j + 1)
    r2 = random.uniform(seeds[:, None], stream, 3 * j + 2)
    by_area = torch.searchsorted(cumulative, u_face * totals[:, None], right=True)
    by_count = (u_face * counts[:, None]).long()
    local = torch.where((totals > 0)[:, None], by_area, by_count)
    local = torch.minimum(local, (counts - 1).clamp(min=0)[:, None])
    keep = j < k[:, None]
    chosen = (face_offsets[:-1, None] + local)[keep]
    r1, r2 = r1[keep], r2[keep]
    tri = verts.double()[faces[chosen]]  # [P, 3 corners, 3]
    root = torch.sqrt(r1)
    w0, w1, w2 = (1 - root)[:, None], (root * (1 - r2))[:, None], (root * r2)[:, None]
    points = (w0 * tri[:, 0] + w1 * tri[:, 1] + w2 * tri[:, 2]).to(verts.dtype)
    if not with_normals:
        return points, verts.new_empty((0, 3))
    normal = _cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = _norm(normal)[:, None]
    normal = torch.where(length > 0, normal / length.clamp(min=1e-300), 0.0)
    return points, normal.to(verts.dtype)
