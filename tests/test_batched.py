"""hetload.batched: each transform against a per-sample reference written here, and the same
result for a sample in any batch composition (hypothesis over compositions)."""

from __future__ import annotations

import itertools
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hetload as hl
from hetload.batched import random as hrandom
from hetload.ops import sampling_impl

STREAM = hrandom.STREAMS


def fmix32_reference(x: int) -> int:
    """MurmurHash3's finalizer on Python ints (the textbook form)."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def u(seed: int, stream: str, counter: int) -> float:
    """One uniform of a sample's stream, as the reference draws it."""
    return float(hrandom.uniform(torch.tensor(seed), STREAM[stream], torch.tensor(counter)).item())


def n01(seed: int, stream: str, counter: int) -> float:
    u1, u2 = u(seed, stream, 2 * counter), u(seed, stream, 2 * counter + 1)
    return float(np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2))


def ragged(items, dtype=torch.float32):
    return hl.Ragged.from_list(
        [torch.as_tensor(np.asarray(x).reshape(-1, 3)) for x in items], dtype=dtype
    )


clouds = st.lists(
    st.lists(st.tuples(*[st.floats(-10, 10, width=32)] * 3), min_size=0, max_size=9),
    min_size=1,
    max_size=5,
)


# ------------------------------------------------------------------------------- random


@given(st.integers(0, 2**32 - 1))
def test_mix32_is_murmur_finalizer(x):
    assert int(hrandom.mix32(torch.tensor(x))) == fmix32_reference(x)


@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_cpu_hash_shortcut_gives_the_bits_of_the_device_formula(seed, counters):
    """The CPU computes hash32 in numpy uint32; every other device in split int64 products."""
    seeds = torch.tensor([[seed]])
    c = torch.tensor([counters])
    keyed = hrandom.mix32((seeds ^ (9 * 0x9E3779B9 & hrandom.MASK32)) & hrandom.MASK32)
    device_formula = hrandom.mix32(keyed ^ hrandom.mix32(c))
    assert torch.equal(hrandom.hash32(seeds, 9, c), device_formula)
    assert torch.equal(hrandom.hash32(torch.tensor(seed), 9, c[0, 0]), device_formula[0, 0])


def test_sample_seeds_depend_on_seed_epoch_and_key_only():
    a = hl.batched.sample_seeds(["a/b", "c", 7], seed=1, epoch=2)
    assert torch.equal(a, hl.batched.sample_seeds(["a/b", "c", 7], seed=1, epoch=2))
    assert torch.equal(a[1:2], hl.batched.sample_seeds(["c"], seed=1, epoch=2))
    assert torch.equal(a[2:], hl.batched.sample_seeds(torch.tensor([7]), seed=1, epoch=2))
    assert not torch.equal(a, hl.batched.sample_seeds(["a/b", "c", 7], seed=1, epoch=3))
    assert not torch.equal(a, hl.batched.sample_seeds(["a/b", "c", 7], seed=2, epoch=2))
    assert len(set(hl.batched.sample_seeds(list(range(10000))).tolist())) == 10000
    with pytest.raises(TypeError, match="str or an int"):
        hl.batched.sample_seeds([1.5])


def test_uniforms_look_uniform():
    draws = hrandom.uniform(torch.tensor(3), 1, torch.arange(100_000))
    assert float(draws.min()) > 0 and float(draws.max()) < 1
    hist = torch.histc(draws.float(), bins=10, min=0, max=1)
    assert float((hist - 10_000).abs().max()) < 600  # ~6 sigma of a binomial(1e5, 0.1)


# ---------------------------------------------------------------- references, per sample


def ref_rotation(seed: int, axis):
    if axis is not None:
        angle = 2 * np.pi * u(seed, "rotation", 0)
        c, s = np.cos(angle), np.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        return r
    w, x, y, z = (q := np.array([n01(seed, "rotation", k) for k in range(4)])) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def ref_scale(p, seed, low, high, aniso):
    factors = [low + (high - low) * u(seed, "scale", k) for k in range(3 if aniso else 1)]
    return p * np.array(factors)


def ref_jitter(p, seed, sigma, clip):
    noise = np.array(
        [[n01(seed, "jitter", 3 * r + c) for c in range(3)] for r in range(len(p))]
    ).reshape(-1, 3)
    return p + np.clip(sigma * noise, -clip, clip)


def ref_flip(p, seed, axes, prob):
    signs = [(-1.0 if a in axes and u(seed, "flip", a) < prob else 1.0) for a in range(3)]
    return p * np.array(signs)


