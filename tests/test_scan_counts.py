"""``scan(...).n_triangles`` and ``MeshFolder.field_sizes["faces"]`` count the rows ``load``
returns for ``faces`` (polygons fan-triangulated), the size a hard per-batch budget needs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_MESHES
from hypothesis import given, settings
from hypothesis import strategies as st

from hetload.data import MeshFolder
from hetload.io import ReadError, load, scan

SHARED = SHARED_MESHES


def polygons_strategy():
    """Polygon sizes (3..9 corners, 0..30 polygons) over 10 vertices."""
    return st.lists(st.integers(3, 9), max_size=30)


def random_polygons(sizes: list[int], seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 10, size=k).tolist() for k in sizes]


def write_obj(path: Path, polygons: list[list[int]], comment: bool = False) -> None:
    lines = [f"v {i} {i % 3} 0" for i in range(10)]
    for i, poly in enumerate(polygons):
        tail = " # a comment" if comment and i == 0 else ""
        lines.append("f " + " ".join(str(j + 1) for j in poly) + tail)
    path.write_text("\n".join(lines) + "\n")


def write_binary_ply(path: Path, polygons: list[list[int]], extra: bool, order: str = "<") -> None:
    """10 vertices, the faces with a uchar count and int indices; ``extra`` adds a per-face
    float and an element after the faces (fixed rows), as some exporters write."""
    fmt = {"<": "binary_little_endian", ">": "binary_big_endian"}[order]
    header = [
        "ply",
        f"format {fmt} 1.0",
        "element vertex 10",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(polygons)}",
        "property list uchar int vertex_indices",
    ]
    if extra:
        header += ["property float quality", "element edge 2", "property int a", "property int b"]
    body = bytearray(np.arange(30, dtype=order + "f4").tobytes())
    for poly in polygons:
        body += np.uint8(len(poly)).tobytes() + np.array(poly, dtype=order + "i4").tobytes()
        if extra:
            body += np.array([0.5], dtype=order + "f4").tobytes()
    if extra:
        body += np.array([0, 1, 1, 2], dtype=order + "i4").tobytes()
    path.write_bytes(("\n".join([*header, "end_header"]) + "\n").encode() + bytes(body))


def write_ascii_ply(path: Path, polygons: list[list[int]]) -> None:
    lines = ["ply", "format ascii 1.0", "element vertex 10", "property float x"]
    lines += ["property float y", "property float z", f"element face {len(polygons)}"]
    lines += ["property list uchar int vertex_indices", "end_header"]
    lines += [f"{i} 0 0" for i in range(10)]
    lines += [" ".join(map(str, [len(p), *p])) for p in polygons]
    path.write_text("\n".join(lines) + "\n")


def rows_of_faces(path: Path) -> int:
    return len(load(path).get("faces", ()))


@settings(max_examples=40, deadline=None)
@given(polygons_strategy(), st.integers(0, 2**32 - 1))
def test_obj_triangles_are_corners_minus_two(tmp_path_factory, sizes, seed):
    path = tmp_path_factory.mktemp("obj") / "m.obj"
    write_obj(path, random_polygons(sizes, seed))
    info = scan(path)
    assert info.n_faces == len(sizes)
    assert info.n_triangles == sum(k - 2 for k in sizes) == rows_of_faces(path)


@settings(max_examples=40, deadline=None)
@given(polygons_strategy(), st.integers(0, 2**32 - 1), st.booleans(), st.sampled_from("<>"))
def test_binary_ply_triangles_from_the_body_size(tmp_path_factory, sizes, seed, extra, order):
    path = tmp_path_factory.mktemp("ply") / "m.ply"
    write_binary_ply(path, random_polygons(sizes, seed), extra, order)
    info = scan(path)
    assert info.n_faces == len(sizes)
    assert info.n_triangles == sum(k - 2 for k in sizes) == rows_of_faces(path)


def test_unknown_counts_say_so(tmp_path):
    polygons = random_polygons([4, 5, 3], 0)
    write_ascii_ply(tmp_path / "a.ply", polygons)
    write_obj(tmp_path / "c.obj", polygons, comment=True)
    for name in ("a.ply", "c.obj"):
        info = scan(tmp_path / name)
        assert info.n_faces == 3 and info.n_triangles is None, name
    # still a (format, n_verts, n_faces) tuple
    assert scan(tmp_path / "a.ply") == ("ply", 10, 3)
    fmt, n_verts, n_faces = scan(tmp_path / "c.obj")
    assert (fmt, n_verts, n_faces) == ("obj", 10, 3)


def test_obj_continuation_and_crlf(tmp_path):
    path = tmp_path / "m.obj"
    path.write_bytes(b"v 0 0 0\r\nv 1 0 0\r\nv 0 1 0\r\nv 1 1 0\r\nf 1 2 \\\r\n 4 3\r\nf 1 2 3")
    assert scan(path).n_triangles == 3 == rows_of_faces(path)


def test_mesh_folder_budgets_triangles(tmp_path):
    quads = [[0, 1, 2, 3]] * 5
    mixed = random_polygons([3, 4, 8, 5], 1)
    write_obj(tmp_path / "a.obj", quads)
    write_ascii_ply(tmp_path / "b.ply", mixed)  # scan cannot tell: loaded once
    write_binary_ply(tmp_path / "c.ply", mixed, extra=True)
    write_obj(tmp_path / "d.obj", mixed, comment=True)
    ds = MeshFolder(tmp_path, index=tmp_path / "idx.json", progress=False)
    expected = [len(ds[i]["faces"]) for i in range(len(ds))]
    assert expected == [10, 12, 12, 12]
    np.testing.assert_array_equal(ds.field_sizes["faces"], expected)
    again = MeshFolder(tmp_path, index=tmp_path / "idx.json", progress=False)  # from the index
    np.testing.assert_array_equal(again.field_sizes["faces"], expected)


@pytest.fixture(scope="module")
def manifest():
    if not (SHARED / "MANIFEST.tsv").is_file():
        pytest.skip("../shared/data/meshes is not present")
    with open(SHARED / "MANIFEST.tsv", newline="") as fh:
        formats = ("obj", "ply", "off", "stl")
        return [r for r in csv.DictReader(fh, delimiter="\t") if r["format"] in formats]


def test_real_files(manifest):
    known = polygonal = 0
    for row in manifest:
        path = SHARED / row["path"]
        try:
            info, rows = scan(path), rows_of_faces(path)
        except ReadError:
            continue
        if info.n_triangles is None:
            assert row["format"] in ("ply", "off") or info.n_faces, row["path"]
            continue
        assert info.n_triangles == rows, row["path"]
        pairs = [part.split(":") for part in row["face_arity"].split(",") if part]
        if "continuation" not in row["edge_cases"]:  # the MANIFEST reads physical lines
            assert info.n_triangles == sum((int(a) - 2) * int(n) for a, n in pairs), row["path"]
        known += 1
        polygonal += any(a != "3" for a, _ in pairs)
    assert known > 150 and polygonal > 20
