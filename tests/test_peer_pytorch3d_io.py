"""PyTorch3D's reader tests, translated: facebookresearch/pytorch3d tests/test_io_obj.py and
tests/test_io_ply.py (class TestMeshObjIO / TestMeshPlyIO; each case names its test).

Where we differ on purpose, the case says so:

- an index outside its table is a ``ReadError`` (PyTorch3D warns and returns the index): the
  batch would later index another sample's rows;
- uv / normal indices are absent when no corner has one (PyTorch3D returns all -1); where only
  some corners have one, the others hold -1 as in PyTorch3D, also inside one face (PyTorch3D
  refuses ``f 2//1 3/1 4/1/2``: each corner is kept as written);
- ``vt u`` alone is read with v = 0, as the OBJ spec defaults it (PyTorch3D refuses);
- a polygon's triangles stay together in file order (PyTorch3D lists every polygon's first
  triangle, then every second one): the same triangles, and per-face fields repeat in runs;
- PLY colors keep their stored type (PyTorch3D divides uchar colors by 255).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from peer_io import FACE_LIST, OBJ_SPELLINGS, PLY_FORMATS, XYZ, equal, ply, read, refuse

SPELLINGS = sorted(OBJ_SPELLINGS)


def obj(lines: list[str], spelling: str) -> bytes:
    return OBJ_SPELLINGS[spelling]("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------- OBJ
VERTS4 = ["v 0.1 0.2 0.3", "v 0.2 0.3 0.4", "v 0.3 0.4 0.5", "v 0.4 0.5 0.6"]
EXPECTED4 = [[0.1, 0.2, 0.3], [0.2, 0.3, 0.4], [0.3, 0.4, 0.5], [0.4, 0.5, 0.6]]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_load_obj_simple(tmp_path, spelling):  # TestMeshObjIO.test_load_obj_simple
    lines = ["# this is a comment", *VERTS4[:3], "v  0.4 0.5 0.6", "f 1 2 3", "f 1 2 4 3 1"]
    sample = read(tmp_path, obj(lines, spelling))
    equal(sample["verts"], np.float32(EXPECTED4), np.float32)
    # the pentagon 1 2 4 3 1 is fanned around its first corner, repeated corner and all
    equal(sample["faces"], [[0, 1, 2], [0, 1, 3], [0, 3, 2], [0, 2, 0]], np.int64)
    # no corner has a uv or a normal: no such fields (PyTorch3D: all -1)
    assert set(sample) == {"verts", "faces"}


COMPLEX = [
    "# this is a comment",
    *VERTS4,
    "vn 0.000000 0.000000 -1.000000",
    "vn -1.000000 -0.000000 -0.000000",
    "vn -0.000000 -0.000000 1.000000",
    "v 0.5 0.6 0.7",
    "vt 0.749279 0.501284 0.0",
    "vt 0.999110 0.501077",
    "vt 0.999455 0.750380",
    "f 1 2 3",
    "f 1 2 4 3 5",
    "f 2/1/2 3/1/2 4/2/2",
    "f -1 -2 1",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_load_obj_complex(tmp_path, spelling):  # test_load_obj_complex, _complex_pluggable
    sample = read(tmp_path, obj(COMPLEX, spelling))
    equal(sample["verts"], np.float32([*EXPECTED4, [0.5, 0.6, 0.7]]))
    faces = [[0, 1, 2], [0, 1, 3], [0, 3, 2], [0, 2, 4], [1, 2, 3], [4, 3, 0]]
    equal(sample["faces"], faces)
    equal(sample["normals"], np.float32([[0, 0, -1], [-1, 0, 0], [0, 0, 1]]))
    # 'vt u v w': w is dropped, as PyTorch3D does
    equal(
        sample["uvs"],
        np.float32([[0.749279, 0.501284], [0.999110, 0.501077], [0.999455, 0.750380]]),
    )
    # only the third face has uvs / normals: -1 elsewhere, PyTorch3D's padding
    uv_index = np.full((6, 3), -1)
    uv_index[4] = [0, 0, 1]
    normal_index = np.full((6, 3), -1)
    normal_index[4] = [1, 1, 1]
    equal(sample["faces_uvs"], uv_index, np.int64)
    equal(sample["faces_normals"], normal_index, np.int64)


def test_load_obj_complex_as_ply_is_refused(tmp_path):  # test_load_obj_complex_pluggable
    refuse(tmp_path, "\n".join(COMPLEX), ".ply", "not a PLY file")


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_load_obj_normals_only(tmp_path, spelling):  # test_load_obj_normals_only
    lines = [*VERTS4, "vn 0.000000 0.000000 -1.000000", "vn -1.000000 -0.000000 -0.000000"]
    sample = read(tmp_path, obj([*lines, "f 2//1 3//1 4//2"], spelling))
    equal(sample["verts"], np.float32(EXPECTED4))
    equal(sample["faces"], [[1, 2, 3]])
    equal(sample["faces_normals"], [[0, 0, 1]])
    equal(sample["normals"], np.float32([[0, 0, -1], [-1, 0, 0]]))
    assert "uvs" not in sample and "faces_uvs" not in sample


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_load_obj_textures_only(tmp_path, spelling):  # test_load_obj_textures_only
    lines = [*VERTS4, "vt 0.999110 0.501077", "vt 0.999455 0.750380", "f 2/1 3/1 4/2"]
    sample = read(tmp_path, obj(lines, spelling))
    equal(sample["faces_uvs"], [[0, 0, 1]])
    equal(sample["uvs"], np.float32([[0.999110, 0.501077], [0.999455, 0.750380]]))
    assert "normals" not in sample and "faces_normals" not in sample


def test_load_obj_error_textures(tmp_path):  # test_load_obj_error_textures
    # PyTorch3D refuses 'vt 0.1'; the OBJ spec makes v default to 0, and so do we
    equal(read(tmp_path, "vt 0.1")["uvs"], np.float32([[0.1, 0.0]]))
    refuse(tmp_path, "vt 0.1 0.2 0.3 0.4\n", ".obj", "line 1", "'vt' line needs u [v [w]]")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("vn 0.1", "'vn' line needs x y z"),  # test_load_obj_error_normals
        ("v 1", "'v' line needs x y z"),  # test_load_obj_error_vertices
        ("v 0 0 0\nv 0 0 0\nf 2/1/1/3 1 2", "bad face corner"),  # _too_many_vertex_properties
        ("v 0 0 0\nvn", "'vn' line needs x y z"),
    ],
)
@pytest.mark.parametrize("spelling", ["lf", "crlf", "no_final_newline"])
def test_load_obj_errors(tmp_path, text, fragment, spelling):
    refuse(tmp_path, OBJ_SPELLINGS[spelling](text), ".obj", fragment)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_load_obj_error_inconsistent_triplets(tmp_path, spelling):
    # PyTorch3D refuses a face whose corners differ in format; we keep each corner as written
    lines = [*VERTS4, "vt 0 0", "vn 0 0 1", "vn 1 0 0", "f 2//1 3/1 4/1/2"]
    sample = read(tmp_path, obj(lines, spelling))
    equal(sample["faces"], [[1, 2, 3]])
    equal(sample["faces_uvs"], [[-1, 0, 0]])
    equal(sample["faces_normals"], [[0, -1, 1]])


THREE = ["v 0.1 0.2 0.3"] * 3


@pytest.mark.parametrize(
    "lines, fragment",
    [
        ([*THREE, "f -2 5 1"], "vertex index 5 is out of range for 3"),
        ([*THREE, "f -4 1 2"], "vertex index -4 is out of range"),
        ([*THREE, "vn 0.1 0.2 0.3", "f 1//1 2//2 3//1"], "normal index 2 is out of range for 1"),
        ([*THREE, "vt 0.1 0.2", "f 1/1 2/-2 3/1"], "uv index -2 is out of range for 1"),
    ],
)
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_load_obj_error_invalid_indices(tmp_path, lines, fragment, spelling):
    # test_load_obj_error_invalid_{vertex,normal,texture}_indices: PyTorch3D warns, we refuse
    error = refuse(tmp_path, obj(lines, spelling), ".obj", fragment)
    assert error.where.startswith("line ")  # the face's line


@pytest.mark.parametrize(
    "face, table",
    [("f -2/2 2/4 1/1", "vn 0.1 0.2 0.3"), ("f -2//2 2//6 1//1", "vt 0.1 0.2")],
)
def test_indices_into_a_table_the_file_lacks(tmp_path, face, table):
    # test_load_obj_error_invalid_normal_indices / _texture_indices name uv (normal) lines the
    # file does not have at all: those corners carry nothing, the geometry is exact
    sample = read(tmp_path, "\n".join([*THREE, table, table, table, face]))
    equal(sample["faces"], [[1, 1, 0]])
    assert "faces_uvs" not in sample and "faces_normals" not in sample


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_load_mtl_fail(tmp_path, spelling):  # test_load_mtl_fail: usemtl without an mtl file
    sample = read(tmp_path, obj([*VERTS4, "usemtl material_1", "f 1 2 3", "f 1 2 4"], spelling))
    equal(sample["verts"], np.float32(EXPECTED4))
    equal(sample["faces"], [[0, 1, 2], [0, 1, 3]])
    assert set(sample) == {"verts", "faces"}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_save_obj_output_reads_back(tmp_path, spelling):  # test_save_obj's expected file
    lines = ["v 0.01 0.20 0.30", "v 0.20 0.03 0.41", "v 0.30 0.40 0.05", "v 0.60 0.70 0.80"]
    sample = read(tmp_path, obj([*lines, "f 1 3 2", "f 1 2 3", "f 4 3 2", "f 4 2 1"], spelling))
    equal(sample["faces"], [[0, 2, 1], [0, 1, 2], [3, 2, 1], [3, 1, 0]])
    equal(sample["verts"][1], np.float32([0.2, 0.03, 0.41]))


def test_empty_save_load_obj(tmp_path):  # test_empty_save_load_obj: vertices, no faces
    sample = read(tmp_path, "v 0.1 0.2 0.3\n")
    equal(sample["verts"], np.float32([[0.1, 0.2, 0.3]]))
    assert "faces" not in sample


def test_obj_files_from_pytorch3d(shared_meshes):  # test_load_mtl, test_load_obj_missing_*
    root = shared_meshes / "facebookresearch__pytorch3d"
    from hetload.io import load

    cow = load(root / "docs/tutorials/data/cow_mesh/cow.obj")
    assert cow["verts"].shape == (2930, 3) and cow["faces"].shape == (5856, 3)
    assert cow["faces_uvs"].shape == cow["faces"].shape and cow["faces_uvs"].min() >= 0
    model = load(root / "tests/data/missing_files_obj/model.obj")
    equal(model["verts"], np.float32(EXPECTED4))
    equal(model["faces"], [[0, 1, 2], [0, 1, 3]])


# ------------------------------------------------------------------------------------- PLY
CUBE_VERTS = [
    [0, 0, 0],
    [0, 0, 1],
    [0, 1, 1],
    [0, 1, 0],
    [1, 0, 0],
    [1, 0, 1],
    [1, 1, 1],
    [1, 1, 0],
]
CUBE_QUADS = [[0, 1, 2, 3], [7, 6, 5, 4], [0, 4, 5, 1], [1, 5, 6, 2], [2, 6, 7, 3], [3, 7, 4, 0]]
# PyTorch3D's CUBE_FACES lists every quad's first triangle, then every second one
PYTORCH3D_CUBE_FACES = [[q[0], q[1], q[2]] for q in CUBE_QUADS] + [
    [q[0], q[2], q[3]] for q in CUBE_QUADS
]
OUR_CUBE_FACES = [t for q in CUBE_QUADS for t in ([q[0], q[1], q[2]], [q[0], q[2], q[3]])]
CUBE_HEADER = ["element vertex 8", *XYZ, "element face 6", "property list uchar int vertex_index"]
NEWLINES = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}


def cube(fmt: str, newline: str = "\n", quads=CUBE_QUADS, extra_header=(), extra_rows=()) -> bytes:
    rows = [[[*v] for v in CUBE_VERTS], [[q] for q in quads], *extra_rows]
    comments = ["made by Greg Turk", "this is a cube"]
    return ply(fmt, [*CUBE_HEADER, *extra_header], rows, comments, newline)


@pytest.mark.parametrize("newline", sorted(NEWLINES))
@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_load_simple_ascii(tmp_path, fmt, newline):  # test_load_simple_ascii (+ binary)
    sample = read(tmp_path, cube(fmt, NEWLINES[newline]), ".ply")
    equal(sample["verts"], np.float32(CUBE_VERTS), np.float32)
    equal(sample["faces"], OUR_CUBE_FACES, np.int64)
    assert sorted(map(tuple, sample["faces"])) == sorted(map(tuple, PYTORCH3D_CUBE_FACES))


@pytest.mark.parametrize("newline", sorted(NEWLINES))
@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_raw_load_simple_ascii(tmp_path, fmt, newline):  # test_raw_load_simple_ascii
    data = cube(
        fmt,
        NEWLINES[newline],
        extra_header=["element irregular_list 3", "property list uchar int vertex_index"],
        extra_rows=[[[[0, 1, 2, 3]], [[7, 6, 5, 4]], [[4, 5, 1]]]],
    )
    sample = read(tmp_path, data, ".ply", polygons=True)
    equal(sample["polygons"], np.ravel(CUBE_QUADS))
    equal(sample["polygon_sizes"], [4] * 6)
    equal(sample["irregular_list_vertex_index"], [0, 1, 2, 3, 7, 6, 5, 4, 4, 5, 1])
    equal(sample["irregular_list_vertex_index_sizes"], [4, 4, 3])


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_heterogenous_verts_per_face(tmp_path, fmt):  # test_heterogenous_verts_per_face
    quads = [*CUBE_QUADS[:-1], [3, 7, 4, 0, 1]]
    sample = read(tmp_path, cube(fmt, quads=quads), ".ply")
    assert sample["verts"].shape == (8, 3) and sample["faces"].shape == (13, 3)
    equal(sample["faces"][-3:], [[3, 7, 4], [3, 4, 0], [3, 0, 1]])


def test_heterogeneous_property(tmp_path):  # test_heterogeneous_property
    ascii_rows = "".join(" ".join(map(str, v)) + "\n" for v in CUBE_VERTS)
    header = "ply\nformat ascii 1.0\nelement vertex 8\nproperty float x\nproperty int y\n"
    ascii_file = header + "property int z\nend_header\n" + ascii_rows
    binary_header = (
        "ply\nformat binary_little_endian 1.0\nelement vertex 8\nproperty uchar x\n"
        "property char y\nproperty char z\nend_header\n"
    )
    binary_file = binary_header.encode() + bytes(np.ravel(CUBE_VERTS).tolist())
    for data in (ascii_file, binary_file):
        equal(read(tmp_path, data, ".ply")["verts"], np.float32(CUBE_VERTS), np.float32)
    # as stored: uchar and char coordinates are exact in float32
    assert read(tmp_path, binary_file, ".ply", dtype=None)["verts"].dtype == np.float32


@pytest.mark.parametrize("order", "<>")
def test_load_cloudcompare_pointcloud(tmp_path, order):  # test_load_cloudcompare_pointcloud
    fmt = {"<": "binary_little_endian", ">": "binary_big_endian"}[order]
    header = [
        "ply", f"format {fmt} 1.0", "obj_info Not a key-value pair!", "element vertex 8",
        "property double x", "property double y", "property double z", "property uchar red",
        "property uchar green", "property uchar blue", "property float my_Favorite", "end_header",
    ]  # fmt: skip
    data = ("\n".join(header) + "\n").encode() + struct.pack(order + "dddBBBf" * 8, *range(56))
    sample = read(tmp_path, data, ".ply")
    rows = 7 * np.arange(8)[:, None]
    equal(sample["verts"], np.float32(np.arange(3) + rows))
    equal(sample["colors"], np.uint8(3 + np.arange(3) + rows), np.uint8)  # PyTorch3D: / 255
    equal(sample["my_Favorite"], np.float32(6 + rows[:, 0]), np.float32)
    as_stored = read(tmp_path, data, ".ply", dtype=None)
    assert as_stored["verts"].dtype == np.float64


@pytest.mark.parametrize("order", "<>")
def test_load_open3d_mesh(tmp_path, order):  # test_load_open3d_mesh (issue #1104 header)
    fmt = {"<": "binary_little_endian", ">": "binary_big_endian"}[order]
    header = [
        "ply", f"format {fmt} 1.0", "comment Created by Open3D", "element vertex 3",
        "property double x", "property double y", "property double z", "property double nx",
        "property double ny", "property double nz", "property uchar red",
        "property uchar green", "property uchar blue", "element face 1",
        "property list uchar uint vertex_indices", "end_header",
    ]  # fmt: skip
    body = struct.pack(order + "ddddddBBB" * 3, *range(27)) + struct.pack(
        order + "BIII", 3, 0, 1, 2
    )
    sample = read(tmp_path, ("\n".join(header) + "\n").encode() + body, ".ply")
    rows = 9 * np.arange(3)[:, None]
    equal(sample["faces"], [[0, 1, 2]])
    equal(sample["verts"], np.float32(np.arange(3) + rows))
    equal(sample["normals"], np.float32(3 + np.arange(3) + rows))
    equal(sample["colors"], np.uint8(6 + np.arange(3) + rows))


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_save_pointcloud_float_colors(tmp_path, fmt):  # test_save_pointcloud's expected file
    header = ["element vertex 8", *XYZ, "property float red", "property float green"]
    rows = np.arange(48, dtype=float).reshape(8, 6)
    data = ply(fmt, [*header, "property float blue"], [rows.tolist()])
    sample = read(tmp_path, data, ".ply")
    equal(sample["verts"], np.float32(rows[:, :3]))
    equal(sample["colors"], np.float32(rows[:, 3:]), np.float32)  # float colors: `dtype`


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_load_pointcloud_bad_order(tmp_path, fmt):  # test_load_pointcloud_bad_order
    header = ["element vertex 1", "property uchar green", "property float x", "property float z"]
    header += ["property uchar red", "property float y", "property uchar blue"]
    sample = read(tmp_path, ply(fmt, header, [[[1, 2.0, 3.0, 4, 5.0, 6]]]), ".ply")
    equal(sample["verts"], np.float32([[2, 5, 3]]))
    equal(sample["colors"], np.uint8([[4, 1, 6]]))


@pytest.mark.parametrize("big_endian", [True, False])
def test_load_simple_binary(tmp_path, big_endian):  # test_load_simple_binary
    order = ">" if big_endian else "<"
    verts = [float(c) for v in CUBE_VERTS for c in v]
    faces = [4, *CUBE_QUADS[0], 4, *CUBE_QUADS[1], 4, *CUBE_QUADS[2], 4, *CUBE_QUADS[3]]
    faces += [4, *CUBE_QUADS[4], 4, *CUBE_QUADS[5], 4, 0, 1, 2, 3, 4, 7, 6, 5, 4, 3, 4, 5, 1]
    short_one = b"\x00\x01" if big_endian else b"\x01\x00"
    header = [
        "ply", f"format binary_{'big' if big_endian else 'little'}_endian 1.0",
        "element vertex 8", "property float x", "property float32 y", "property float z",
        "element vertex1 8", "property float x", "property double y", "property float z",
        "element face 6", "property list uchar uchar vertex_index",
        "element irregular_list 3", "property list uchar uchar vertex_index",
        "element mixed 2", "property list short uint foo", "property short bar",
        "element minus_ones 1", "property char 1", "property uchar 2", "property short 3",
        "property ushort 4", "property int 5", "property uint 6", "end_header",
    ]  # fmt: skip
    data = b"".join(
        [
            ("\n".join(header) + "\n").encode(),
            struct.pack(order + "24f", *verts),
            struct.pack(order + "fdf" * 8, *verts),
            struct.pack(order + "44b", *faces),
            b"\x00\x00\x03\x03" + short_one + b"\x00\x01\x01\x01\x00\x02",
            b"\xff" * 14,
        ]
    )
    sample = read(tmp_path, data, ".ply")
    equal(sample["verts"], np.float32(CUBE_VERTS))
    equal(sample["faces"], OUR_CUBE_FACES)
    for axis, name in enumerate("xyz"):
        equal(sample[f"vertex1_{name}"], np.float32(CUBE_VERTS)[:, axis])
    assert sample["vertex1_y"].dtype == np.float64  # extra properties keep their type
    equal(sample["irregular_list_vertex_index"], [0, 1, 2, 3, 7, 6, 5, 4, 4, 5, 1])
    # row 0: an empty list, bar = 0x0303; row 1: one uint (0x00010101 read either way), bar 2
    equal(sample["mixed_foo_sizes"], [0, 1])
    base = 1 + 256 + 256 * 256
    equal(sample["mixed_foo"], [base if big_endian else 256 * base])
    equal(sample["mixed_bar"], [3 * 256 + 3, 2 if big_endian else 2 * 256])
    minus_ones = [sample[f"minus_ones_{k}"][0] for k in "123456"]
    assert minus_ones == [-1, 255, -1, 65535, -1, 4294967295]


def test_load_uvs(shared_meshes):  # test_load_uvs (tests/data/uvs.ply)
    from hetload.io import load

    sample = load(shared_meshes / "facebookresearch__pytorch3d/tests/data/uvs.ply")
    equal(sample["uvs"], np.float32([[0, 0]] + [[0.2, 0.3]] * 6 + [[0.4, 0.5]]))
    assert sample["faces"].shape == (12, 3) and "faces_uvs" not in sample  # per vertex


# test_bad_ply_syntax: its file, then one change per case; None = it loads
BAD_SYNTAX = [
    "ply", "format ascii 1.0", "comment dashfadskfj;k", "element vertex 1", "property float x",
    "property float y", "property float z", "element listy 1", "property list uint int x",
    "end_header", "0 0 0", "0",
]  # fmt: skip


def _bad(change) -> str:
    lines = BAD_SYNTAX.copy()
    change(lines)
    return "\n".join(lines)


BAD_SYNTAX_CASES = {
    "good": (lambda lines: None, None),
    "PLY": (lambda lines: lines.__setitem__(0, "PLY"), "does not start with a 'ply'"),
    "hash_comment": (lambda lines: lines.__setitem__(2, "#this is a comment"), "'#this'"),
    "property_first": (
        lambda lines: lines.__setitem__(slice(3, 5), [lines[4], lines[3]]),
        "a property before any element",
    ),
    "short_row": (lambda lines: lines.__setitem__(10, "1 2"), "fewer values"),
    "missing_row": (lambda lines: lines.pop(), "lines remain"),
    "two_rows_declared": (lambda lines: lines.__setitem__(7, "element listy 2"), "lines remain"),
    "property_twice": (lambda lines: lines.insert(5, "property short x"), "declared twice"),
    "bad_type": (lambda lines: lines.insert(5, "property zz short"), "bad property line"),
    "extra_line": (lambda lines: lines.append("3"), "follow the last element"),
    "extra_comment": (lambda lines: lines.append("comment foo"), "follow the last element"),
    "list_ok": (lambda lines: lines.__setitem__(-1, "3 2 3 3"), None),
    "list_too_long": (lambda lines: lines.__setitem__(-1, "3 1 2 3 4"), "has 5 values"),
    "count_word": (lambda lines: lines.__setitem__(3, "element vertex one"), "bad element line"),
    "too_many_values": (lambda lines: lines.__setitem__(10, "0 0 0 1"), "has 4 values"),
    "fraction_count": (lambda lines: lines.__setitem__(-1, "2.5 1 2"), "not a valid uint32"),
    "two_corner_face": (
        lambda lines: lines.__setitem__(slice(7, 9), ["element face 1", FACE_LIST]),
        "a face needs at least 3",
    ),
}
BAD_SYNTAX_CASES["two_corner_face"] = (
    lambda lines: (
        lines.__setitem__(slice(7, 9), ["element face 1", FACE_LIST]),
        lines.__setitem__(-1, "2 0 0"),
    ),
    "a face needs at least 3",
)
BAD_SYNTAX_CASES["good_face"] = (
    lambda lines: (
        lines.__setitem__(slice(7, 9), ["element face 1", FACE_LIST]),
        lines.__setitem__(-1, "3 0 0 0"),
    ),
    None,
)


@pytest.mark.parametrize("case", sorted(BAD_SYNTAX_CASES))
def test_bad_ply_syntax(tmp_path, case):
    change, fragment = BAD_SYNTAX_CASES[case]
    data = _bad(change)
    if fragment is None:
        sample = read(tmp_path, data, ".ply")
        equal(sample["verts"], np.float32([[0, 0, 0]]))
    else:
        refuse(tmp_path, data, ".ply", fragment)


def test_bad_ply_syntax_vertex_without_xyz(tmp_path):  # test_bad_ply_syntax "Invalid vertices"
    data = "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n"
    refuse(tmp_path, data, ".ply", "no x, y, z")
