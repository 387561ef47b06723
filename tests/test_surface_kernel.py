"""``hetload::sample_surface``: the compiled CPU kernel (``cuda/surface_cpu.cpp``) against the
pure-torch path (:mod:`hetload.ops.surface_impl`): the same points within float64 rounding (the
same draws and faces), the same refusals; the wrapper's refusal of a bad face index naming the
field; the fake implementation. The per-sample reference (PyTorch3D's construction written
out) is in test_batched.py."""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hetload as hl
from hetload.batched import random as hrandom
from hetload.ops import surface_impl

pytestmark = pytest.mark.skipif(
    not hl.ops.library.has_kernel("sample_surface", "CPU"),
    reason="the compiled CPU kernels are not loaded",
)
STREAM = hrandom.STREAMS["surface"]


@contextmanager
def torch_path():
    lib = torch.library.Library("hetload", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        lib.impl("sample_surface", surface_impl.sample_surface, "CPU")
    try:
        yield
    finally:
        lib._destroy()


def mesh_batch(face_counts, seed, degenerate=False):
    rng = np.random.default_rng(seed)
    samples = []
    for f in face_counts:
        nv = int(rng.integers(3, 40))
        verts = rng.normal(size=(nv, 3))
        if degenerate:
            verts[:, 2] = 0.0
            verts[:, 1] = verts[:, 0]  # every face collinear: zero areas
        samples.append({"verts": verts, "faces": rng.integers(0, nv, size=(f, 3))})
    return hl.collate(samples)


def call(batch, n, seeds, normals, dtype=torch.float64):
    lengths = torch.where(batch.faces.lengths > 0, n, 0)
    out_offsets = torch.zeros_like(batch.faces.offsets)
    torch.cumsum(lengths, 0, out=out_offsets[1:])
    return torch.ops.hetload.sample_surface(
        batch.verts.values.to(dtype),
        batch.faces.values.long(),
        batch.faces.offsets,
        out_offsets,
        seeds,
        STREAM,
        int(out_offsets[-1]),
        normals,
    )


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(0, 60), min_size=1, max_size=5),
    n=st.integers(0, 50),
    seed=st.integers(0, 1000),
    degenerate=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_kernel_agrees_with_the_torch_path(counts, n, seed, degenerate, dtype):
    batch = mesh_batch(counts, seed, degenerate)
    seeds = hl.batched.sample_seeds(list(range(len(counts))), seed=seed)
    for normals in (False, True):
        compiled = call(batch, n, seeds, normals, dtype)
        with torch_path():
            pure = call(batch, n, seeds, normals, dtype)
        tol = 1e-12 if dtype == torch.float64 else 1e-6
        for a, b in zip(compiled, pure):
            assert a.dtype == dtype and a.shape == b.shape
        torch.testing.assert_close(compiled[0], pure[0], rtol=tol, atol=tol)
        torch.testing.assert_close(compiled[1], pure[1], rtol=tol, atol=tol)
        if degenerate:  # zero-area faces: drawn uniformly, normal exactly 0 (no FMA residue)
            assert not compiled[1].any()


_LOCATION = re.compile(r"^\w+, \S+:\d+, ")


def refusal(fn):
    try:
        fn()
    except Exception as exc:  # the type is part of what is compared
        return type(exc).__name__, _LOCATION.sub("", str(exc).split("\n")[0])
    return "ok", None


V = torch.zeros(4, 3)
F = torch.tensor([[0, 1, 2], [1, 2, 3]])
FO = torch.tensor([0, 1, 2])
OO = torch.tensor([0, 5, 10])
S = torch.tensor([1, 2])
op = torch.ops.hetload.sample_surface
ERRORS = {
    "index too large": lambda: op(V, torch.tensor([[0, 1, 2], [1, 9, 3]]), FO, OO, S, 5, 10, False),
    "index negative": lambda: op(V, torch.tensor([[0, -1, 2], [1, 2, 3]]), FO, OO, S, 5, 10, False),
    "no faces, points": lambda: op(V, F, torch.tensor([0, 0, 2]), OO, S, 5, 10, False),
    "total": lambda: op(V, F, FO, OO, S, 5, 9, False),
    "int verts": lambda: op(V.long(), F, FO, OO, S, 5, 10, False),
    "2-wide verts": lambda: op(V[:, :2], F, FO, OO, S, 5, 10, False),
    "int32 faces": lambda: op(V, F.int(), FO, OO, S, 5, 10, False),
    "seeds count": lambda: op(V, F, FO, OO, S[:1], 5, 10, False),
    "B mismatch": lambda: op(V, F, FO, torch.tensor([0, 10]), S, 5, 10, False),
    "offsets order": lambda: op(V, F, FO, torch.tensor([0, 6, 5]), S, 5, 5, False),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_kernel_refuses_bad_arguments_like_the_torch_path(case):
    compiled = refusal(ERRORS[case])
    with torch_path():
        pure = refusal(ERRORS[case])
    assert compiled[0] == "RuntimeError", compiled
    assert compiled == pure


def test_wrapper_names_the_faces_field_on_a_bad_index():
    batch = mesh_batch([4, 3], 0)
    batch.faces.values[5, 1] = 10_000
    seeds = hl.batched.sample_seeds([0, 1])
    with pytest.raises(ValueError, match=r"field 'faces': face row 5 holds vertex index 10000"):
        hl.batched.sample_surface(batch.verts, batch.faces, 8, seeds)
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        hl.batched.sample_surface(batch.verts, batch.faces, -1, seeds)


def test_fake_implementation_is_exact():
    verts = V + torch.arange(4.0)[:, None] ** 2
    torch.library.opcheck(op.default, (verts, F, FO, OO, S, 5, 10, True))


def test_surface_points_stay_differentiable_in_the_vertices():
    batch = mesh_batch([6, 0, 4], 3)
    seeds = hl.batched.sample_seeds([0, 1, 2])
    verts = batch.verts.values.double().requires_grad_(True)
    lengths = torch.where(batch.faces.lengths > 0, 5, 0)
    out_offsets = torch.zeros_like(batch.faces.offsets)
    torch.cumsum(lengths, 0, out=out_offsets[1:])
    faces = batch.faces.values.long()

    def both(v):
        return op(v, faces, batch.faces.offsets, out_offsets, seeds, STREAM, 10, True)

    assert torch.autograd.gradcheck(both, (verts,))
    # a point is a fixed barycentric mix of its face's corners: the gradient of the sum of all
    # points' coordinates is, per vertex, the sum of its weights over the points (times 1)
    points, _ = both(verts)
    points.sum().backward()
    assert torch.isclose(verts.grad.sum(), torch.tensor(3.0 * 10, dtype=torch.float64))
