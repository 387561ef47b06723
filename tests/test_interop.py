"""Adapters to torch.nested, PyG, PyTorch3D and Pointcept, checked against each library's own
construction from the same samples (or a plain reference written here)."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import hetload as hl
from hetload import interop


def _samples(sizes: list[int], seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        n_faces = 2 * n if n else 0
        out.append(
            {
                "verts": rng.normal(size=(n, 3)).astype(np.float32),
                "faces": rng.integers(0, max(n, 1), size=(n_faces, 3)),
                "colors": rng.integers(0, 256, size=(n, 3), dtype=np.uint8),
                "labels": rng.integers(0, 5, size=n),
                "label": int(rng.integers(10)),
                "path": f"mesh_{n}.ply",
            }
        )
    return out


sizes_strategy = st.lists(st.integers(0, 40), min_size=1, max_size=6)


# ---------------------------------------------------------------------------- torch.nested
@given(sizes_strategy)
def test_nested_round_trip(sizes: list[int]) -> None:
    samples = _samples(sizes)
    batch = hl.collate(samples)
    nested = interop.to_nested(batch)
    assert set(nested) == {"verts", "faces", "colors", "labels"}
    for name, nt in nested.items():
        assert nt.layout == torch.jagged and nt.size(0) == len(sizes)
        assert nt._maybe_max_seqlen == max(len(s[name]) for s in samples)
        for item, sample in zip(nt.unbind(), samples):
            assert torch.equal(item, torch.from_numpy(sample[name]))  # faces in local numbering
        back = interop.from_nested(nt, name=name)
        assert torch.equal(back.offsets, batch[name].offsets)
        assert back.max_len == batch[name].max_len
    # values are shared with the batch, not copied (faces are re-numbered, so they are a copy)
    assert nested["verts"].values().data_ptr() == batch.verts.values.data_ptr()
    assert torch.equal(interop.from_nested(nested["verts"]).values, batch.verts.values)


def test_nested_of_one_field_and_bad_inputs() -> None:
    batch = hl.collate(_samples([3, 0, 4]))
    nt = interop.to_nested(batch.verts)
    assert nt.shape[0] == 3 and torch.equal(nt.offsets(), batch.verts.offsets)
    with pytest.raises(ValueError, match="nested tensor"):
        interop.from_nested(torch.zeros(3, 2))
    with warnings.catch_warnings():  # torch warns that the strided layout is a prototype
        warnings.simplefilter("ignore", UserWarning)
        strided = torch.nested.nested_tensor([torch.zeros(2, 3), torch.zeros(1, 3)])
    with pytest.raises(ValueError, match="jagged layout"):
        interop.from_nested(strided)
    with pytest.raises(TypeError, match="HeteroBatch or a Ragged"):
        interop.to_nested({"verts": 1})


# ---------------------------------------------------------------------------- PyG
def _pyg_reference(samples: list[dict]):
    from torch_geometric.data import Batch, Data

    return Batch.from_data_list(
        [
            Data(
                pos=torch.from_numpy(s["verts"]),
                face=torch.from_numpy(s["faces"]).T.contiguous(),
                colors=torch.from_numpy(s["colors"]),
                labels=torch.from_numpy(s["labels"]),
                y=s["label"],
                path=s["path"],
            )
            for s in samples
        ]
    )


@given(sizes_strategy)
def test_pyg_batch_matches_from_data_list(sizes: list[int]) -> None:
    pytest.importorskip("torch_geometric")
    samples = _samples(sizes)
    ours = interop.to_pyg(hl.collate(samples))
    ref = _pyg_reference(samples)
    assert ours.num_graphs == ref.num_graphs == len(sizes)
    for key in ("pos", "face", "colors", "labels", "batch", "ptr", "y"):
        assert torch.equal(ours[key], ref[key]), key
    assert ours.path == ref.path
    assert ours.face.shape[0] == 3
    # to_data_list gives back each sample, faces in local numbering, shaped [3, F_i]
    for data, ref_data in zip(ours.to_data_list(), ref.to_data_list()):
        for key in ("pos", "face", "colors", "labels", "y"):
            assert torch.equal(data[key], ref_data[key]), key
        assert data.path == ref_data.path
        assert data.num_nodes == ref_data.num_nodes


def test_pyg_point_cloud_and_errors() -> None:
    pytest.importorskip("torch_geometric")
    batch = hl.collate([{"points": np.ones((n, 3), np.float32)} for n in (2, 5)])
    out = interop.to_pyg(batch)
    assert out.pos.shape == (7, 3) and out.batch.tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert out.ptr.tolist() == [0, 2, 7]
    with pytest.raises(ValueError, match="no ragged position field 'xyz'"):
        interop.to_pyg(batch, pos="xyz")


# ---------------------------------------------------------------------------- PyTorch3D
@pytest.mark.skipif(importlib.util.find_spec("pytorch3d") is not None, reason="PyTorch3D installed")
def test_pytorch3d_missing_says_how_to_install() -> None:
    batch = hl.collate(_samples([3, 4]))
    for convert in (interop.to_pytorch3d_meshes, interop.to_pytorch3d_pointclouds):
        with pytest.raises(ImportError, match=r"PyTorch3D is not installed.*INSTALL\.md"):
            convert(batch)


@pytest.mark.skipif(importlib.util.find_spec("pytorch3d") is None, reason="PyTorch3D missing")
def test_pytorch3d_structures_match_lists() -> None:
    samples = _samples([3, 0, 5])
    batch = hl.collate(samples)
    meshes = interop.to_pytorch3d_meshes(batch)
    for got, s in zip(meshes.faces_list(), samples):
        assert torch.equal(got, torch.from_numpy(s["faces"]))
    assert torch.equal(meshes.verts_packed(), batch.verts.values)
    clouds = interop.to_pytorch3d_pointclouds(batch)
    assert torch.equal(clouds.points_packed(), batch.verts.values)
    assert torch.equal(clouds.features_packed(), batch.colors.values.float())


# ---------------------------------------------------------------------------- Pointcept
@given(sizes_strategy)
def test_pointcept_offsets_are_cumulative_ends_and_round_trip(sizes: list[int]) -> None:
    samples = _samples(sizes)
    batch = hl.collate(samples)
    point = interop.to_pointcept(batch, feat=("verts", "colors"))
    ends = np.cumsum(sizes)
    assert point["offset"].tolist() == ends.tolist()
    assert point["batch"].tolist() == [i for i, n in enumerate(sizes) for _ in range(n)]
    ref_feat = np.concatenate(
        [np.zeros((0, 6), np.float32)]
        + [np.column_stack([s["verts"], s["colors"].astype(np.float32)]) for s in samples]
    )
    assert point["feat"].dtype == torch.float32
    assert np.array_equal(point["feat"].numpy(), ref_feat)
    assert torch.equal(point["segment"], batch.labels.values)
    assert point["coord"].data_ptr() == batch.verts.values.data_ptr()

    back = interop.from_pointcept(point)
    assert len(back) == len(sizes)
    assert torch.equal(back.verts.values, batch.verts.values)
    assert torch.equal(back.verts.offsets, batch.verts.offsets)
    assert torch.equal(back.labels.values, batch.labels.values)
    assert torch.equal(back.feat.values, point["feat"])


def test_pointcept_defaults_and_errors() -> None:
    batch = hl.collate(_samples([2, 3]))
    point = interop.to_pointcept(batch)
    assert torch.equal(point["feat"], batch.verts.values)  # feat_keys=("coord",)
    with pytest.raises(ValueError, match="feat field 'faces'"):
        interop.to_pointcept(batch, feat=("faces",))
    with pytest.raises(ValueError, match="feat field 'nope'"):
        interop.to_pointcept(batch, feat=("nope",))
    with pytest.raises(ValueError, match="has no 'offset'"):
        interop.from_pointcept({"coord": torch.zeros(2, 3)})
