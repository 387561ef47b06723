"""hetload.transforms: geometry against numpy references, seeding, pickling, config build."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hetload as hl
from hetload import transforms as T


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def square(n_extra: int = 0) -> dict:
    """Unit square in z=0 (two triangles), plus per-vertex intensity and a label."""
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
    return {
        "verts": verts,
        "faces": np.array([[0, 1, 2], [0, 2, 3]]),
        "intensity": np.arange(4, dtype=np.float32),
        "label": 7,
    }


clouds = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 40), st.just(3)),
    elements=st.floats(-100, 100, width=32),
)


@given(clouds)
def test_center_and_normalize_match_numpy(verts):
    centered = T.Center()({"verts": verts})["verts"]
    np.testing.assert_allclose(centered, verts - verts.astype(np.float64).mean(0), atol=1e-3)
    unit = T.NormalizeUnitSphere()({"verts": verts})["verts"]
    v = verts.astype(np.float64) - verts.astype(np.float64).mean(0)
    radius = np.sqrt((v**2).sum(1).max())
    np.testing.assert_allclose(unit, v / radius if radius > 0 else v, atol=1e-5)
    assert unit.dtype == np.float32


def test_center_bbox():
    out = T.Center("bbox")({"verts": np.float32([[0, 0, 0], [2, 4, 6], [1, 1, 1]])})
    np.testing.assert_array_equal(out["verts"], [[-1, -2, -3], [1, 2, 3], [0, -1, -2]])


@given(clouds, st.integers(0, 2**32 - 1), st.sampled_from([None, 0, 1, 2]))
def test_rotation_keeps_distances_and_the_axis(verts, seed, axis):
    normals = np.tile(np.float32([0, 0, 1]), (len(verts), 1))
    out = T.RandomRotation(axis)({"verts": verts, "normals": normals}, rng(seed))
    v = verts.astype(np.float64)
    d_in = np.linalg.norm(v[:, None] - v[None], axis=-1)
    d_out = np.linalg.norm(out["verts"].astype(np.float64)[:, None] - out["verts"][None], axis=-1)
    np.testing.assert_allclose(d_out, d_in, atol=1e-3 + 1e-5 * np.abs(d_in).max())
    np.testing.assert_allclose(np.linalg.norm(out["normals"], axis=1), 1, atol=1e-5)
    if axis is not None:
        np.testing.assert_allclose(out["verts"][:, axis], verts[:, axis], atol=1e-3)


def test_rotation_is_a_proper_rotation():
    r = np.stack(
        [
            T.RandomRotation()({"verts": np.eye(3, dtype=np.float64)}, rng(s))["verts"].T
            for s in range(20)
        ]
    )
    np.testing.assert_allclose(
        r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(r), 1, atol=1e-12)


def test_scale_and_anisotropic_normals():
    sample = {"verts": np.float32([[1, 1, 1]]), "normals": np.float32([[1, 0, 0]])}
    out = T.RandomScale(2, 2)(sample, rng())
    np.testing.assert_array_equal(out["verts"], [[2, 2, 2]])
    np.testing.assert_array_equal(out["normals"], [[1, 0, 0]])
    out = T.RandomScale(0.5, 3, anisotropic=True)(sample, rng(1))
    np.testing.assert_allclose(np.linalg.norm(out["normals"], axis=1), 1, rtol=1e-6)
    with pytest.raises(ValueError):
        T.RandomScale(0, 1)


def test_jitter_is_clipped():
    verts = np.zeros((1000, 3), dtype=np.float32)
    out = T.Jitter(sigma=1.0, clip=0.05)({"verts": verts}, rng())["verts"]
    assert np.abs(out).max() <= 0.05 + 1e-7 and np.abs(out).max() > 0.04


def test_same_generator_same_output_and_inputs_untouched():
    pipeline = T.Compose([T.RandomRotation(), T.RandomScale(), T.Jitter(), T.Subsample(3)])
    sample = square()
    before = {k: np.copy(v) for k, v in sample.items()}
    a = pipeline(sample, T.sample_rng(0, 1, 5))
    b = pipeline(sample, T.sample_rng(0, 1, 5))
    c = pipeline(sample, T.sample_rng(0, 2, 5))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["verts"], c["verts"])
    for k, v in before.items():
        np.testing.assert_array_equal(sample[k], v)


def test_seeded_context_reaches_calls_without_a_generator():
    jitter = T.Jitter()
    with T.seeded(T.sample_rng(1, 0, 0)):
        a = jitter(square())["verts"]
    with T.seeded(T.sample_rng(1, 0, 0)):
        b = jitter(square())["verts"]
    np.testing.assert_array_equal(a, b)


def test_pickled_pipeline_gives_the_same_samples():
    pipeline = T.build(["NormalizeUnitSphere", {"RandomRotation": {"axis": "z"}}, "Jitter"])
    back = pickle.loads(pickle.dumps(pipeline))
    np.testing.assert_array_equal(
        back(square(), rng(3))["verts"], pipeline(square(), rng(3))["verts"]
    )
    assert "RandomRotation(axis=2)" in repr(back)


def test_sample_points_lie_on_the_surface_and_follow_area():
    # triangle 0 has area 0.5, triangle 1 area 1.5: a quarter of the points land on the first
    verts = np.float32([[0, 0, 0], [1, 0, 0], [0, 1, 0], [4, 0, 0], [0, 1, 0]])
    faces = np.array([[0, 1, 2], [1, 3, 4]])
    out = T.SamplePoints(20000)({"verts": verts, "faces": faces, "label": 3}, rng())
    pts = out["verts"]
    assert pts.shape == (20000, 3) and pts.dtype == np.float32
    assert set(out) == {"verts", "normals", "label"} and out["label"] == 3
    np.testing.assert_array_equal(pts[:, 2], 0)
    np.testing.assert_allclose(out["normals"], np.tile([0, 0, 1], (20000, 1)), atol=1e-6)
    in_first = pts[:, 0] + pts[:, 1] <= 1 + 1e-6
    assert abs(in_first.mean() - 0.25) < 0.015
    # inside the triangles: above y=0, right of x=0, below the line x + 4y = 4
    assert (pts[:, 1] >= -1e-6).all() and (pts[:, 0] >= -1e-6).all()
    assert (pts[:, 0] + 4 * pts[:, 1] <= 4 + 1e-4).all()


def test_sample_points_needs_faces():
    with pytest.raises(ValueError, match="faces"):
        T.SamplePoints(10)({"verts": np.zeros((3, 3), np.float32)}, rng())
    flat = {"verts": np.zeros((3, 3), np.float32), "faces": np.array([[0, 1, 2]])}
    with pytest.raises(ValueError, match="area"):
        T.SamplePoints(10)(flat, rng())


@given(st.integers(4, 60), st.integers(1, 70), st.integers(0, 2**32 - 1))
def test_subsample_keeps_rows_and_remaps_faces(n, keep, seed):
    verts = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
    faces = np.array([[i, (i + 1) % n, (i + 2) % n] for i in range(n)])
    sample = {"verts": verts, "faces": faces, "intensity": np.arange(n, dtype=np.float32)}
    out = T.Subsample(keep)(sample, rng(seed))
    kept = out["intensity"].astype(int)
    assert len(kept) == min(n, keep) and (np.diff(kept) > 0).all()
    np.testing.assert_array_equal(out["verts"], verts[kept])
    survivors = [f for f in faces.tolist() if all(i in set(kept.tolist()) for i in f)]
    np.testing.assert_array_equal(
        kept[out["faces"]].reshape(-1, 3), np.array(survivors).reshape(-1, 3)
    )


def test_sphere_crop_keeps_the_nearest():
    verts = np.float32([[0, 0, 0], [10, 0, 0], [1, 0, 0], [0, 2, 0], [5, 5, 5]])
    out = T.SphereCrop(3, center="mean")({"verts": verts}, rng())
    mid = verts.astype(np.float64).mean(0)
    nearest = np.sort(np.argsort(((verts - mid) ** 2).sum(1))[:3])
    np.testing.assert_array_equal(out["verts"], verts[nearest])
    out = T.SphereCrop(2)({"verts": verts}, rng(1))
    assert len(out["verts"]) == 2


def test_per_corner_fields_are_not_treated_as_per_vertex():
    sample = square()
    sample["uvs"] = np.zeros((4, 2), np.float32)  # per corner: indexed by faces_uvs
    sample["faces_uvs"] = np.array([[0, 1, 2], [3, 2, 1]])
    out = T.Subsample(3)(sample, rng())
    assert out["uvs"].shape == (4, 2)
    assert len(out["faces_uvs"]) == len(out["faces"])


def test_to_dtype():
    out = T.ToDtype({"faces": "int32"}, floating="float16")(square())
    assert out["verts"].dtype == np.float16 and out["intensity"].dtype == np.float16
    assert out["faces"].dtype == np.int32


def test_build_errors():
    with pytest.raises(KeyError, match="known: Center"):
        T.build(["Nope"])
    with pytest.raises(TypeError):
        T.build([{"Jitter": {"wrong": 1}}])
    with pytest.raises(ValueError):
        T.build([{"RandomRotation": {"axis": "w"}}])


def test_none_passes_through():
    assert T.Compose([T.Jitter()])(None) is None


@given(st.lists(clouds, min_size=1, max_size=4), st.integers(0, 100))
def test_transformed_samples_collate(batch, seed):
    pipeline = T.Compose([T.NormalizeUnitSphere(), T.RandomRotation(), T.Subsample(16)])
    samples = [pipeline({"verts": v}, T.sample_rng(seed, 0, i)) for i, v in enumerate(batch)]
    out = hl.collate(samples)
    for i, s in enumerate(samples):
        np.testing.assert_array_equal(out.verts[i].numpy(), s["verts"])
