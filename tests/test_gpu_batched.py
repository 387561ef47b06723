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
