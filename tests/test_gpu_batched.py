"""hetload.batched and the compile path on ``cuda`` (``pytest -m gpu``): the same results as
on the CPU (bit for bit where the ops are integer or order-only, within float tolerance
otherwise), the CUDA FPS kernel against the CPU one, and a fullgraph compile on the GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hetload as hl
from hetload.ops import sampling_impl

pytestmark = pytest.mark.gpu


def _clouds(batch: int, mean: int, seed: int = 0) -> hl.Ragged:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 2 * mean, size=batch)
    return hl.Ragged.from_list(
        [torch.from_numpy(rng.normal(size=(int(n), 3)).astype(np.float32)) for n in sizes]
    )


def test_random_draws_are_the_same_bits_on_cuda():
    seeds = hl.batched.sample_seeds([f"k{i}" for i in range(50)], seed=3, epoch=2)
    counters = torch.arange(10_000)
    cpu = hl.batched.random.hash32(seeds[:, None], 5, counters)
    gpu = hl.batched.random.hash32(seeds.cuda()[:, None], 5, counters.cuda())
    assert torch.equal(cpu, gpu.cpu())
    ids = torch.arange(50)
    assert torch.equal(
        hl.batched.sample_seeds(ids.cuda(), 3, 2).cpu(), hl.batched.sample_seeds(ids, 3, 2)
    )


@pytest.mark.parametrize(
    "fn",
    [
        lambda r, s: hl.batched.random_rotation(r, s),
        lambda r, s: hl.batched.random_scale(r, s, anisotropic=True),
        lambda r, s: hl.batched.jitter(r, s),
        lambda r, s: hl.batched.random_flip(r, s, axes=(0, 1, 2)),
        lambda r, s: hl.batched.center(r, "bbox"),
        lambda r, s: hl.batched.normalize_unit_sphere(r),
    ],
)
def test_geometry_on_cuda_matches_cpu(fn):
    points = _clouds(16, 500)
    seeds = hl.batched.sample_seeds(list(range(16)))
    cpu = fn(points, seeds)
    gpu = fn(points.to("cuda"), seeds.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.values.cpu(), cpu.values, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fps_cuda_kernel_matches_cpu(dtype):
    points = _clouds(40, 700, seed=1).to(dtype=dtype)
    seeds = hl.batched.sample_seeds(list(range(40)))
    for start in (False, True):
        cpu = hl.batched.farthest_point_sampling(points, 96, seeds, random_start=start)
        gpu = hl.batched.farthest_point_sampling(
            points.to("cuda"), 96, seeds.cuda(), random_start=start
        )
        assert torch.equal(gpu.values.cpu(), cpu.values)
        assert torch.equal(gpu.offsets.cpu(), cpu.offsets)


def test_fps_torch_path_on_cuda_matches_the_kernel():
    points = _clouds(8, 300, seed=2).to("cuda")
    counts = points.lengths.clamp(max=50)
    out_offsets = torch.zeros_like(points.offsets)
    torch.cumsum(counts, 0, out=out_offsets[1:])
    start = torch.zeros_like(counts)
    args = (points.values, points.offsets, out_offsets, start, int(out_offsets[-1]))
    assert torch.equal(
        torch.ops.hetload.farthest_point_sample(*args), sampling_impl.farthest_point_sample(*args)
    )


def test_grid_sample_and_serialize_on_cuda_match_cpu():
    points = hl.batched.normalize_unit_sphere(_clouds(12, 2000, seed=3))
    seeds = hl.batched.sample_seeds(list(range(12)))
    cpu = hl.batched.grid_sample(points, 0.05, seeds)
    gpu = hl.batched.grid_sample(points.to("cuda"), 0.05, seeds.cuda())
    assert torch.equal(gpu.index.values.cpu(), cpu.index.values)
    assert torch.equal(gpu.grid_coord.values.cpu(), cpu.grid_coord.values)
    assert torch.equal(gpu.inverse.cpu(), cpu.inverse)
    for order in ("z", "hilbert"):
        a = hl.batched.serialize(cpu.grid_coord, order)
        b = hl.batched.serialize(gpu.grid_coord, order)
        assert torch.equal(b.code.cpu(), a.code) and torch.equal(b.order.cpu(), a.order)


def test_surface_sampling_on_cuda_matches_cpu():
    rng = np.random.default_rng(4)
    samples = []
    for _ in range(10):
        nv = int(rng.integers(3, 200))
        samples.append(
            {
                "verts": rng.normal(size=(nv, 3)).astype(np.float32),
                "faces": rng.integers(0, nv, size=(int(rng.integers(1, 300)), 3)),
            }
        )
    batch = hl.collate(samples)
    seeds = hl.batched.sample_seeds(list(range(10)))
    cpu = hl.batched.sample_surface(batch.verts, batch.faces, 256, seeds)
    on = batch.to("cuda")
    gpu = hl.batched.sample_surface(on.verts, on.faces, 256, seeds.cuda())
    # a point may land on the neighbouring face where the cumulative areas round differently
    close = torch.isclose(gpu.values.cpu(), cpu.values, rtol=1e-4, atol=1e-4).all(1)
    assert float(close.double().mean()) > 0.999


def test_fullgraph_compile_on_cuda():
    def views(values, offsets, max_len):
        ragged = hl.Ragged(values, offsets, max_len=max_len)
        padded = ragged.padded()
        return padded, ragged.mask, hl.ops.padded_to_packed(padded, offsets, total=values.shape[0])

    compiled = torch.compile(views, fullgraph=True, dynamic=True)
    for lengths in ([3, 0, 5], [70, 1, 9, 2]):
        offsets = torch.tensor([0, *np.cumsum(lengths)], device="cuda")
        values = torch.randn(int(offsets[-1]), 3, device="cuda")
        got = compiled(values, offsets, max(lengths))
        want = views(values, offsets, max(lengths))
        for g, w in zip(got, want):
            assert torch.equal(g, w)


# ------------------------------------------- the CUDA twins of the compiled CPU kernels


def _has_cuda_kernel(op: str) -> bool:
    return hl.ops.library.has_kernel(op, "CUDA")


@pytest.mark.parametrize("train", [True, False])
def test_grid_cuda_kernel_equals_the_cpu_kernel_and_the_torch_path(train):
    assert _has_cuda_kernel("grid_sample")
    from hetload.ops import grid_impl

    # many samples (some empty) of very different sizes: the segmented sort's hard cases
    points = hl.batched.normalize_unit_sphere(_clouds(300, 400, seed=5))
    seeds = hl.batched.sample_seeds(list(range(300)))
    args = (points.values, points.offsets, 0.03, seeds, 7, train)
    cpu = torch.ops.hetload.grid_sample(*args)
    on = (points.values.cuda(), points.offsets.cuda(), 0.03, seeds.cuda(), 7, train)
    gpu = torch.ops.hetload.grid_sample(*on)
    torch_gpu = grid_impl.grid_sample(*on)
    for a, b, c in zip(cpu, gpu, torch_gpu):
        assert torch.equal(b.cpu(), a) and torch.equal(c.cpu(), a)


def test_grid_cuda_kernel_refuses_non_finite_coordinates():
    values = torch.zeros(6, 3, device="cuda")
    values[4, 1] = float("nan")
    offsets = torch.tensor([0, 2, 2, 6], device="cuda")
    seeds = torch.zeros(3, dtype=torch.int64, device="cuda")
    with pytest.raises(RuntimeError, match="sample 2 has a coordinate that is not finite"):
        torch.ops.hetload.grid_sample(values, offsets, 0.1, seeds, 7, True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_augment_cuda_kernels_match_cpu(dtype):
    for op in ("per_sample_matmul", "per_sample_scale", "jitter_points"):
        assert _has_cuda_kernel(op)
    points = _clouds(20, 800, seed=6).to(dtype=dtype)
    seeds = hl.batched.sample_seeds(list(range(20)))
    gen = torch.Generator().manual_seed(0)
    mats = torch.randn(20, 3, 3, generator=gen, dtype=torch.float64)
    factors = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    cases = [
        (torch.ops.hetload.per_sample_matmul, (mats,)),
        (torch.ops.hetload.per_sample_scale, (factors,)),
        (torch.ops.hetload.jitter_points, (seeds, 3, 0.5, 0.7)),
    ]
    for fn, extra in cases:
        cpu = fn(points.values, points.offsets, *extra)
        moved = [x.cuda() if isinstance(x, torch.Tensor) else x for x in extra]
        gpu = fn(points.values.cuda(), points.offsets.cuda(), *moved)
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=tol, atol=tol)


def test_surface_cuda_kernel_matches_cpu_with_normals_and_refuses_bad_faces():
    assert _has_cuda_kernel("sample_surface")
    rng = np.random.default_rng(7)
    samples = []
    for i in range(30):
        nv = int(rng.integers(3, 300))
        faces = rng.integers(0, nv, size=(0 if i % 7 == 3 else int(rng.integers(1, 500)), 3))
        samples.append({"verts": rng.normal(size=(nv, 3)), "faces": faces})
    batch = hl.collate(samples)
    seeds = hl.batched.sample_seeds(list(range(30)))
    cpu = hl.batched.sample_surface(batch.verts, batch.faces, 300, seeds, with_normals=True)
    on = batch.to("cuda")
    gpu = hl.batched.sample_surface(on.verts, on.faces, 300, seeds.cuda(), with_normals=True)
    for a, b in zip(cpu, gpu):
        assert torch.equal(b.offsets.cpu(), a.offsets)
        # the GPU's parallel running sums may move a point on a face boundary (to 1e-16)
        close = torch.isclose(b.values.cpu(), a.values, rtol=1e-9, atol=1e-9).all(1)
        assert float(close.double().mean()) > 0.999
    on.faces.values[3, 1] = 10**6
    with pytest.raises(ValueError, match="face row 3 holds vertex index 1000000"):
        hl.batched.sample_surface(on.verts, on.faces, 8, seeds.cuda())
