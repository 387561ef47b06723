"""Every format ``load`` reads is found by MeshFolder, ``hetload check`` and ``preprocess``
(one list, ``hetload.io.formats``); ``extensions`` narrows it; files no reader handles are
listed; hetload's own index file is never an input. A ModelNet-style folder of OFF files (some
with ModelNet's broken ``OFF<counts>`` first line) goes through MeshFolder and preprocess."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from hetload.data import MeshFolder, ShardDataset
from hetload.io import load
from hetload.io.formats import (
    MESH_EXTENSIONS,
    find_mesh_files,
    normalize_extensions,
)
from hetload.shards.preprocess import find_inputs, list_inputs, preprocess

CLASSES = ("chair", "desk", "plant")


def modelnet_mesh(seed: int) -> tuple[np.ndarray, list[list[int]]]:
    """A small mesh per file: vertices on a grid (exact in text), triangles and a quad."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 30))
    verts = rng.integers(-500, 500, size=(n, 3)) / 8.0
    faces = [rng.choice(n, 3, replace=False).tolist() for _ in range(int(rng.integers(1, 20)))]
    faces.append(rng.choice(n, 4, replace=False).tolist())
    return verts, faces


def write_modelnet_off(path: Path, verts, faces, broken: bool) -> None:
    counts = f"{len(verts)} {len(faces)} 0"
    head = f"OFF{counts}\n" if broken else f"OFF\n{counts}\n"  # ModelNet's broken first line
    rows = "".join(f"{x:g} {y:g} {z:g}\n" for x, y, z in verts.tolist())
    rows += "".join(" ".join(map(str, [len(f), *f])) + "\n" for f in faces)
    path.write_text(head + rows)


@pytest.fixture
def modelnet(tmp_path) -> tuple[Path, dict[str, tuple]]:
    root = tmp_path / "ModelNet"
    expected = {}
    seed = 0
    for cls in CLASSES:
        for split in ("train", "test"):
            folder = root / cls / split
            folder.mkdir(parents=True)
            for i in range(2 if split == "test" else 3):
                verts, faces = modelnet_mesh(seed)
                rel = f"{cls}/{split}/{cls}_{i:04d}.off"
                write_modelnet_off(root / rel, verts, faces, broken=seed % 2 == 0)
                expected[rel] = (verts, faces)
                seed += 1
    (root / "README.txt").write_text("ModelNet-style test data\n")
    (root / "chair" / ".DS_Store").write_bytes(b"\0\1")  # hidden: neither input nor reported
    return root, expected


def reference_triangles(faces: list[list[int]]) -> list[list[int]]:
    return [[f[0], f[k], f[k + 1]] for f in faces for k in range(1, len(f) - 1)]


def test_modelnet_folder_through_mesh_folder(modelnet):
    root, expected = modelnet
    ds = MeshFolder(root, progress=False)
    names = [p.relative_to(root).as_posix() for p in ds.files]
    assert names == sorted(expected)
    assert [p.name for p in ds.unreadable] == ["README.txt"]
    assert (root / ".hetload-index.json").is_file()
    for i, name in enumerate(names):
        verts, faces = expected[name]
        sample = ds[i]
        np.testing.assert_array_equal(sample["verts"], verts.astype(np.float32))
        np.testing.assert_array_equal(sample["faces"], reference_triangles(faces))
        assert ds.sizes[i] == len(verts)
        assert ds.field_sizes["faces"][i] == len(reference_triangles(faces))
    # again, from the index beside the data: the index is not an input, and not "unreadable"
    again = MeshFolder(root, progress=False)
    assert again.files == ds.files and [p.name for p in again.unreadable] == ["README.txt"]
    np.testing.assert_array_equal(again.field_sizes["faces"], ds.field_sizes["faces"])
    # a split through the pattern
    train = MeshFolder(root, "*/train/*", progress=False)
    assert len(train) == 9 and all("/train/" in p.as_posix() for p in train.files)


def test_modelnet_folder_through_preprocess(modelnet, tmp_path):
    root, expected = modelnet
    MeshFolder(root, progress=False)  # leaves .hetload-index.json beside the data
    result = preprocess(root, tmp_path / "shards", max_count=4, progress=False)
    assert result.files == len(expected) and result.samples == len(expected)
    assert result.unreadable == ["README.txt"] and "not read" in str(result)
    ds = ShardDataset(tmp_path / "shards")
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert "hetload-index" not in json.dumps(index)
    for i, name in enumerate(sorted(expected)):
        verts, faces = expected[name]
        sample = ds[i]
        np.testing.assert_array_equal(np.asarray(sample["verts"]), verts.astype(np.float32))
        np.testing.assert_array_equal(np.asarray(sample["faces"]), reference_triangles(faces))


def test_every_format_is_found_by_default_and_extensions_narrow(tmp_path, caplog):
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False)
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    (tmp_path / "b.STL").write_bytes(mesh.export(file_type="stl"))
    (tmp_path / "sub" / "c.glb").write_bytes(mesh.export(file_type="glb"))
    (tmp_path / "d.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / "d.mtl").write_text("newmtl m\n")  # a companion of d.obj: not reported
    (tmp_path / ".hetload-index.json").write_text("{}")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "e.obj").write_text("v 0 0 0\n")

    with caplog.at_level(logging.WARNING, logger="hetload"):
        ds = MeshFolder(tmp_path, index=None, progress=False)
    assert [p.name for p in ds.files] == ["a.off", "b.STL", "d.obj", "c.glb"]
    assert [p.name for p in ds.unreadable] == ["notes.md"]
    assert "1 files under" in caplog.text and "not loaded: notes.md" in caplog.text
    for i in range(len(ds)):
        assert ds[i]["verts"].shape[1] == 3
    narrow = MeshFolder(tmp_path, extensions=["off", ".stl"], index=None, progress=False)
    assert [p.name for p in narrow.files] == ["a.off", "b.STL"]
    # the same list, whoever asks
    inputs, unreadable = find_inputs(tmp_path)
    assert [rel for rel, _ in inputs] == ["a.off", "b.STL", "d.obj", "sub/c.glb"]
    assert unreadable == ["notes.md"]
    assert [rel for rel, _ in list_inputs(tmp_path, "off,stl")] == ["a.off", "b.STL"]
    found = find_mesh_files(tmp_path, ["obj"])
    assert [p.name for p in found.not_selected] == ["a.off", "b.STL", "c.glb"]
    assert load(tmp_path / "sub" / "c.glb")["faces"].tolist() == [[0, 1, 2]]


def test_normalize_extensions():
    assert normalize_extensions(None) == MESH_EXTENSIONS
    assert normalize_extensions(["OFF", ".Stl", "off"]) == (".off", ".stl")
    assert normalize_extensions("obj, ply") == (".obj", ".ply")
    for bad in ([], [""], ["."]):
        with pytest.raises(ValueError, match="extensions"):
            normalize_extensions(bad)
    assert {".obj", ".ply", ".off", ".stl", ".glb", ".gltf"} <= set(MESH_EXTENSIONS)


def test_a_file_list_naming_the_index_is_refused(tmp_path):
    (tmp_path / "a.off").write_text("OFF\n1 0 0\n0 0 0\n")
    (tmp_path / ".hetload-index.json").write_text("{}")
    listing = tmp_path / "inputs.txt"
    listing.write_text("a.off\n.hetload-index.json\n")
    with pytest.raises(ValueError, match="is a file hetload writes, not an input"):
        list_inputs(listing)
