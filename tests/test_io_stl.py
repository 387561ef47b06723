"""hetload's STL reader: binary and ASCII against references written here, trimesh's
``tests/test_stl.py`` facts translated, the opt-in weld, and a hypothesis roundtrip."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hetload.io import ReadError, load, scan

TETRA = np.array(
    [
        [[0, 0, 0], [1, 0, 0], [0, 1, 0]],
        [[0, 0, 0], [0, 0, 1], [1, 0, 0]],
        [[0, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[1, 0, 0], [0, 0, 1], [0, 1, 0]],
    ],
    dtype=np.float32,
)  # [F, 3 corners, 3]
NORMALS = np.array([[0, 0, -1], [0, -1, 0], [-1, 0, 0], [0.577, 0.577, 0.577]], np.float32)


def binary_stl(triangles, normals=None, header=b"", attributes=None, count=None) -> bytes:
    """The binary layout, written here from its description: 80 header bytes, uint32 count,
    then per triangle 12 little-endian float32 (normal, corners) and a uint16."""
    triangles = np.asarray(triangles, dtype=np.float32).reshape(-1, 3, 3)
    n = len(triangles)
    normals = np.zeros((n, 3), np.float32) if normals is None else np.asarray(normals)
    attributes = [0] * n if attributes is None else attributes
    out = [header.ljust(80, b" ")[:80], struct.pack("<I", n if count is None else count)]
    for tri, normal, attr in zip(triangles, normals, attributes):
        out.append(struct.pack("<12fH", *normal.tolist(), *tri.reshape(-1).tolist(), attr))
    return b"".join(out)


def ascii_stl(solids, fmt=repr, newline="\n", indent="  ") -> bytes:
    """``solids``: ``[(name, triangles [F,3,3], normals [F,3])]``."""
    lines = []
    for name, triangles, normals in solids:
        lines.append(f"solid {name}".rstrip())
        for tri, normal in zip(np.asarray(triangles), np.asarray(normals)):
            lines.append(f"{indent}facet normal " + " ".join(fmt(float(x)) for x in normal))
            lines.append(f"{indent * 2}outer loop")
            for corner in tri:
                lines.append(f"{indent * 3}vertex " + " ".join(fmt(float(x)) for x in corner))
            lines.append(f"{indent * 2}endloop")
            lines.append(f"{indent}endfacet")
        lines.append(f"endsolid {name}".rstrip())
    return (newline.join(lines) + newline).encode()


def write(tmp_path, data: bytes, name: str = "x.stl"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def check_faithful(sample, triangles, normals):
    n = len(triangles)
    if n == 0:
        assert set(sample) == {"verts"} and sample["verts"].shape == (0, 3)
        return
    assert sample["verts"].dtype == np.float32 and sample["faces"].dtype == np.int64
    np.testing.assert_array_equal(sample["verts"], np.asarray(triangles).reshape(-1, 3))
    np.testing.assert_array_equal(sample["faces"], np.arange(3 * n).reshape(n, 3))
    np.testing.assert_array_equal(sample["face_normals"], normals)


# ------------------------------------------------------------------------------- binary
def test_binary_three_vertices_per_triangle_in_file_order(tmp_path):
    path = write(tmp_path, binary_stl(TETRA, NORMALS, header=b"exported by a test"))
    sample = load(path)
    check_faithful(sample, TETRA, NORMALS)
    assert "face_attributes" not in sample  # all zero: nothing to carry
    assert scan(path) == ("stl", 12, 4) and scan(path).n_triangles == 4


def test_binary_header_starting_with_solid(tmp_path):
    # SolidWorks and others write "solid <name>" into the binary header
    path = write(tmp_path, binary_stl(TETRA, NORMALS, header=b"solid part1 exported"))
    check_faithful(load(path), TETRA, NORMALS)
    assert scan(path) == ("stl", 12, 4)


def test_binary_attributes_kept_where_set(tmp_path):
    sample = load(write(tmp_path, binary_stl(TETRA, NORMALS, attributes=[0, 7, 0, 0x8001])))
    assert sample["face_attributes"].dtype == np.uint16
    np.testing.assert_array_equal(sample["face_attributes"], [0, 7, 0, 0x8001])


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d[:-10], r"declares 4 triangles \(200 bytes\) but 190 bytes.*truncated"),
        (lambda d: d + b"\0" * 50, r"250 bytes follow.*bytes follow the last triangle"),
        (lambda d: d[:80] + struct.pack("<I", 2**32 - 1) + d[84:], "declares 4294967295"),
        (lambda d: d[:50], r"50 bytes: shorter than a binary STL header"),
        (lambda d: (b"solid x" + d[7:])[:-10], r"declares 4 triangles"),
    ],
)
def test_binary_count_disagrees_with_size(tmp_path, mutate, match):
    path = write(tmp_path, mutate(binary_stl(TETRA, NORMALS)))
    for reader in (load, scan):
        with pytest.raises(ReadError, match=match) as info:
            reader(path)
        assert str(info.value).startswith(str(path))


def test_binary_nonfinite(tmp_path):
    bad = TETRA.copy()
    bad[2, 1, 0] = np.nan
    path = write(tmp_path, binary_stl(bad, NORMALS))
    with pytest.raises(ReadError, match=r"\(triangle 2\).*vertex 7 is not finite"):
        load(path)
    assert np.isnan(load(path, allow_nonfinite=True)["verts"][7, 0])
    normals = NORMALS.copy()
    normals[1, 2] = np.inf
    with pytest.raises(ReadError, match=r"facet normal 1 is not finite"):
        load(write(tmp_path, binary_stl(TETRA, normals)))


def test_dtype_and_polygons_options(tmp_path):
    path = write(tmp_path, binary_stl(TETRA, NORMALS))
    sample = load(path, dtype=np.float64, index_dtype=np.int32, polygons=True)
    assert sample["verts"].dtype == np.float64 and sample["face_normals"].dtype == np.float64
    assert sample["faces"].dtype == np.int32
    np.testing.assert_array_equal(sample["polygons"], np.arange(12))
    np.testing.assert_array_equal(sample["polygon_sizes"], [3, 3, 3, 3])


# -------------------------------------------------------------------------------- ascii
def test_ascii_matches_binary(tmp_path):
    a = load(write(tmp_path, ascii_stl([("tetra", TETRA, NORMALS)]), "a.stl"))
    b = load(write(tmp_path, binary_stl(TETRA, NORMALS), "b.stl"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert scan(tmp_path / "a.stl") == ("stl", 12, 4)


def test_ascii_several_solids_mixed_case_crlf_tabs(tmp_path):
    data = ascii_stl(
        [("first", TETRA[:3], NORMALS[:3]), ("", TETRA[3:], NORMALS[3:])],
        newline="\r\n",
        indent="\t",
    )
    data = data.replace(b"vertex", b"VERTEX").replace(b"endsolid first", b"EndSolid first")
    sample = load(write(tmp_path, data))
    check_faithful(sample, TETRA, NORMALS)
    np.testing.assert_array_equal(sample["face_groups"], [0, 0, 0, 1])
    # one solid: no face_groups field
    assert "face_groups" not in load(write(tmp_path, ascii_stl([("x", TETRA, NORMALS)])))


def test_ascii_without_final_newline_and_exponents(tmp_path):
    data = ascii_stl([("e", TETRA * 1e-30, NORMALS)], fmt=lambda x: f"{x:e}").rstrip()
    sample = load(write(tmp_path, data))
    np.testing.assert_allclose(sample["verts"], TETRA.reshape(-1, 3) * 1e-30, rtol=1e-6)


GOOD = ascii_stl([("t", TETRA[:1], NORMALS[:1])]).decode()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (GOOD.replace("solid t\n", ""), r"not an ASCII one \(no 'solid' at the start\)"),
        (GOOD.replace("endsolid t\n", ""), r"no 'endsolid' line"),
        (GOOD.replace("      vertex 0.0 1.0 0.0\n", ""), r"\(line 6\).*'vertex', found 'endloop'"),
        (GOOD.replace("outer loop", "outer"), r"\(line 3\).*'outer' line has 1 words, expected 2"),
        (GOOD.replace("vertex 1.0 0.0 0.0", "vertex 1.0 0.0"), r"\(line 5\).*'vertex' line has 3"),
        (GOOD.replace("vertex 1.0 0.0 0.0", "vertex 1.0 x 0.0"), r"\(line 5\).*'x' is not a"),
        (GOOD.replace("facet normal", "facet norma"), r"\(line 2\).*'facet normal nx ny nz'"),
        (GOOD.replace("endloop", "endloops"), r"\(line 7\).*'endloops' is not an ASCII STL"),
        (GOOD + "garbage\n", r"'garbage' is not an ASCII STL keyword"),
        (GOOD.replace("vertex 1.0 0.0 0.0", "vertex 1.0 nan 0.0"), r"vertex 1 is not finite"),
        (GOOD.replace("vertex 1.0 0.0 0.0", "vertex 1.0 1e39 0.0"), r"vertex 1 is not finite"),
    ],
)  # fmt: skip
def test_ascii_malformed(tmp_path, text, match):
    path = write(tmp_path, text.encode())
    with pytest.raises(ReadError, match=match) as info:
        load(path)
    assert str(info.value).startswith(str(path))


def test_empty_files(tmp_path):
    with pytest.raises(ReadError, match="empty"):
        load(write(tmp_path, b""))
    for data in (b"solid empty\nendsolid empty\n", binary_stl(np.zeros((0, 3, 3)))):
        sample = load(write(tmp_path, data))
        assert sample["verts"].shape == (0, 3) and set(sample) == {"verts"}
        assert scan(tmp_path / "x.stl") == ("stl", 0, 0)


# --------------------------------------------------------------------------------- weld
def reference_weld(verts: np.ndarray):
    """Plain-Python weld: first occurrence order, exact equality (-0.0 == 0.0)."""
    index: dict[tuple, int] = {}
    remap = []
    for row in verts.tolist():
        key = tuple(x + 0.0 for x in row)
        remap.append(index.setdefault(key, len(index)))
    unique = np.array(list(index), dtype=verts.dtype).reshape(-1, 3)
    return unique, np.array(remap).reshape(-1, 3)


def test_weld_merges_exactly_equal_vertices_in_first_occurrence_order(tmp_path):
    tri = TETRA.copy()
    tri[3, 0] = [-0.0, 0.0, 0.0]  # equals vertex 0
    tri[3, 1] = [0.0, 0.0, np.nextafter(np.float32(1), np.float32(2))]  # not equal to (0,0,1)
    path = write(tmp_path, binary_stl(tri, NORMALS))
    sample = load(path, weld=True)
    unique, faces = reference_weld(tri.reshape(-1, 3))
    np.testing.assert_array_equal(sample["verts"], unique)
    np.testing.assert_array_equal(sample["faces"], faces)
    assert len(sample["verts"]) == 5
    np.testing.assert_array_equal(sample["face_normals"], NORMALS)
    # the same triangles come back, corner by corner
    np.testing.assert_array_equal(sample["verts"][sample["faces"]], tri + np.float32(0))


# ------------------------------------------------------- trimesh tests/test_stl.py, translated
def test_trimesh_ascii_multibody(shared_meshes):
    # test_ascii_multibody: two solids, 'bodyA' and 'bodyB'; trimesh returns a Scene of two
    # merged meshes, here one sample with the solid of each triangle
    sample = load(shared_meshes / "mikedh__trimesh/models/multibody.stl")
    assert sample["verts"].shape == (96, 3) and sample["faces"].shape == (32, 3)
    assert sorted(set(sample["face_groups"].tolist())) == [0, 1]
    assert (np.diff(sample["face_groups"]) >= 0).all()


def test_trimesh_empty(shared_meshes):
    # test_empty: both empty files load (trimesh: an empty Scene, no vertices)
    for name in ("stl_empty_ascii.stl", "stl_empty_bin.stl"):
        sample = load(shared_meshes / "mikedh__trimesh/models/emptyIO" / name)
        assert sample["verts"].shape == (0, 3) and "faces" not in sample


def test_trimesh_vertex_order(shared_meshes):
    # test_vertex_order: merging vertices keeps their order (the index of each merged vertex's
    # first occurrence in the raw vertices increases) and the same triangles
    for name in ("soup.stl", "7_8ths_cube.stl", "multibody.stl"):
        path = shared_meshes / "mikedh__trimesh/models" / name
        raw, welded = load(path), load(path, weld=True)
        firsts = [int(np.flatnonzero((raw["verts"] == v).all(axis=1))[0]) for v in welded["verts"]]
        assert (np.diff(firsts) > 0).all()
        np.testing.assert_array_equal(
            welded["verts"][welded["faces"]], raw["verts"][raw["faces"]] + np.float32(0)
        )


def test_trimesh_face_attributes_per_face(shared_meshes):
    # test_header / test_attrib: one face attribute per face
    for name in ("soup.stl", "7_8ths_cube.stl"):
        sample = load(shared_meshes / "mikedh__trimesh/models" / name)
        if "face_attributes" in sample:
            assert len(sample["face_attributes"]) == len(sample["faces"])
        assert len(sample["face_normals"]) == len(sample["faces"])


def test_draco_binary_and_ascii_sphere_agree(shared_meshes):
    folder = shared_meshes / "google__draco/testdata/STL"
    binary, text = load(folder / "test_sphere.stl"), load(folder / "test_sphere_ascii.stl")
    assert binary["faces"].shape == text["faces"].shape == (224, 3)
    np.testing.assert_allclose(binary["verts"], text["verts"], atol=1e-5)


# --------------------------------------------------------------------- roundtrip property
triangle_soups = st.integers(0, 30).flatmap(
    lambda n: st.lists(
        st.floats(-1e6, 1e6, width=32, allow_subnormal=False), min_size=12 * n, max_size=12 * n
    )
)


@settings(max_examples=60)
@given(values=triangle_soups, binary=st.booleans(), header=st.sampled_from([b"", b"solid x"]))
def test_roundtrip(tmp_path_factory, values, binary, header):
    table = np.asarray(values, dtype=np.float32).reshape(-1, 12)
    normals, triangles = table[:, :3], table[:, 3:].reshape(-1, 3, 3)
    if binary:
        data = binary_stl(triangles, normals, header=header)
    else:
        data = ascii_stl([("r", triangles, normals)])
    path = tmp_path_factory.mktemp("stl") / "r.stl"
    path.write_bytes(data)
    check_faithful(load(path), triangles, normals)
    assert scan(path) == ("stl", 3 * len(table), len(table))
    welded = load(path, weld=True)
    if not len(table):
        return
    unique, faces = reference_weld(triangles.reshape(-1, 3))
    np.testing.assert_array_equal(welded["verts"], unique)
    np.testing.assert_array_equal(welded["faces"], faces)
