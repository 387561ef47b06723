"""The demo dataset generator: deterministic, the documented size spread, files any reader parses.

Files are checked with references independent of hetload's readers: ``plyfile`` for PLY and a
small OBJ line parser written here.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import plyfile
import pytest

from hetload import demo


def _manifest(root: Path) -> list[dict[str, str]]:
    with (root / "manifest.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _parse_obj(path: Path) -> tuple[np.ndarray, list[list[int]], int]:
    """(verts [N, 3+], faces as 0-based vertex lists, number of vn lines)"""
    verts, faces, normals = [], [], 0
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:]])
        elif parts[0] == "vn":
            normals += 1
        elif parts[0] == "f":
            faces.append([int(corner.split("/")[0]) - 1 for corner in parts[1:]])
    return np.array(verts), faces, normals


def _parse_off(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    """(verts [N, 3], faces as vertex lists) of a plain OFF file."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    assert lines[0] == ["OFF"]
    n_verts, n_faces, _ = (int(x) for x in lines[1])
    verts = np.array([[float(x) for x in row] for row in lines[2 : 2 + n_verts]])
    faces = [[int(x) for x in row[1:]] for row in lines[2 + n_verts :]]
    assert all(len(f) == int(row[0]) for f, row in zip(faces, lines[2 + n_verts :]))
    assert len(faces) == n_faces
    return verts, faces


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    demo.generate(root, n=60, seed=3)
    return root


