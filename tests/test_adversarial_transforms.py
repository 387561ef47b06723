"""An adversarial pass over the transforms: chains of every transform over samples holding
every kind of related field (faces, lines, point indices, OBJ uv / normal tables with their
per-corner indices and -1 corners, per-point labels, per-face values, per-sample values), empty,
1-point and all-duplicate clouds, float16 / float64 and huge or tiny coordinates; seeds against
worker count and batch composition.

The reference is written here: every vertex carries its original row number in ``labels`` and
every face its original face number in ``face_colors``, so that after any chain each output
face can be checked against the input face it came from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import hetload as hl
from hetload.data import MeshFolder
from hetload.rows import check_aligned, select_rows
from hetload.samplers import BucketBatchSampler
from hetload.transforms import (
    Center,
    Compose,
    Jitter,
    NormalizeUnitSphere,
    RandomRotation,
    RandomScale,
    SamplePoints,
    SphereCrop,
    Subsample,
    ToDtype,
)

STEPS = {
    "Center": lambda: Center("bbox"),
    "NormalizeUnitSphere": NormalizeUnitSphere,
    "RandomRotation": RandomRotation,
    "RandomScale": lambda: RandomScale(0.5, 2.0, anisotropic=True),
    "Jitter": lambda: Jitter(0.01, 0.02),
    "Subsample": lambda: Subsample(5),
    "SubsampleFaces": lambda: Subsample(3, field="faces"),
    "SphereCrop": lambda: SphereCrop(4),
    "SphereCropMean": lambda: SphereCrop(6, center="mean"),
    "ToDtype": lambda: ToDtype({"faces": "int32", "labels": "int32"}),
}


@st.composite
def meshes(draw):
    """A sample with every kind of field; ``labels`` = original vertex row, ``face_colors`` =
    original face row, ``remission`` = a per-point value."""
    n = draw(st.integers(0, 12))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    dup = draw(st.booleans())  # all-duplicate points
    coords = draw(st.lists(st.integers(-1000, 1000), min_size=3 * n, max_size=3 * n))
    verts = np.array(coords, dtype=np.float64).reshape(n, 3) / 8
    if dup and n:
        verts[:] = verts[0]
    sample = {
        "verts": verts.astype(dtype),
        "labels": np.arange(n, dtype=np.int64),
        "remission": np.arange(n, dtype=np.float32) / 2,
        "label": 3,
        "key": "k",
    }
    n_faces = draw(st.integers(0, 10)) if n else 0
    faces = draw(
        st.lists(st.lists(st.integers(0, max(n - 1, 0)), min_size=3, max_size=3), min_size=n_faces,
                 max_size=n_faces)
    )  # fmt: skip
    sample["faces"] = np.array(faces, dtype=np.int64).reshape(n_faces, 3)
    sample["face_colors"] = np.arange(n_faces, dtype=np.int64)
    n_uv = draw(st.integers(1, 5))
    sample["uvs"] = np.arange(2 * n_uv, dtype=np.float32).reshape(n_uv, 2)
    corners = st.lists(st.integers(-1, n_uv - 1), min_size=3, max_size=3)
    rows = draw(st.lists(corners, min_size=n_faces, max_size=n_faces))
    sample["faces_uvs"] = np.array(rows, dtype=np.int64).reshape(n_faces, 3)
    sample["normals"] = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]  # an OBJ vn table of 4
    rows = draw(st.lists(st.lists(st.integers(0, 3), min_size=3, max_size=3), min_size=n_faces,
                         max_size=n_faces))  # fmt: skip
    sample["faces_normals"] = np.array(rows, dtype=np.int64).reshape(n_faces, 3)
    if n:
        n_lines = draw(st.integers(0, 4))
        pairs = st.lists(st.integers(0, n - 1), min_size=2, max_size=2)
        lines = draw(st.lists(pairs, min_size=n_lines, max_size=n_lines))
        sample["lines"] = np.array(lines, dtype=np.int64).reshape(n_lines, 2)
        sample["point_indices"] = np.array(draw(st.lists(st.integers(0, n - 1), max_size=4)),
                                           dtype=np.int64)  # fmt: skip
    return sample


def check_consistent(before: dict, after: dict) -> None:
    """``after`` is ``before`` with some rows dropped or moved, every relation intact."""
    orig = after["labels"].astype(np.int64)  # original vertex row of each output vertex
    n = len(after["verts"])
    assert len(orig) == n == len(after["remission"])
    assert len(np.unique(orig)) == n and set(orig) <= set(range(len(before["verts"])))
    np.testing.assert_array_equal(after["remission"], before["remission"][orig])
    assert after["verts"].dtype == before["verts"].dtype
    assert np.isfinite(after["verts"]).all()
    face_ids = after["face_colors"]
    for name in ("faces", "faces_uvs", "faces_normals"):
        assert len(after[name]) == len(face_ids)
    # each output face is the input face it came from, renumbered
    faces = after["faces"].astype(np.int64)
    assert faces.size == 0 or (faces.min() >= 0 and faces.max() < n)
    np.testing.assert_array_equal(orig[faces], before["faces"][face_ids])
    # the tables are not selected with the vertices: their indices (and -1 corners) are as read
    np.testing.assert_array_equal(after["faces_uvs"], before["faces_uvs"][face_ids])
    np.testing.assert_array_equal(after["faces_normals"], before["faces_normals"][face_ids])
    assert len(after["uvs"]) == len(before["uvs"]) and len(after["normals"]) == 4
    if "lines" in before:
        kept = {tuple(r) for r in before["lines"].tolist()}
        assert {tuple(orig[r]) for r in after["lines"].tolist()} <= kept
        gone = set(range(len(before["verts"]))) - set(orig.tolist())
        lost = [r for r in before["lines"].tolist() if not gone & set(r)]
        assert len(after["lines"]) == len(lost)  # every line whose ends remain is kept
        assert set(orig[after["point_indices"]].tolist()) <= set(before["point_indices"].tolist())
    assert after["label"] == 3 and after["key"] == "k"


@given(meshes(), st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=4), st.integers())
def test_every_chain_keeps_every_relation(sample, names, seed):
    chain = Compose([STEPS[name]() for name in names])
    out = chain(sample, np.random.default_rng(seed % 2**32))
    check_consistent(sample, out)
    check_aligned(sample, out, "chain")  # what MeshFolder checks: no false alarm
    if len(out["verts"]):
        with pytest.raises(ValueError, match="'labels' has"):
            check_aligned(sample, {**out, "labels": out["labels"][1:]}, "chain")
    # the same generator, the same result (no hidden global state)
    again = chain(sample, np.random.default_rng(seed % 2**32))
    for name, value in out.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(again[name]))


@given(
    st.sampled_from([np.float16, np.float32, np.float64]),
    st.floats(0.5, 1.0),
    st.sampled_from(["Center", "RandomRotation", "RandomScale", "Jitter"]),
)
def test_near_the_dtype_limit_a_transform_refuses_rather_than_returns_inf(dtype, frac, name):
    """float16 60000 scaled by 1.25 was ``inf`` in the batch, silently."""
    top = float(np.finfo(dtype).max) * frac
    verts = np.array([[top, -top, top], [-top, top, 0.0]], dtype=np.float64).astype(dtype)
    step = {
        "Center": lambda: Center("mean"),
        "RandomRotation": RandomRotation,
        "RandomScale": lambda: RandomScale(1.9, 2.0),
        "Jitter": lambda: Jitter(sigma=float(np.finfo(dtype).max) / 4, clip=float("inf")),
    }[name]()
    try:
        out = step({"verts": verts}, np.random.default_rng(0))
    except ValueError as exc:
        assert f"{name}: verts row" in str(exc) and "beyond" in str(exc)
    else:
        assert out["verts"].dtype == dtype and np.isfinite(out["verts"]).all()


@given(st.integers(-300, 300), st.integers(0, 6), st.sampled_from([np.float32, np.float64]))
def test_normalize_unit_sphere_at_any_scale(exponent, n, dtype):
    """1e200 squared is inf (every vertex became 0), 1e-200 squared is 0 (nothing scaled)."""
    if dtype == np.float32:
        exponent = max(-37, min(exponent, 37))
    rng = np.random.default_rng(n)
    verts = (rng.uniform(-1, 1, (n + 2, 3)) * 10.0**exponent).astype(dtype)
    if not np.abs(verts).max() > 0 or np.unique(verts, axis=0).shape[0] < 2:
        return
    out = NormalizeUnitSphere()({"verts": verts})["verts"].astype(np.float64)
    radius = np.sqrt((out * out).sum(1)).max()
    assert abs(radius - 1) < 1e-5
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)


@pytest.mark.parametrize("n", [0, 1, 4])
def test_degenerate_clouds_through_every_transform(n):
    verts = np.zeros((n, 3), np.float32)  # empty, one point, all duplicates
    faces = np.zeros((max(n - 2, 0), 3), np.int64)
    sample = {"verts": verts, "labels": np.arange(n), "faces": faces, "label": 1}
    for name, make in STEPS.items():
        out = make()(sample, np.random.default_rng(0))
        assert len(out["labels"]) == len(out["verts"]) <= max(n, 0), name
        assert np.isfinite(out["verts"]).all(), name
    with pytest.raises(ValueError, match="SamplePoints"):
        SamplePoints(8)(sample, np.random.default_rng(0))


def test_a_misaligned_per_point_field_is_refused_not_kept():
    """A 7-row label array beside 10 points came through Subsample unchanged: its rows no
    longer matched any point. Tables some index field may point into (OBJ vn / vt) stay."""
    sample = {"verts": np.zeros((10, 3), np.float32), "labels": np.arange(7)}
    with pytest.raises(ValueError, match=r"'labels' has 7 rows but 'verts'.*has 10"):
        Subsample(5)(sample, np.random.default_rng(0))
    table = {"verts": np.zeros((10, 3), np.float32), "normals": np.zeros((6, 3), np.float32)}
    assert len(Subsample(5)(table, np.random.default_rng(0))["normals"]) == 6


def test_selecting_uvs_keeps_minus_one_corners():
    """An OBJ corner without a uv holds -1; selecting the uv table refused the sample."""
    sample = {
        "verts": np.zeros((3, 3), np.float32),
        "faces": np.array([[0, 1, 2], [0, 1, 2]]),
        "uvs": np.arange(8, dtype=np.float32).reshape(4, 2),
        "faces_uvs": np.array([[0, 3, -1], [1, 2, 2]]),
    }
    out = select_rows(sample, "uvs", [3, 0])
    np.testing.assert_array_equal(out["faces_uvs"], [[1, 0, -1]])
    np.testing.assert_array_equal(out["faces"], [[0, 1, 2]])
    with pytest.raises(ValueError, match="'faces' holds index -1"):
        select_rows({**sample, "faces": np.array([[0, 1, -1], [0, 1, 2]])}, "verts", [0, 1])


def test_a_plain_callable_in_a_chain_draws_from_the_sample_generator():
    """A lambda calling a transform inside Compose drew from OS entropy when the chain was
    given its generator directly: the same sample came out differently every time."""
    chain = Compose([lambda s: Jitter(0.1, 1.0)(s), RandomRotation()])
    sample = {"verts": np.ones((5, 3), np.float32)}
    a = chain(sample, np.random.default_rng(7))["verts"]
    b = chain(sample, np.random.default_rng(7))["verts"]
    np.testing.assert_array_equal(a, b)


def test_a_sample_does_not_depend_on_workers_or_batches(tmp_path):
    for i in range(8):
        n = 6 + 3 * i
        lines = [f"v {k} {k % 3} {k % 5}" for k in range(n)]
        lines += [f"f 1 {k + 2} {k + 3}" for k in range(n - 2)]
        (tmp_path / f"m{i}.obj").write_text("\n".join(lines) + "\n")
    chain = Compose([RandomRotation(), Jitter(), SphereCrop(9), Subsample(7)])
    ds = MeshFolder(tmp_path, transform=chain, seed=3, index=None)
    ds.set_epoch(2)

    def by_key(workers: int, max_tokens: int, seed: int) -> dict:
        sampler = BucketBatchSampler(ds.sizes, max_tokens=max_tokens, seed=seed)
        loader = DataLoader(
            ds,
            batch_sampler=sampler,
            collate_fn=hl.collate,
            num_workers=workers,
            multiprocessing_context="fork" if workers else None,
        )
        out = {}
        for batch in loader:
            for j in range(batch.batch_size):
                item = batch.sample(j)  # local numbering
                out[item["key"]] = (item["verts"].clone(), item["faces"].clone())
        return out

    one = by_key(0, 7, 0)
    other = by_key(2, 30, 5)  # other workers, other batches, other batch order
    assert sorted(one) == sorted(other) == [f"m{i}" for i in range(8)]
    for key, (verts, faces) in one.items():
        assert torch.equal(verts, other[key][0]) and torch.equal(faces, other[key][1]), key


class _Claims:
    """A callable with a custom ``out_size`` returning ``claim``."""

    def __init__(self, claim):
        self.claim = claim

    def __call__(self, sample):
        return sample

    def out_size(self, n, field="verts"):
        return self.claim(n)


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        (lambda n: 1024, r"one count per sample \(3,\), got \(\)"),
        (lambda n: [5, 6], r"one count per sample \(3,\), got \(2,\)"),
        (lambda n: n * 0.5 + 0.1, "whole numbers of rows"),
        (lambda n: n - 100, "negative row count"),
        (lambda n: ["a"] * len(n), "whole numbers of rows"),
    ],
)
def test_an_out_size_that_cannot_be_true_is_refused(claim, message):
    """A scalar, a float or a list of another length from ``out_size`` sized every sample
    wrongly (1024.7 -> 1024; a scalar broke the sampler far from the cause)."""
    from hetload.transforms import out_sizes

    with pytest.raises(ValueError, match=message):
        out_sizes(_Claims(claim), np.array([3, 4, 5]))
    assert out_sizes(_Claims(lambda n: n * 2.0), np.array([3, 4])).tolist() == [6, 8]


@pytest.mark.parametrize(
    ("colors", "message"),
    [
        (np.array([[255.0, 0, 0]], np.float32), r"outside \[0, 1\] \(0\.\.255\)"),
        (np.array([[-0.5, 0, 0]], np.float64), "outside"),
        (np.array([[-3, 0, 0]], np.int8), "negative colors"),
    ],
)
def test_normalize_colors_refuses_what_it_cannot_put_in_0_1(colors, message):
    """Float 0..255 colors passed through beside uint8 ones divided to 0..1: one batch, two
    scales, silently."""
    from hetload.transforms import NormalizeColors

    with pytest.raises(ValueError, match=f"NormalizeColors: field 'colors' .*{message}"):
        NormalizeColors()({"colors": colors})
    nan = np.array([[np.nan, 0.5, 1.0]], np.float32)  # kept: allow_nonfinite's choice
    assert np.isnan(NormalizeColors()({"colors": nan})["colors"][0, 0])


@pytest.mark.parametrize("spec", [{"SamplePoints": 1024}, {"SamplePoints": [1024]}])
def test_a_transform_entry_without_an_argument_mapping_is_named(spec):
    """``- SamplePoints: 1024`` in a config raised ``'int' object is not iterable``."""
    from hetload.transforms import build

    with pytest.raises(TypeError, match=r"a transform is 'Name' or \{Name: \{arg: value\}\}, got"):
        build([spec])


def test_a_transform_that_crops_points_but_not_their_labels_is_refused(tmp_path):
    """A user's crop ``{**s, "verts": s["verts"][:2]}`` left ``vertex_label`` (and colors) at
    every point; collate batched them, each label on another point."""
    header = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
    header += "property float z\nproperty int label\nend_header\n"
    (tmp_path / "a.ply").write_text(header + "".join(f"{i} 0 0 {i}\n" for i in range(4)))
    crop = lambda s: {**s, "verts": s["verts"][:2]}  # noqa: E731
    ds = MeshFolder(tmp_path, transform=crop, on_error="skip", index=None)
    with pytest.raises(ValueError, match=r"'vertex_label' has 4.*'verts' has 2|'verts' has 2.*4"):
        ds[0]
    good = lambda s: select_rows(s, "verts", [0, 1])  # noqa: E731
    sample = MeshFolder(tmp_path, transform=good, index=None)[0]
    assert sample["vertex_label"].tolist() == [0, 1] and len(sample["verts"]) == 2