def ref_center(p, how):
    if not len(p):
        return p
    c = p.mean(0) if how == "mean" else (p.min(0) + p.max(0)) / 2
    return p - c


def ref_unit_sphere(p, how):
    q = ref_center(p, how)
    r = np.linalg.norm(q, axis=1).max() if len(q) else 0.0
    return q / r if r > 0 else q


def per_sample(items, seeds, fn):
    return [
        fn(np.asarray(x, dtype=np.float64).reshape(-1, 3), int(s)) for x, s in zip(items, seeds)
    ]


TRANSFORMS = {
    "rotation": (
        lambda r, s: hl.batched.random_rotation(r, s),
        lambda p, s: p @ ref_rotation(s, None).T,
    ),
    "rotation_z": (
        lambda r, s: hl.batched.random_rotation(r, s, axis="z"),
        lambda p, s: p @ ref_rotation(s, 2).T,
    ),
    "scale": (
        lambda r, s: hl.batched.random_scale(r, s, 0.5, 2.0),
        lambda p, s: ref_scale(p, s, 0.5, 2.0, False),
    ),
    "scale_aniso": (
        lambda r, s: hl.batched.random_scale(r, s, 0.5, 2.0, anisotropic=True),
        lambda p, s: ref_scale(p, s, 0.5, 2.0, True),
    ),
    "jitter": (
        lambda r, s: hl.batched.jitter(r, s, 0.5, 0.7),
        lambda p, s: ref_jitter(p, s, 0.5, 0.7),
    ),
    "flip": (
        lambda r, s: hl.batched.random_flip(r, s, axes=(0, 2), p=0.5),
        lambda p, s: ref_flip(p, s, (0, 2), 0.5),
    ),
    "center_mean": (lambda r, s: hl.batched.center(r), lambda p, s: ref_center(p, "mean")),
    "center_bbox": (lambda r, s: hl.batched.center(r, "bbox"), lambda p, s: ref_center(p, "bbox")),
    "unit_sphere": (
        lambda r, s: hl.batched.normalize_unit_sphere(r),
        lambda p, s: ref_unit_sphere(p, "mean"),
    ),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@settings(max_examples=25, deadline=None)
@given(items=clouds, keys=st.data())
def test_geometry_matches_per_sample_reference(name, items, keys):
    batched, reference = TRANSFORMS[name]
    ids = keys.draw(st.lists(st.integers(0, 2**40), min_size=len(items), max_size=len(items)))
    seeds = hl.batched.sample_seeds(ids, seed=3, epoch=1)
    out = batched(ragged(items, torch.float64), seeds)
    assert out.dtype == torch.float64 and torch.equal(out.offsets, ragged(items).offsets)
    for got, want in zip(out.unbind(), per_sample(items, seeds.tolist(), reference)):
        np.testing.assert_allclose(got.numpy(), want.reshape(-1, 3), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@settings(max_examples=20, deadline=None)
@given(items=clouds, data=st.data())
def test_geometry_is_the_same_in_any_batch(name, items, data):
    batched, _ = TRANSFORMS[name]
    keys = [f"s{i}" for i in range(len(items))]
    seeds = hl.batched.sample_seeds(keys, seed=0, epoch=0)
    alone = [batched(ragged([x]), seeds[i : i + 1]).values for i, x in enumerate(items)]
    order = data.draw(st.permutations(range(len(items))))
    others = data.draw(clouds)  # strangers sharing the batch
    mixed = [items[i] for i in order] + others
    mixed_seeds = torch.cat(
        [seeds[list(order)], hl.batched.sample_seeds([f"o{i}" for i in range(len(others))])]
    )
    out = batched(ragged(mixed), mixed_seeds).unbind()
    for pos, i in enumerate(order):
        torch.testing.assert_close(out[pos], alone[i], rtol=1e-6, atol=1e-6)


def test_float32_points_stay_float32():
    r = ragged([[[1, 2, 3], [4, 5, 6]]])
    out = hl.batched.random_rotation(r, hl.batched.sample_seeds([0]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.values.norm(dim=1), r.values.norm(dim=1))


def test_bad_inputs_are_named():
    r = ragged([[[1, 2, 3]]])
    with pytest.raises(ValueError, match="2 seeds for a batch of 1"):
        hl.batched.jitter(r, hl.batched.sample_seeds([0, 1]))
    with pytest.raises(ValueError, match=r"field 'values' must be \[sum N_i, 3\]"):
        hl.batched.center(hl.Ragged.from_list([torch.zeros(2, 2)]))
    with pytest.raises(ValueError, match="axis"):
        hl.batched.random_rotation(r, hl.batched.sample_seeds([0]), axis="w")
    with pytest.raises(ValueError, match="0 < low <= high"):
        hl.batched.random_scale(r, hl.batched.sample_seeds([0]), 2.0, 1.0)


# ------------------------------------------------------------------- surface sampling


def ref_surface(verts, faces, n, seed):
    """PyTorch3D's construction, one sample, the uniforms from the sample's own stream."""
    if len(faces) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    tri = verts[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    cum = np.cumsum(areas)
    points, normals = [], []
    for j in range(n):
        uf, r1, r2 = (u(seed, "surface", 3 * j + k) for k in range(3))
        if cum[-1] > 0:
            f = min(int(np.searchsorted(cum, uf * cum[-1], side="right")), len(faces) - 1)
        else:
            f = min(int(uf * len(faces)), len(faces) - 1)
        a, b, c = tri[f]
        s = np.sqrt(r1)
        points.append((1 - s) * a + s * (1 - r2) * b + s * r2 * c)
        length = np.linalg.norm(cross[f])
        normals.append(cross[f] / length if length > 0 else np.zeros(3))
    return np.array(points), np.array(normals)


@st.composite
def meshes(draw):
    out = []
    for _ in range(draw(st.integers(1, 4))):
        nv = draw(st.integers(0, 6))
        verts = draw(st.lists(st.tuples(*[st.integers(-5, 5)] * 3), min_size=nv, max_size=nv))
        nf = draw(st.integers(0, 5)) if nv else 0
        faces = (
            draw(st.lists(st.tuples(*[st.integers(0, nv - 1)] * 3), min_size=nf, max_size=nf))
            if nv
            else []
        )
        out.append(
            {
                "verts": np.array(verts, np.float32).reshape(-1, 3),
                "faces": np.array(faces, np.int64).reshape(-1, 3),
            }
        )
    return out


@settings(max_examples=40, deadline=None)
@given(samples=meshes(), n=st.integers(0, 7), data=st.data())
def test_surface_sampling_matches_reference_in_any_batch(samples, n, data):
    keys = [f"m{i}" for i in range(len(samples))]
    order = data.draw(st.permutations(range(len(samples))))
    batch = hl.collate([dict(samples[i], key=keys[i]) for i in order])
    seeds = hl.batched.sample_seeds(batch["key"])
    points, normals = hl.batched.sample_surface(
        batch.verts, batch.faces, n, seeds, with_normals=True
    )
    for pos, i in enumerate(order):
        want_p, want_n = ref_surface(
            samples[i]["verts"].astype(np.float64), samples[i]["faces"], n, int(seeds[pos])
        )
        np.testing.assert_allclose(points[pos].numpy(), want_p.reshape(-1, 3), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            normals[pos].numpy(), want_n.reshape(-1, 3), rtol=1e-5, atol=1e-5
        )


def test_surface_points_follow_the_areas():
    # one big triangle (area 50) and one small (area 0.5): about 99% of the points on the big
    verts = np.array(
        [[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 5], [1, 0, 5], [0, 1, 5]], np.float32
    )
    batch = hl.collate([{"verts": verts, "faces": np.array([[0, 1, 2], [3, 4, 5]])}])
    points = hl.batched.sample_surface(
        batch.verts, batch.faces, 20_000, hl.batched.sample_seeds([1])
    )
    on_big = float((points.values[:, 2] == 0).double().mean())
    assert abs(on_big - 50 / 50.5) < 0.005


# ----------------------------------------------------------------------------------- FPS


def ref_fps(p, n, start):
    p = p.astype(np.float64)
    k = min(n, len(p))
    if k == 0:
        return []
    chosen = [start]
    dist = np.full(len(p), np.inf)
    for _ in range(k - 1):
        diff = p - p[chosen[-1]]
        dist = np.minimum(dist, (diff**2).sum(1))
        chosen.append(int(np.argmax(dist)))
    return chosen


@contextmanager
def fps_served_by(path: str):
    """Within the block, ``path`` serves FPS on the CPU: the compiled kernel, or the pure-torch
    implementation registered over it (the dispatcher restores the kernel afterwards)."""
    compiled = hl.ops.library.has_kernel("farthest_point_sample", "CPU")
    if path == "compiled" and not compiled:
        pytest.skip(f"compiled kernels not loaded: {hl.ops.extension_status()}")
    if path == "compiled" or not compiled:
        yield
        return
    lib = torch.library.Library("hetload", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        lib.impl("farthest_point_sample", sampling_impl.farthest_point_sample, "CPU")
    try:
        yield
    finally:
        lib._destroy()


@settings(max_examples=40, deadline=None)
@given(items=clouds, n=st.integers(0, 6), data=st.data())
def test_fps_matches_reference_in_any_batch(items, n, data):
    # integer coordinates make ties common: the tie rule (first farthest row) is exercised
    items = [np.round(np.asarray(x, np.float64).reshape(-1, 3)) for x in items]
    order = data.draw(st.permutations(range(len(items))))
    keys = [f"p{i}" for i in order]
    seeds = hl.batched.sample_seeds(keys)
    r = ragged([items[i] for i in order])
    for path, random_start in itertools.product(("compiled", "torch"), (False, True)):
        if path == "compiled" and not hl.ops.library.has_kernel("farthest_point_sample", "CPU"):
            continue
        with fps_served_by(path):
            idx = hl.batched.farthest_point_sampling(r, n, seeds, random_start=random_start)
        local = idx.unbind(local=True)
        for pos, i in enumerate(order):
            length = len(items[i])
            start = 0
            if random_start and length:
                start = min(int(u(int(seeds[pos]), "fps", 0) * length), length - 1)
            assert local[pos].tolist() == ref_fps(items[i].astype(np.float32), n, start)


def test_fps_compiled_and_torch_agree_on_a_large_batch():
    if not hl.ops.library.has_kernel("farthest_point_sample", "CPU"):
        pytest.skip("compiled kernels not loaded")
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 300, (12,), generator=gen)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    points = torch.randn(int(offsets[-1]), 3, generator=gen)
    counts = lengths.clamp(max=64)
    out_offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    start = (lengths // 3).clamp(min=0)
    args = (points, offsets, out_offsets, start, int(out_offsets[-1]))
    assert torch.equal(
        torch.ops.hetload.farthest_point_sample(*args), sampling_impl.farthest_point_sample(*args)
    )
    torch.library.opcheck(torch.ops.hetload.farthest_point_sample.default, args)


def test_fps_kernel_refuses_bad_arguments():
    if not hl.ops.library.has_kernel("farthest_point_sample", "CPU"):
        pytest.skip("compiled kernels not loaded")
    points = torch.zeros(3, 3)
    offsets = torch.tensor([0, 3])
    with pytest.raises(RuntimeError, match="asks for 4"):
        torch.ops.hetload.farthest_point_sample(
            points, offsets, torch.tensor([0, 4]), torch.tensor([0]), 4
        )
    with pytest.raises(RuntimeError, match="starts at 5"):
        torch.ops.hetload.farthest_point_sample(
            points, offsets, torch.tensor([0, 2]), torch.tensor([5]), 2
        )


# ---------------------------------------------------------------------- grid sampling


def ref_fnv(grid: np.ndarray) -> np.ndarray:
    h = np.full(len(grid), np.uint64(14695981039346656037))
    for j in range(grid.shape[1]):
        h = h * np.uint64(1099511628211)
        h = h ^ grid[:, j].astype(np.uint64)
    return h


def ref_grid_sample(p, grid_size, seed, mode):
    """Pointcept's GridSample, one sample: keys sorted (stable), one point per key."""
    if not len(p):
        return [], np.zeros((0, 3), np.int64), []
    grid = np.floor(p.astype(np.float64) / grid_size).astype(np.int64)
    grid -= grid.min(0)
    key = ref_fnv(grid)
    idx_sort = np.argsort(key, kind="stable")
    _, inverse, count = np.unique(key[idx_sort], return_inverse=True, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(count)[:-1]])
    if mode == "train":
        draws = np.array(
            [
                int(hrandom.hash32(torch.tensor(seed), STREAM["grid"], torch.tensor(j)))
                for j in range(len(count))
            ],
            dtype=np.int64,
        )
        select = starts + draws % count
    else:
        select = starts
    kept = idx_sort[select]
    inv = np.zeros(len(p), np.int64)
    inv[idx_sort] = inverse
    return kept.tolist(), grid[kept], inv.tolist()


@settings(max_examples=40, deadline=None)
@given(items=clouds, grid_size=st.sampled_from([0.5, 1.0, 3.0]), data=st.data())
def test_grid_sample_matches_pointcept_reference_in_any_batch(items, grid_size, data):
    items = [np.asarray(x, np.float32).reshape(-1, 3) for x in items]
    order = data.draw(st.permutations(range(len(items))))
    seeds = hl.batched.sample_seeds([f"g{i}" for i in order])
    r = ragged([items[i] for i in order])
    for mode in ("train", "first"):
        out = hl.batched.grid_sample(r, grid_size, seeds, mode=mode)
        kept = out.index.unbind(local=True)
        coords = out.grid_coord.unbind()
        inverse = [out.inverse[a:b] for a, b in zip(r.offsets[:-1], r.offsets[1:])]
        for pos, i in enumerate(order):
            want_kept, want_coord, want_inv = ref_grid_sample(
                items[i], grid_size, int(seeds[pos]), mode
            )
            assert kept[pos].tolist() == want_kept
            np.testing.assert_array_equal(coords[pos].numpy(), want_coord.reshape(-1, 3))
            assert inverse[pos].tolist() == want_inv


def test_fnv_matches_uint64_reference_on_large_coordinates():
    grid = np.random.default_rng(0).integers(0, 2**31, size=(2000, 3))
    want = ref_fnv(grid).view(np.int64)
    for fn in (hl.batched.grid.fnv_hash, hl.batched.grid.fnv_hash_split):
        np.testing.assert_array_equal(fn(torch.from_numpy(grid)).numpy(), want)


# ---------------------------------------------------------------------- serialization


def ref_z(x, y, z, depth):
    code = 0
    for i in range(depth):
        code |= (
            ((x >> i) & 1) << (3 * i + 2)
            | ((y >> i) & 1) << (3 * i + 1)
            | ((z >> i) & 1) << (3 * i)
        )
    return code


def ref_hilbert(coords, depth):
    """Skilling's AxestoTranspose on one point, then the transposed bits interleaved."""
    x = list(coords)
    m = 1 << (depth - 1)
    q = m
    while q > 1:
        p = q - 1
        for i in range(3):
            if x[i] & q:
                x[0] ^= p
            else:
                t = (x[0] ^ x[i]) & p
                x[0] ^= t
                x[i] ^= t
        q >>= 1
    for i in range(1, 3):
        x[i] ^= x[i - 1]
    t = 0
    q = m
    while q > 1:
        if x[2] & q:
            t ^= q - 1
        q >>= 1
    x = [v ^ t for v in x]
    code = 0
    for b in range(depth - 1, -1, -1):
        for i in range(3):
            code = (code << 1) | ((x[i] >> b) & 1)
    return code


def test_hilbert_reference_is_a_hilbert_curve():
    # consecutive indices are neighbouring cells (one step along one axis), every cell once
    depth = 3
    cells = sorted((ref_hilbert(c, depth), c) for c in np.ndindex(8, 8, 8))
    assert [h for h, _ in cells] == list(range(512))
    for (_, a), (_, b) in itertools.pairwise(cells):
        assert sum(abs(i - j) for i, j in zip(a, b)) == 1


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.tuples(*[st.integers(0, 63)] * 3), max_size=8), min_size=1, max_size=4),
    st.sampled_from(["z", "z-trans", "hilbert", "hilbert-trans"]),
)
def test_serialize_matches_reference(items, order):
    grid = hl.Ragged.from_list([torch.tensor(x, dtype=torch.int64).reshape(-1, 3) for x in items])
    out = hl.batched.serialize(grid, order, depth=6)
    codes = []
    for b, pts in enumerate(items):
        for x, y, z in pts:
            if order.endswith("-trans"):
                x, y = y, x
            curve = ref_z(x, y, z, 6) if order.startswith("z") else ref_hilbert((x, y, z), 6)
            codes.append(b << 18 | curve)
    assert out.code[0].tolist() == codes
    assert out.order[0].tolist() == sorted(range(len(codes)), key=lambda i: (codes[i], i))
    assert torch.equal(out.order[0][out.inverse[0]], torch.arange(len(codes)))


def test_serialize_adaptive_depth_and_limits():
    grid = hl.Ragged.from_list([torch.tensor([[0, 5, 2]]), torch.tensor([[9, 1, 1]])])
    assert hl.batched.serialize(grid, ("z", "hilbert")).depth == 4  # bit length of 9 + 1
    with pytest.raises(ValueError, match="non-negative"):
        hl.batched.serialize(hl.Ragged.from_list([torch.tensor([[-1, 0, 0]])]))
    with pytest.raises(ValueError, match="does not fit"):
        hl.batched.serialize(grid, depth=3)
    with pytest.raises(ValueError, match="order must be one of"):
        hl.batched.serialize(grid, "peano")
