"""Area-weighted random points on the surfaces of a packed batch of triangle meshes.

For each sample, ``n`` points: a face is drawn with probability proportional to its area, then
a point uniform on it from two uniforms ``r1, r2`` with barycentric weights
``(1 - sqrt(r1), sqrt(r1) (1 - r2), sqrt(r1) r2)`` (the construction of PyTorch3D's
``sample_points_from_meshes``). Point ``j`` of a sample uses counters ``3 j`` (face), ``3 j + 1``
and ``3 j + 2`` of its seed, so its result does not depend on the batch or the device.
"""

from __future__ import annotations

import operator
import re

import torch

from hetload.batched import random
from hetload.batched._packed import check_points, check_seeds
from hetload.ops.surface_impl import face_areas
from hetload.ragged import Ragged

__all__ = ["face_areas", "sample_surface"]

_BAD_INDEX = re.compile(r"face row \d+ holds vertex index -?\d+, outside the \d+ vertices")


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

    The work is one op, ``torch.ops.hetload.sample_surface`` (compiled kernels from
    ``cuda/surface_*`` where built, else :mod:`hetload.ops.surface_impl`); the output size is
    read on the host once (a sync when the batch is on a GPU). A face index outside the
    vertices is refused (ValueError naming the field).
    """
    check_points(verts, "sample_surface")
    if not isinstance(faces, Ragged) or faces.values.dim() != 2 or faces.values.shape[1] != 3:
        raise ValueError("sample_surface: faces must be a Ragged [sum F_i, 3] of vertex indices")
    if faces.batch_size != verts.batch_size:
        raise ValueError(
            f"sample_surface: {faces.batch_size} face items for {verts.batch_size} vertex items"
        )
    if faces.values.is_floating_point() or faces.values.dtype == torch.bool:
        raise ValueError(
            f"sample_surface: field {faces.name!r} must hold integer vertex indices, "
            f"got {faces.values.dtype}"
        )
    try:
        count = operator.index(n)  # numpy integers too
    except TypeError:
        count = -1
    if count < 0:
        raise ValueError(f"sample_surface: n must be an integer >= 0, got {n!r}")
    check_seeds(seeds, verts.batch_size, "sample_surface")
    device = verts.device
    values = verts.values
    if values.dtype not in (torch.float32, torch.float64):
        values = values.double()  # float16 / bfloat16: float64 arithmetic, cast back below
    lengths = torch.where(faces.lengths > 0, count, 0)
    out_offsets = torch.zeros_like(faces.offsets)
    torch.cumsum(lengths, 0, out=out_offsets[1:])
    total = int(out_offsets[-1])
    try:
        points, normals = torch.ops.hetload.sample_surface(
            values,
            faces.values.long(),
            faces.offsets,
            out_offsets,
            seeds.to(device),
            random.STREAMS["surface"],
            total,
            with_normals,
        )
    except RuntimeError as exc:
        bad = _BAD_INDEX.search(str(exc))
        if bad is None:
            raise
        raise ValueError(f"sample_surface: field {faces.name!r}: {bad.group(0)}") from None
    out = Ragged(points.to(verts.dtype), out_offsets, name="points", validate=False)
    if not with_normals:
        return out
    return out, Ragged(normals.to(verts.dtype), out_offsets, name="normals", validate=False)
