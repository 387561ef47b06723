"""python-plyfile's reader tests, translated: dranjan/python-plyfile test/test_plyfile.py (each
case names its test).

plyfile returns elements and properties as written; we return a sample, so a case checks the
sample's fields: ``verts`` / ``faces`` / ``face_colors`` for the tetrahedron, and
``<element>_<property>`` (stored dtype kept) for plyfile's ``test`` elements. plyfile's errors
name the row and property; ours name the element, row or line, and the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
from peer_io import PLY_FORMATS, equal, ply, read, refuse

TYPES = {
    "i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
    "i4": "int", "u4": "uint", "f4": "float", "f8": "double",
}  # fmt: skip
TET_VERTS = [[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]]
TET_FACES = [[0, 1, 2], [0, 2, 3], [0, 1, 3], [1, 2, 3]]
TET_COLORS = [[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
TET_HEADER = [
    "element vertex 4", "comment tetrahedron vertices", "property float x", "property float y",
    "property float z", "element face 4", "property list uchar int vertex_indices",
    "property uchar red", "property uchar green", "property uchar blue",
]  # fmt: skip

# plyfile's tet_ply_ascii, byte for byte
TET_ASCII = (
    b"ply\nformat ascii 1.0\ncomment single tetrahedron with colored faces\nelement vertex 4\n"
    b"comment tetrahedron vertices\nproperty float x\nproperty float y\nproperty float z\n"
    b"element face 4\nproperty list uchar int vertex_indices\nproperty uchar red\n"
    b"property uchar green\nproperty uchar blue\nend_header\n0 0 0\n0 1 1\n1 0 1\n1 1 0\n"
    b"3 0 1 2 255 255 255\n3 0 2 3 255 0 0\n3 0 1 3 0 255 0\n3 1 2 3 0 0 255\n"
)


def tet(fmt: str, newline: str = "\n") -> bytes:
    rows = [TET_VERTS, [[f, *c] for f, c in zip(TET_FACES, TET_COLORS)]]
    return ply(fmt, TET_HEADER, rows, ["single tetrahedron with colored faces"], newline)


def check_tet(sample: dict) -> None:
    equal(sample["verts"], np.float32(TET_VERTS), np.float32)
    equal(sample["faces"], TET_FACES, np.int64)
    equal(sample["face_colors"], np.uint8(TET_COLORS), np.uint8)


def test_ascii(tmp_path):  # test_ascii: plyfile's own text
    assert tet("ascii") == TET_ASCII
    check_tet(read(tmp_path, TET_ASCII, ".ply"))


@pytest.mark.parametrize("newline", ["\n", "\r", "\r\n"])
@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_newlines_binary(tmp_path, fmt, newline):  # test_newlines_binary, test_write_read
    check_tet(read(tmp_path, tet(fmt, newline), ".ply"))


@pytest.mark.parametrize("fmt", PLY_FORMATS)
@pytest.mark.parametrize("np_type", sorted(TYPES))
def test_property_type(tmp_path, np_type, fmt):  # test_property_type
    header = ["element test 2", *(f"property {TYPES[np_type]} {c}" for c in "xyz")]
    sample = read(tmp_path, ply(fmt, header, [[[1, 2, 3], [4, 5, 6]]]), ".ply")
    for name, column in zip("xyz", ([1, 4], [2, 5], [3, 6])):
        equal(sample[f"test_{name}"], column, np_type)
    equal(sample["verts"], np.zeros((0, 3)))  # no vertex element


@pytest.mark.parametrize("fmt", PLY_FORMATS)
@pytest.mark.parametrize("np_type", sorted(TYPES))
def test_list_property_type(tmp_path, np_type, fmt):  # test_list_property_type
    header = ["element test 2", f"property list uchar {TYPES[np_type]} x"]
    sample = read(tmp_path, ply(fmt, header, [[[[0]], [[1, 2, 3]]]]), ".ply")
    equal(sample["test_x"], [0, 1, 2, 3], np_type)
    equal(sample["test_x_sizes"], [1, 3], np.int64)


@pytest.mark.parametrize("fmt", PLY_FORMATS)
@pytest.mark.parametrize("len_type", ["i1", "u1", "i2", "u2", "i4", "u4"])
def test_list_property_len_type(tmp_path, len_type, fmt):  # test_list_property_len_type
    header = ["element test 2", f"property list {TYPES[len_type]} int x"]
    sample = read(tmp_path, ply(fmt, header, [[[[0]], [[1, 2, 3]]]]), ".ply")
    equal(sample["test_x"], [0, 1, 2, 3], np.int32)
    equal(sample["test_x_sizes"], [1, 3])


def _abc(fmt: str, n: int, data: bytes) -> bytes:
    head = f"ply\nformat {fmt} 1.0\nelement test {n}\nproperty uchar a\nproperty uchar b\n"
    head += " property uchar c\nend_header\n"  # plyfile's own leading space
    return head.encode() + data + (b"\n" if fmt == "ascii" else b"")


def _list_a(fmt: str, n: int, data: bytes) -> bytes:
    head = f"ply\nformat {fmt} 1.0\nelement test {n}\nproperty list uchar int a\nend_header\n"
    return head.encode() + data + (b"\n" if fmt == "ascii" else b"")


LE = "binary_little_endian"
INVALID = [  # test_invalid: plyfile's file, and what our message says
    (_abc("ascii", 1, b"1 2 3.3"), "property 'c': 3.3 is not a valid uint8"),
    (_list_a("ascii", 1, b""), "only 0 lines remain"),
    (_list_a("ascii", 1, b"3 2 3"), "fewer values than its properties take"),
    (_abc("ascii", 1, b"1 2 3 4"), "has 4 values, its properties take 3"),
    (_abc("ascii", 1, b"1"), "fewer values than its properties take"),
    (_abc("ascii", 2, b"1 2 3"), "only 1 lines remain"),
    (_abc(LE, 1, b"\x01\x02"), "truncated"),
    (_list_a(LE, 1, b""), "truncated"),
    (_list_a(LE, 1, b"\x03\x01\x00\x00\x00\x02\x00\x00\x00"), "truncated"),
    (_list_a(LE, 1, b"\x01\x02"), "truncated"),
    (_abc(LE, 2, b"\x01\x02\x03"), "truncated"),
]


@pytest.mark.parametrize("data, fragment", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid(tmp_path, data, fragment):
    error = refuse(tmp_path, data, ".ply", fragment)
    assert "test" in str(error) or error.where.startswith("line")


INVALID_HEADERS = [  # test_header_parse_error: (file, plyfile's line); ours names it too
    (b"plyy\n", None),
    (b"ply xxx\n", None),
    (b"ply\n\n", None),
    (b"ply\nformat\n", None),
    (b"ply\nelement vertex 0\n", None),
    (b"ply\nformat asciii 1.0\nend_header\n", 2),
    (b"ply\nformat ascii 2.0\nend_header\n", 2),
    (b"ply\nformat ascii 1.0\n", None),
    (b"ply\nformat ascii 1.0\nelement vertex\nend_header\n", 3),
    (b"ply\nformat ascii 1.0\nelement vertex x\nend_header\n", 3),
    (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float\nend_header\n", 4),
    (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty list float\nend_header\n", 4),
    (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty floatt x\nend_header\n", 4),
    (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x y\nend_header\n", 4),
    (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty list ucharr int extra\nend_header\n", 4),
    (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nend_header xxx\n", None),
]


@pytest.mark.parametrize(
    "data, line", INVALID_HEADERS, ids=[str(i) for i in range(len(INVALID_HEADERS))]
)
def test_header_parse_error(tmp_path, data, line):
    error = refuse(tmp_path, data, ".ply")
    if line is not None:
        assert error.where == f"header line {line}", error


def test_element_order(tmp_path):  # test_reorder_elements: faces before vertices
    header = [*TET_HEADER[5:], *TET_HEADER[:5]]
    rows = [[[f, *c] for f, c in zip(TET_FACES, TET_COLORS)], TET_VERTS]
    for fmt in PLY_FORMATS:
        check_tet(read(tmp_path, ply(fmt, header, rows), ".ply"))


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_memmap_elements_around_the_vertices(tmp_path, fmt):  # test_memmap
    face = ["property list uchar int vertex_indices", "property uchar red"]
    header = ["element face0 4", *face, *TET_HEADER[:5], "element face1 4", *face]
    faces = [[f, c[0]] for f, c in zip(TET_FACES, TET_COLORS)]
    sample = read(tmp_path, ply(fmt, header, [faces, TET_VERTS, faces]), ".ply")
    equal(sample["verts"], np.float32(TET_VERTS))
    for name in ("face0", "face1"):
        equal(sample[f"{name}_vertex_indices"], np.ravel(TET_FACES), np.int32)
        equal(sample[f"{name}_red"], [255, 255, 0, 0], np.uint8)
    assert "faces" not in sample  # only an element named 'face' holds faces


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_remove_property(tmp_path, fmt):  # test_remove_property
    header = [*TET_HEADER[:5], "element face 4", "property list uchar int vertex_indices"]
    sample = read(tmp_path, ply(fmt, header, [TET_VERTS, [[f] for f in TET_FACES]]), ".ply")
    equal(sample["faces"], TET_FACES)
    assert set(sample) == {"verts", "faces"}


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_cast_property(tmp_path, fmt):  # test_cast_property: x f8, z u1, list length i4
    header = [
        "element vertex 4", "property double x", "property float y", "property uchar z",
        "element face 4", "property list int int vertex_indices",
        "property uchar red", "property uchar green", "property uchar blue",
    ]  # fmt: skip
    rows = [TET_VERTS, [[f, *c] for f, c in zip(TET_FACES, TET_COLORS)]]
    data = ply(fmt, header, rows)
    check_tet(read(tmp_path, data, ".ply"))
    assert read(tmp_path, data, ".ply", dtype=None)["verts"].dtype == np.float64


@pytest.mark.parametrize(
    "line", ["comment   test comment", "obj_info test obj_info", "comment", "obj_info"]
)
def test_comments_and_obj_info(tmp_path, line):  # test_comment_spaces, test_obj_info
    sample = read(tmp_path, f"ply\nformat ascii 1.0\n{line}\nend_header\n", ".ply")
    equal(sample["verts"], np.zeros((0, 3)))


def test_assign_elements_duplicate(tmp_path):  # test_assign_elements_duplicate
    data = TET_ASCII.replace(b"element face 4", b"element vertex 4")
    refuse(tmp_path, data, ".ply", "element 'vertex' is declared twice", "header line 9")


def test_assign_properties_duplicate(tmp_path):  # test_assign_properties_duplicate
    data = TET_ASCII.replace(b"property float y", b"property float x")
    refuse(tmp_path, data, ".ply", "property 'x' is declared twice")