def test_same_seed_same_bytes_other_seed_other_bytes(demo_set: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    demo.generate(again, n=60, seed=3)
    files = [row["file"] for row in _manifest(demo_set)]
    assert files == [row["file"] for row in _manifest(again)]
    for name in files:
        assert (demo_set / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    demo.generate(other, n=60, seed=4)
    assert _manifest(other) != _manifest(demo_set)


def test_every_shape_and_format_with_extras(demo_set: Path) -> None:
    rows = _manifest(demo_set)
    assert len(rows) == 60 + sum(demo.MODELNET.values())
    rows = [r for r in rows if r["format"] != "off"]  # the ModelNet miniature: its own test
    assert set(Counter(r["shape"] for r in rows)) == set(demo.SHAPES)
    assert set(Counter(r["format"] for r in rows)) == set(demo.FORMATS)
    assert any(r["normals"] == "1" for r in rows) and any(r["normals"] == "0" for r in rows)
    assert any(r["colors"] == "1" for r in rows) and any(r["colors"] == "0" for r in rows)
    for r in rows:
        assert (r["labels"] == "1") == (r["shape"] == "scan")
        assert (r["n_faces"] == "0") == (r["shape"] == "scan")
        folder = "scans/" if r["shape"] == "scan" else f"meshes/{r['shape']}/"
        assert r["file"].startswith(folder)
    assert not list(demo_set.rglob(".*tmp*")), "temporary files left behind"


def test_files_parse_with_independent_readers(demo_set: Path) -> None:
    for row in _manifest(demo_set):
        path = demo_set / row["file"]
        n_verts, n_faces = int(row["n_vertices"]), int(row["n_faces"])
        if row["format"] == "off":
            verts, faces = _parse_off(path)
            assert verts.shape == (n_verts, 3)
            corners = np.concatenate([np.array(f) for f in faces])
        elif row["format"] == "obj":
            verts, faces, normals = _parse_obj(path)
            assert verts.shape == (n_verts, 6 if row["colors"] == "1" else 3)
            assert normals == (n_verts if row["normals"] == "1" else 0)
            corners = np.concatenate([np.array(f) for f in faces])
        else:
            encoding = {"ply-ascii": "ascii", "ply-le": "binary_little_endian"}.get(
                row["format"], "binary_big_endian"
            )
            ply = plyfile.PlyData.read(str(path))
            assert ply.text == (encoding == "ascii")
            assert ply.byte_order == {"ascii": "=", "binary_little_endian": "<"}.get(encoding, ">")
            vertex = ply["vertex"].data
            names = set(vertex.dtype.names)
            assert len(vertex) == n_verts
            assert ("nx" in names) == (row["normals"] == "1")
            assert ("red" in names) == (row["colors"] == "1")
            assert ("label" in names) == (row["labels"] == "1")
            verts = np.column_stack([vertex["x"], vertex["y"], vertex["z"]])
            if n_faces:
                faces = list(ply["face"].data["vertex_indices"])
                corners = np.concatenate(faces)
            else:
                assert "face" not in ply
                faces, corners = [], np.zeros(0, np.int64)
            if "label" in names:
                assert vertex["label"].min() >= 0 and len(np.unique(vertex["label"])) >= 2
        assert np.isfinite(verts).all()
        assert len(faces) == n_faces
        if n_faces:
            assert corners.min() >= 0 and corners.max() < n_verts
            # every vertex is used by some face (boxes drop the vertices of their holes)
            assert len(np.unique(corners)) == n_verts


def _edge_use(faces: np.ndarray) -> np.ndarray:
    k = faces.shape[1]
    edges = np.concatenate([faces[:, [j, (j + 1) % k]] for j in range(k)])
    _, counts = np.unique(np.sort(edges, axis=1), axis=0, return_counts=True)
    return counts


@pytest.mark.parametrize("shape", ["sphere", "torus", "blob"])
def test_closed_shapes_are_closed_manifolds(demo_set: Path, shape: str) -> None:
    rows = [r for r in _manifest(demo_set) if r["shape"] == shape and r["format"].startswith("ply")]
    assert rows
    for row in rows:
        ply = plyfile.PlyData.read(str(demo_set / row["file"]))
        faces = np.stack(ply["face"].data["vertex_indices"]).astype(np.int64)
        assert (_edge_use(faces) == 2).all(), row["file"]


def test_sizes_log_normal_in_documented_range() -> None:
    sizes = demo.sample_sizes(20_000, seed=0)
    assert sizes.min() >= demo.MIN_VERTICES and sizes.max() <= demo.MAX_VERTICES
    # a normal truncated at z = (log 300 - log 2000) / 1.4 = -1.36 and z = +4.9: compare the
    # sample quantiles with the truncated normal's, computed here by inverting its CDF
    from statistics import NormalDist

    unit = NormalDist()
    low = unit.cdf((np.log(demo.MIN_VERTICES) - np.log(demo.MEDIAN_VERTICES)) / demo.SIGMA)
    high = unit.cdf((np.log(demo.MAX_VERTICES) - np.log(demo.MEDIAN_VERTICES)) / demo.SIGMA)
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        z = unit.inv_cdf(low + q * (high - low))
        expected = np.log(demo.MEDIAN_VERTICES) + demo.SIGMA * z
        assert abs(np.quantile(np.log(sizes), q) - expected) < 0.05, q
    # no pile-up at the bounds (a clipped distribution would put ~9% of samples at 300)
    assert (sizes == demo.MIN_VERTICES).mean() < 0.002
    assert np.array_equal(sizes, demo.sample_sizes(20_000, seed=0))
    # the default set of 500 spans a few hundred to tens of thousands of vertices
    default = demo.sample_sizes(500, seed=0)
    assert default.min() < 500 and default.max() > 50_000


def test_replaces_a_previous_demo_set_and_refuses_other_folders(tmp_path: Path) -> None:
    root = tmp_path / "d"
    demo.generate(root, n=12, seed=0)
    first = {r["file"] for r in _manifest(root)}
    demo.generate(root, n=4, seed=1)
    second = {r["file"] for r in _manifest(root)}
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.*") if p.name != "manifest.tsv"}
    assert on_disk == second and len(second) == 4 + sum(demo.MODELNET.values())
    assert first != second
    folders = {p for p in root.rglob("*") if p.is_dir()} - {root / "modelnet" / "box" / "test"}
    assert all(any(f.iterdir()) for f in folders), "emptied folders are removed"

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "bunny.ply").write_text("ply\n")
    with pytest.raises(ValueError, match="not a demo set"):
        demo.generate(theirs, n=2)
    assert [p.name for p in theirs.iterdir()] == ["bunny.ply"]
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        demo.generate(tmp_path / "x", n=0)


def test_the_modelnet_miniature_keeps_an_empty_class_folder(demo_set: Path) -> None:
    """``box/test`` is empty: the ModelNet dataset still numbers the classes as in train."""
    from hetload.data import ModelNet

    assert (demo_set / "modelnet" / "box" / "test").is_dir()
    assert not any((demo_set / "modelnet" / "box" / "test").iterdir())
    train = ModelNet(demo_set / "modelnet", "train", index=None)
    test = ModelNet(demo_set / "modelnet", "test", index=None)
    assert train.classes == test.classes == ["blob", "box", "sphere", "torus"]
    assert sorted(set(test.labels.tolist())) == [0, 2, 3]
    for ds in (train, test):
        for i in range(len(ds)):
            assert ds.classes[ds.labels[i]] == ds.keys[i].split("/")[0]
