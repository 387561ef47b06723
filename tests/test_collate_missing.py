"""Samples that differ in their fields batch by default: an absent ragged item is empty, an
absent fixed row a missing value, and ``batch.present(name)`` says which samples held what."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import hetload as hl

#: optional fields and how to make sample i's value with n vertices
OPTIONAL = {
    "colors": lambda rng, n, i: rng.integers(0, 255, (n, 3), dtype=np.uint8),
    "normals": lambda rng, n, i: rng.standard_normal((n, 3)).astype(np.float32),
    "uvs": lambda rng, n, i: rng.random((n + 1, 2)).astype(np.float32),
    "faces": lambda rng, n, i: rng.integers(0, max(n, 1), (n // 2, 3)) if n else np.zeros((0, 3)),
    "label": lambda rng, n, i: i,
    "weight": lambda rng, n, i: np.float32(i / 2),
    "key": lambda rng, n, i: f"sample-{i}",
}


def _samples(sizes: list[int], subsets: list[set[str]], seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i, (n, names) in enumerate(zip(sizes, subsets)):
        sample = {"verts": rng.random((n, 3)).astype(np.float32)}
        for name in sorted(names):
            value = OPTIONAL[name](rng, n, i)
            if name == "faces":
                value = value.astype(np.int64)
            sample[name] = value
        out.append(sample)
    return out


def _reference_missing(dtype: torch.dtype) -> float:
    """What the README says an absent fixed row holds, written out per dtype."""
    return {torch.int64: -1, torch.float32: math.nan, torch.float64: math.nan}[dtype]


@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=6),
    data=st.data(),
    seed=st.integers(0, 2**16),
)
def test_random_field_subsets_match_the_reference(sizes, data, seed):
    subsets = [data.draw(st.sets(st.sampled_from(sorted(OPTIONAL)))) for _ in sizes]
    samples = _samples(sizes, subsets, seed)
    batch = hl.collate(samples)
    names = {"verts"} | set().union(*subsets)
    assert set(batch.keys()) == names
    for name in names:
        flags = [name in s for s in samples]
        assert batch.present(name).tolist() == flags
        like = next(s[name] for s in samples if name in s)
        field = batch[name]
        if isinstance(field, hl.Ragged):
            # absent items are empty, present ones bit for bit (faces back in local numbers)
            for i, sample in enumerate(samples):
                item = batch.sample(i).get(name)
                if name in sample:
                    expected = torch.from_numpy(np.asarray(sample[name]))
                    assert item.dtype == expected.dtype and torch.equal(item, expected)
                else:
                    assert item is None
                    assert field.lengths[i] == 0
            assert field.values.shape[1:] == np.asarray(like).shape[1:]
        elif isinstance(field, torch.Tensor):
            for i, sample in enumerate(samples):
                if name in sample:
                    assert field[i].item() == pytest.approx(float(sample[name]))
                else:
                    missing = _reference_missing(field.dtype)
                    value = field[i].item()
                    assert math.isnan(value) if math.isnan(missing) else value == missing
        else:
            assert field == [s.get(name) for s in samples]
    # the list view gives back each input dict, with exactly its own fields
    for i, sample in enumerate(samples):
        assert set(batch.sample(i)) == set(sample)


def test_a_point_cloud_among_meshes_batches_with_empty_faces():
    mesh = {"verts": np.zeros((3, 3), np.float32), "faces": np.array([[0, 1, 2]])}
    cloud = {"verts": np.ones((5, 3), np.float32), "colors": np.full((5, 3), 7, np.uint8)}
    batch = hl.collate([mesh, cloud, mesh])
    assert batch.faces.lengths.tolist() == [1, 0, 1]
    assert batch.faces.values.tolist() == [[0, 1, 2], [8, 9, 10]]
    assert batch.faces.padded().tolist() == [[[0, 1, 2]], [[-1, -1, -1]], [[0, 1, 2]]]
    assert batch.colors.lengths.tolist() == [0, 5, 0]
    assert batch.colors.values.dtype == torch.uint8
    assert batch.present("colors").tolist() == [False, True, False]
    assert batch.present("verts").tolist() == [True, True, True]
    assert batch.present("uvs").tolist() == [False, False, False]  # no sample held uvs


def test_absent_fixed_rows_hold_a_missing_value_per_dtype():
    samples = [
        {"verts": np.zeros((1, 3)), "label": 3, "flag": True, "u": np.uint8(4)},
        {"verts": np.zeros((1, 3))},
        {"verts": np.zeros((1, 3)), "score": 0.5},
    ]
    batch = hl.collate(samples)
    assert batch.label.tolist() == [3, -1, -1] and batch.label.dtype == torch.int64
    assert batch.flag.tolist() == [True, False, False]
    assert batch.u.tolist() == [4, 255, 255] and batch.u.dtype == torch.uint8
    assert math.isnan(batch.score[0]) and batch.score[2] == 0.5


def test_presence_survives_to_pin_and_pickle():
    batch = hl.collate([{"verts": np.zeros((2, 3)), "label": 1}, {"verts": np.zeros((1, 3))}])
    for moved in (batch.to("cpu"), batch.to(torch.float32), pickle.loads(pickle.dumps(batch))):
        assert moved.present("label").tolist() == [True, False]
        assert "label" not in moved.sample(1)
    assert "in 1 of 2 samples" in repr(batch)


def test_an_index_into_a_field_the_sample_lacks_is_an_error():
    samples = [
        {"verts": np.zeros((3, 3)), "uvs": np.zeros((3, 2)), "faces_uvs": np.array([[0, 1, 2]])},
        {"verts": np.zeros((3, 3)), "faces_uvs": np.array([[0, 1, 2]])},
    ]
    with pytest.raises(ValueError, match="'faces_uvs': sample 1 has index"):
        hl.collate(samples)


def test_a_scalar_where_others_hold_rows_names_the_field():
    schema = hl.Schema({"extra": "ragged"})
    samples = [{"verts": np.zeros((1, 3))}, {"verts": np.zeros((1, 3)), "extra": 5}]
    with pytest.raises(ValueError, match="'extra': sample 1 holds a int"):
        hl.collate(samples, schema=schema)


def test_colors_stored_differently_batch_after_normalize_colors():
    """PLY stores colors as uint8, OBJ as floats in [0, 1]: collate refuses to mix them (naming
    the field); NormalizeColors makes both float32 in [0, 1]."""
    ply = {"verts": np.zeros((2, 3), np.float32), "colors": np.array([[255, 0, 51]] * 2, np.uint8)}
    obj = {"verts": np.zeros((1, 3), np.float32), "colors": np.array([[0.5, 1.0, 0.0]])}
    with pytest.raises(ValueError, match=r"'colors': sample 1 has dtype torch\.float64"):
        hl.collate([ply, obj])
    norm = hl.transforms.NormalizeColors()
    batch = hl.collate([norm(ply), norm(obj), {"verts": np.zeros((1, 3), np.float32)}])
    assert batch.colors.values.dtype == torch.float32
    expected = np.array([[255, 0, 51]] * 2 + [[127.5, 255, 0]], np.float32) / np.float32(255)
    assert np.array_equal(batch.colors.values.numpy(), expected)
    assert batch.present("colors").tolist() == [True, True, False]


def test_presence_crosses_from_dataloader_workers():
    from torch.utils.data import DataLoader

    data = [{"verts": np.zeros((i + 1, 3), np.float32), **({"label": i} if i % 2 else {})}
            for i in range(8)]  # fmt: skip
    loader = DataLoader(data, batch_size=4, collate_fn=hl.collate, num_workers=1)
    batches = list(loader)
    assert [b.present("label").tolist() for b in batches] == [[False, True, False, True]] * 2
    assert [b.label.tolist() for b in batches] == [[-1, 1, -1, 3], [-1, 5, -1, 7]]


def test_normalize_colors_channels_make_rgb_and_rgba_agree():
    rgb = {"verts": np.zeros((1, 3), np.float32), "colors": np.array([[255, 0, 0]], np.uint8)}
    rgba = {"verts": np.zeros((1, 3), np.float32), "colors": np.array([[0, 255, 0, 51]], np.uint8)}
    with pytest.raises(ValueError, match="trailing shape"):
        hl.collate([hl.transforms.NormalizeColors()(s) for s in (rgb, rgba)])
    four = hl.transforms.NormalizeColors(channels=4)
    expected = np.array([[255, 0, 0, 255], [0, 255, 0, 51]], np.float32) / np.float32(255)
    assert np.array_equal(hl.collate([four(rgb), four(rgba)]).colors.values.numpy(), expected)
    three = hl.transforms.NormalizeColors(channels=3)
    assert hl.collate([three(rgb), three(rgba)]).colors.values.shape == (2, 3)
    with pytest.raises(ValueError, match="must be None, 3 or 4"):
        hl.transforms.NormalizeColors(channels=2)


def test_every_real_file_batches_with_every_other(shared_meshes):
    """The third-party corpus (OBJ with and without normals/uvs/groups, PLY with RGB, RGBA,
    uint8 and float colors, point clouds, custom properties): every readable file in one batch,
    every present item back bit for bit."""
    ds = hl.data.MeshFolder(
        shared_meshes,
        on_error="skip",
        index=None,
        progress=False,
        transform=hl.transforms.NormalizeColors(channels=4),
    )
    samples = [s for s in (ds[i] for i in range(len(ds))) if s is not None]
    # an OBJ whose corners carry uv / normal indices on some faces only has -1 there (PyTorch3D's
    # convention); collate refuses -1 in an index field, loudly, naming it (a known limit)
    partial = [
        s
        for s in samples
        if any(name in s and (s[name] < 0).any() for name in ("faces_uvs", "faces_normals"))
    ]
    for sample in partial:
        with pytest.raises(ValueError, match=r"faces_(uvs|normals)"):
            hl.collate([sample])
    samples = [s for s in samples if not any(s is p for p in partial)]
    assert len(samples) > 100
    batch = hl.collate(samples)
    assert 0 < int(batch.present("colors").sum()) < len(samples)
    for i in range(0, len(samples), 7):
        got = batch.sample(i)
        assert set(got) == set(samples[i])
        for name, value in samples[i].items():
            if isinstance(value, np.ndarray) and value.ndim:
                # bytes, not values: a file's NaN colors must come back as the same NaNs
                item = got[name].numpy()
                assert item.dtype == value.dtype and item.shape == value.shape
                assert item.tobytes() == np.ascontiguousarray(value).tobytes(), name
