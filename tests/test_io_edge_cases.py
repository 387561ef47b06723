"""Hand-written OBJ / PLY files, one per edge case: each loads exactly or raises ReadError."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest

from hetload.io import ReadError, load, scan

HEADER = "ply\nformat {fmt} 1.0\n{elements}end_header\n"
XYZ = "element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
FACE = "element face {n}\nproperty list uchar int vertex_indices\n"


def write(tmp_path, name: str, data: bytes | str):
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def ply_header(fmt: str, n_verts: int, n_faces: int | None = None) -> bytes:
    elements = XYZ.format(n=n_verts) + ("" if n_faces is None else FACE.format(n=n_faces))
    return HEADER.format(fmt=fmt, elements=elements).encode()


def raises(path, *fragments: str, **options) -> ReadError:
    with pytest.raises(ReadError) as info:
        load(path, **options)
    message = str(info.value)
    assert str(path) in message and info.value.path == str(path)
    for fragment in fragments:
        assert fragment in message, message
    return info.value


# ------------------------------------------------------------------------------ empty / garbage
@pytest.mark.parametrize("name", ["empty.obj", "empty.ply", "blank.obj"])
def test_empty_files(tmp_path, name):
    path = write(tmp_path, name, "  \n" if name == "blank.obj" else b"")
    raises(path, "empty")


def test_missing_file_is_a_read_error(tmp_path):
    raises(tmp_path / "nope.ply", "cannot read")


def test_binary_garbage_named_obj(tmp_path):
    raises(write(tmp_path, "x.obj", b"\x89PNG\r\n\x1a\n\x00\x00"), "NUL")


def test_not_a_ply(tmp_path):
    raises(write(tmp_path, "x.ply", "solid cube\nfacet\n"), "does not start with a 'ply'")


def test_ply_without_end_header(tmp_path):
    raises(write(tmp_path, "x.ply", "ply\nformat ascii 1.0\nelement vertex 1\n"), "end_header")


def test_ply_unknown_property_type(tmp_path):
    data = "ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n1\n"
    raises(write(tmp_path, "x.ply", data), "header line 4", "float128")


# ------------------------------------------------------------------------------- sizes & bounds
def test_truncated_binary_ply_names_element_and_offset(tmp_path):
    verts = struct.pack("<9f", *range(9))
    faces = struct.pack("<B3i", 3, 0, 1, 2) * 3
    path = write(tmp_path, "t.ply", ply_header("binary_little_endian", 3, 912) + verts + faces)
    error = raises(path, "element 'face'", "byte")
    assert "truncated" in error.reason


def test_truncated_mixed_arity_binary_ply(tmp_path):
    verts = struct.pack("<12f", *range(12))
    faces = struct.pack("<B3i", 3, 0, 1, 2) + struct.pack("<B4i", 4, 0, 1, 2, 3)
    path = write(tmp_path, "t.ply", ply_header("binary_little_endian", 4, 3) + verts + faces)
    raises(path, "element 'face'", "row 2 of 3", "truncated")


def test_huge_declared_count_does_not_allocate(tmp_path):
    header = ply_header("binary_little_endian", 4_000_000_000, 4_000_000_000)
    path = write(tmp_path, "huge.ply", header + b"\0" * 12)
    tracemalloc.start()
    raises(path, "element 'vertex'", "truncated")
    with pytest.raises(ReadError):
        scan(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 * 2**20


def test_huge_declared_count_ascii(tmp_path):
    path = write(tmp_path, "huge.ply", ply_header("ascii", 10**12) + b"0 0 0\n")
    raises(path, "element 'vertex'", "declares 1000000000000 rows")


def test_ascii_row_with_too_few_values(tmp_path):
    path = write(tmp_path, "short.ply", ply_header("ascii", 2) + b"0 0 0\n1 1\n")
    raises(path, "line 9", "fewer values")


def test_ascii_value_out_of_range_for_its_type(tmp_path):
    data = ply_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n300 0 1 2\n"
    raises(write(tmp_path, "x.ply", data), "line 13", "not a valid uint8")


def test_ascii_token_that_is_not_a_number(tmp_path):
    data = ply_header("ascii", 2) + b"0 0 0\n1 x 0\n"
    raises(write(tmp_path, "x.ply", data), "line 9", "'x' is not a number")


def test_ply_face_index_out_of_range(tmp_path):
    data = ply_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n"
    raises(write(tmp_path, "x.ply", data), "element 'face'", "vertex 3, outside [0, 3)")


def test_ply_negative_face_index(tmp_path):
    verts = struct.pack("<9f", *range(9))
    faces = struct.pack("<B3i", 3, 0, -1, 2)
    path = write(tmp_path, "x.ply", ply_header("binary_little_endian", 3, 1) + verts + faces)
    raises(path, "vertex -1")


def test_obj_face_index_out_of_range_names_the_line(tmp_path):
    data = "v 0 0 0\nv 1 0 0\nv 0 1 0\n# c\nf 1 2 3\nf 1 2 9\n"
    raises(write(tmp_path, "x.obj", data), "line 6", "vertex index 9 is out of range")


def test_obj_zero_index(tmp_path):
    raises(write(tmp_path, "x.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n"), "start at 1")


def test_obj_vertex_with_wrong_width(tmp_path):
    data = "v 0 0 0\nv 1 0 0 1 1\n"
    raises(write(tmp_path, "x.obj", data), "line 2", "got 5 values")


# ------------------------------------------------------------------------------ nan / inf
def test_obj_nan_tokens(tmp_path):
    path = write(tmp_path, "x.obj", "v 0 0 0\nv nan 1 2\nv inf -inf 0\nf 1 2 3\n")
    raises(path, "line 2", "not finite")
    sample = load(path, allow_nonfinite=True)
    assert np.isnan(sample["verts"][1, 0]) and np.isinf(sample["verts"][2]).sum() == 2


def test_ply_nan_binary(tmp_path):
    verts = struct.pack("<6f", 0, 0, 0, 1, float("nan"), 0)
    path = write(tmp_path, "x.ply", ply_header("binary_little_endian", 2) + verts)
    raises(path, "element 'vertex' row 1", "not finite")


# ------------------------------------------------------------------------------- PLY encodings
def test_cr_only_header_with_binary_body_starting_with_newline_byte(tmp_path):
    # the first float's first byte is 0x0A: a reader that skips '\r\n' after end_header breaks
    first = struct.unpack("<f", b"\n\0\0\x3f")[0]
    verts = struct.pack("<3f", first, 2.0, 3.0)
    header = ply_header("binary_little_endian", 1).replace(b"\n", b"\r")
    sample = load(write(tmp_path, "cr.ply", header + verts))
    np.testing.assert_array_equal(sample["verts"], [[first, 2.0, 3.0]])


def test_crlf_ascii_ply(tmp_path):
    data = (ply_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 2").replace(b"\n", b"\r\n")
    sample = load(write(tmp_path, "x.ply", data))
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2]])


def test_big_endian_mixed_arity_with_extra_properties(tmp_path):
    header = (
        b"ply\nformat binary_big_endian 1.0\n"
        b"element vertex 5\nproperty double x\nproperty double y\nproperty double z\n"
        b"property ushort label\n"
        b"element face 2\nproperty list ushort uint vertex_indices\nproperty float quality\n"
        b"end_header\n"
    )
    verts = b"".join(struct.pack(">3dH", i, 2 * i, 3 * i, 10 + i) for i in range(5))
    faces = struct.pack(">H4If", 4, 0, 1, 2, 3, 0.5) + struct.pack(">H3If", 3, 1, 3, 4, 0.25)
    sample = load(write(tmp_path, "be.ply", header + verts + faces), dtype=np.float64)
    np.testing.assert_array_equal(sample["verts"][:, 1], [0, 2, 4, 6, 8])
    # 'label' is the per-sample class field, so the per-vertex property keeps its element prefix
    np.testing.assert_array_equal(sample["vertex_label"], [10, 11, 12, 13, 14])
    assert sample["vertex_label"].dtype == np.uint16
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2], [0, 2, 3], [1, 3, 4]])
    # per-face properties follow the triangles they came from
    np.testing.assert_array_equal(sample["face_quality"], np.float32([0.5, 0.5, 0.25]))


def test_tristrips(tmp_path):
    header = (
        b"ply\nformat ascii 1.0\n" + XYZ.format(n=6).encode() + b"element tristrips 1\n"
        b"property list int int vertex_indices\nend_header\n"
    )
    verts = b"".join(b"%d 0 0\n" % i for i in range(6))
    strips = b"8 0 1 2 3 -1 3 4 5\n"
    sample = load(write(tmp_path, "s.ply", header + verts + strips))
    # alternating winding; the second strip restarts after -1
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2], [2, 1, 3], [3, 4, 5]])
    assert scan(tmp_path / "s.ply").n_faces == 1


def test_point_cloud_ply_has_no_faces(tmp_path):
    data = ply_header("ascii", 2, 0) + b"0 0 0\n1 1 1\n"
    sample = load(write(tmp_path, "p.ply", data))
    assert set(sample) == {"verts"} and sample["verts"].shape == (2, 3)


def test_ply_extra_elements_and_list_properties(tmp_path):
    data = (
        ply_header("ascii", 1)[: -len(b"end_header\n")]
        + b"element edge 2\nproperty int vertex1\nproperty list uchar float w\nend_header\n"
        + b"0 0 0\n0 2 0.5 1.5\n1 0\n"
    )
    sample = load(write(tmp_path, "e.ply", data))
    np.testing.assert_array_equal(sample["edge_vertex1"], [0, 1])
    np.testing.assert_array_equal(sample["edge_w"], np.float32([0.5, 1.5]))
    np.testing.assert_array_equal(sample["edge_w_sizes"], [2, 0])


def test_non_utf8_comment_in_ply_header(tmp_path):
    data = ply_header("ascii", 1).replace(b"ply\n", b"ply\ncomment caf\xe9 \xff\n", 1)
    assert load(write(tmp_path, "c.ply", data + b"1 2 3\n"))["verts"].tolist() == [[1, 2, 3]]


def test_ascii_ply_lines_after_the_last_element(tmp_path):
    data = ply_header("ascii", 1) + b"0 0 0\n1 1 1\n"
    raises(write(tmp_path, "x.ply", data), "line 9", "follow the last element")


# ------------------------------------------------------------------------------- OBJ flavours
def test_obj_crlf_tabs_leading_space_no_final_newline(tmp_path):
    data = b"# c\r\n  v 0 0 0\r\nv\t1 0 0\r\n\tv 0 1 0\r\nf 1 2 3"
    sample = load(write(tmp_path, "x.obj", data))
    np.testing.assert_array_equal(sample["verts"], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2]])


def test_obj_non_utf8_group_names(tmp_path):
    data = b"v 0 0 0\nv 1 0 0\nv 0 1 0\ng caf\xe9\nf 1 2 3\ng \xff\xfe\nf 3 2 1\n"
    sample = load(write(tmp_path, "x.obj", data))
    np.testing.assert_array_equal(sample["face_groups"], [0, 1])


def test_obj_line_continuation(tmp_path):
    data = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 \\\n 3 4\n"
    sample = load(write(tmp_path, "x.obj", data))
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2], [0, 2, 3]])


def test_obj_relative_indices_count_back_from_the_face(tmp_path):
    data = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\nv 5 5 5\nf -4 -3 -1\n"
    sample = load(write(tmp_path, "x.obj", data))
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2], [0, 1, 3]])


def test_obj_mixed_corner_formats(tmp_path):
    data = (
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nvn 0 0 1\n"
        "f 1/1/1 2/2/1 3/3/1\nf 3//1 2//1 1//1\n"
    )
    sample = load(write(tmp_path, "x.obj", data))
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2], [2, 1, 0]])
    np.testing.assert_array_equal(sample["faces_normals"], [[0, 0, 0], [0, 0, 0]])
    # not every corner has a uv: -1 where it has none (PyTorch3D's padding), never dropped
    np.testing.assert_array_equal(sample["faces_uvs"], [[0, 1, 2], [-1, -1, -1]])
    assert sample["uvs"].shape == (3, 2)


def test_obj_vertex_colors_and_groups(tmp_path):
    data = "o a\nv 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nf 1 2 3\no b\nf 1 3 2\no a\nf 2 3 1\n"
    sample = load(write(tmp_path, "x.obj", data))
    np.testing.assert_array_equal(sample["colors"], np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(sample["face_groups"], [0, 1, 0])


def test_obj_polygon_option_and_dtypes(tmp_path):
    data = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 2 2\nf 1 2 3 4 5\nf 1 2 3\n"
    path = write(tmp_path, "x.obj", data)
    sample = load(path, polygons=True, dtype=np.float64, index_dtype=np.int32)
    assert sample["verts"].dtype == np.float64 and sample["faces"].dtype == np.int32
    np.testing.assert_array_equal(sample["polygon_sizes"], [5, 3])
    np.testing.assert_array_equal(sample["polygons"], [0, 1, 2, 3, 4, 0, 1, 2])
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 1, 2]])


def test_bad_option_values(tmp_path):
    path = write(tmp_path, "x.obj", "v 0 0 0\n")
    with pytest.raises(ValueError, match="dtype"):
        load(path, dtype=np.int8)
    with pytest.raises(ValueError, match="index_dtype"):
        load(path, index_dtype=np.float32)


def test_other_formats_go_through_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False)
    path = tmp_path / "x.glb"
    path.write_bytes(mesh.export(file_type="glb"))
    sample = load(path)
    assert sample["verts"].shape == (3, 3) and sample["faces"].tolist() == [[0, 1, 2]]
    raises(write(tmp_path, "bad.glb", "not a glb"), "trimesh could not read it")
    # OFF and STL have their own readers now: a broken one says what is wrong, not trimesh
    raises(write(tmp_path, "bad.off", "OFF\n3 1 0\n0 0 0\n"), "only 1 lines follow")


def test_a_suffix_no_reader_handles_is_refused(tmp_path):
    raises(write(tmp_path, "notes.txt", "v 0 0 0\n"), "no reader for '.txt' files", ".off .stl")
    raises(write(tmp_path, "README", "v 0 0 0\n"), "no reader for 'suffix-less' files")
    # a PLY or OFF magic is read whatever the name
    assert load(write(tmp_path, "mesh.bin", "OFF\n1 0 0\n1 2 3\n"))["verts"].tolist() == [[1, 2, 3]]


def test_ascii_ply_blank_lines_and_trailing_spaces(tmp_path):
    data = ply_header("ascii", 3, 2) + b"0 0 0 \n\n1 0 0\n  0 1 0\n\n3 0 1 2\n4 0 1 2 0\n\n"
    sample = load(write(tmp_path, "x.ply", data), polygons=True)
    np.testing.assert_array_equal(sample["verts"], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(sample["polygon_sizes"], [3, 4])
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2], [0, 1, 2], [0, 2, 0]])
