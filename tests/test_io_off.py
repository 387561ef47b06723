"""hetload's OFF reader: every variant against a reference written here, the peers' test facts
(trimesh ``tests/test_off.py``, PyTorch3D ``tests/test_io_off.py``) translated case by case,
and a hypothesis roundtrip through ASCII and binary files written by the test."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hetload.io import ReadError, load, scan

CUBE_VERTS = [
    [1.0, 0.0, 1.4142],
    [0.0, 1.0, 1.4142],
    [-1.0, 0.0, 1.4142],
    [0.0, -1.0, 1.4142],
    [1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0],
    [-1.0, 0.0, 0.0],
    [0.0, -1.0, 0.0],
]
CUBE_QUADS = [[0, 1, 2, 3], [7, 4, 0, 3], [4, 5, 1, 0], [5, 6, 2, 1], [3, 2, 6, 7], [6, 5, 4, 7]]


def write(tmp_path, text: str | bytes, name: str = "x.off"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def fan(polygons: list[list[int]]) -> list[list[int]]:
    """The reference triangulation: (p0, pk, pk+1) for each polygon, in order."""
    return [[p[0], p[k], p[k + 1]] for p in polygons for k in range(1, len(p) - 1)]


def verts_text(verts) -> str:
    return "".join(" ".join(repr(float(x)) for x in row) + "\n" for row in verts)


# ------------------------------------------------------------------------------ the variants
def test_plain_off_triangles_and_quads(tmp_path):
    faces = [[0, 1, 2], [0, 2, 3, 1], [3, 2, 1, 0, 1]]
    text = "OFF\n4 3 0\n" + verts_text(CUBE_VERTS[:4]) + "3 0 1 2\n4 0 2 3 1\n5 3 2 1 0 1\n"
    sample = load(write(tmp_path, text), polygons=True)
    assert sample["verts"].dtype == np.float32 and sample["faces"].dtype == np.int64
    np.testing.assert_array_equal(sample["verts"], np.float32(CUBE_VERTS[:4]))
    np.testing.assert_array_equal(sample["faces"], fan(faces))
    np.testing.assert_array_equal(sample["polygon_sizes"], [3, 4, 5])
    np.testing.assert_array_equal(sample["polygons"], [i for p in faces for i in p])
    assert set(sample) == {"verts", "faces", "polygons", "polygon_sizes"}
    assert scan(tmp_path / "x.off") == ("off", 4, 3)
    assert scan(tmp_path / "x.off").n_triangles == 1 + 2 + 3


def test_modelnet_counts_glued_to_the_keyword(tmp_path):
    # ModelNet40's files: "OFF490 518 0" on the first line
    text = "OFF4 2 0\n" + verts_text(CUBE_VERTS[:4]) + "3 0 1 2\n3 0 2 3\n"
    sample = load(write(tmp_path, text))
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2], [0, 2, 3]])
    assert scan(tmp_path / "x.off") == ("off", 4, 2)
    # counts on the keyword line after a space, and without NEdges
    for head in ("OFF 4 2 0\n", "OFF 4 2\n", "OFF\n\n# c\n4 2 0\n", "4 2 0\n", "off\n4 2 0\n"):
        text = head + verts_text(CUBE_VERTS[:4]) + "3 0 1 2\n3 0 2 3\n"
        got = load(write(tmp_path, text))
        np.testing.assert_array_equal(got["verts"], sample["verts"])
        np.testing.assert_array_equal(got["faces"], sample["faces"])


def test_coff_vertex_colors_as_stored(tmp_path):
    rows = [f"{x} {y} {z} {10 * i} {20 + i} 255 128" for i, (x, y, z) in enumerate(CUBE_VERTS)]
    text = "COFF\n8 1 0\n" + "\n".join(rows) + "\n3 0 1 2\n"
    sample = load(write(tmp_path, text))
    assert sample["colors"].dtype == np.uint8 and sample["colors"].shape == (8, 4)
    np.testing.assert_array_equal(sample["colors"], [[10 * i, 20 + i, 255, 128] for i in range(8)])
    rows = [f"{x} {y} {z} 0.5 0.25 1.0" for x, y, z in CUBE_VERTS]
    sample = load(write(tmp_path, "COFF\n8 0 0\n" + "\n".join(rows) + "\n"))
    assert sample["colors"].dtype == np.float32
    np.testing.assert_array_equal(sample["colors"], [[0.5, 0.25, 1.0]] * 8)
    assert "faces" not in sample  # a point cloud
    sample = load(write(tmp_path, "COFF\n8 0 0\n" + "\n".join(rows) + "\n"), dtype=np.float64)
    assert sample["colors"].dtype == np.float64 and sample["verts"].dtype == np.float64


def test_noff_stoff_and_combinations(tmp_path):
    rng = np.random.default_rng(0)
    verts = rng.standard_normal((5, 3)).round(4)
    normals = rng.standard_normal((5, 3)).round(4)
    uvs = rng.random((5, 2)).round(4)
    colors = rng.integers(0, 256, (5, 3))
    cases = {
        "NOFF": (verts, normals),
        "STOFF": (verts, uvs),
        "CNOFF": (verts, normals, colors),
        "STCNOFF": (verts, normals, colors, uvs),
        "STNOFF": (verts, normals, uvs),
    }
    for keyword, columns in cases.items():
        table = np.concatenate(columns, axis=1)
        lines = [" ".join(f"{v:g}" for v in row) for row in table]
        text = f"{keyword}\n5 1 0\n" + "\n".join(lines) + "\n3 0 1 4\n"
        sample = load(write(tmp_path, text))
        np.testing.assert_allclose(sample["verts"], verts, rtol=1e-6)
        if "N" in keyword:
            np.testing.assert_allclose(sample["normals"], normals, rtol=1e-6)
        else:
            assert "normals" not in sample
        if "ST" in keyword:
            np.testing.assert_allclose(sample["uvs"], uvs, rtol=1e-6)
        else:
            assert "uvs" not in sample
        if "C" in keyword:
            assert sample["colors"].dtype == np.uint8
            np.testing.assert_array_equal(sample["colors"], colors)
        np.testing.assert_array_equal(sample["faces"], [[0, 1, 4]])


def test_face_colors_per_triangle(tmp_path):
    # each quad's color is repeated on both of its triangles
    lines = [f"4 {' '.join(map(str, q))} {i * 40} 0 {255 - i}" for i, q in enumerate(CUBE_QUADS)]
    text = "OFF\n8 6 12\n" + verts_text(CUBE_VERTS) + "\n".join(lines) + "\n"
    sample = load(write(tmp_path, text))
    np.testing.assert_array_equal(sample["faces"], fan(CUBE_QUADS))
    assert sample["face_colors"].dtype == np.uint8
    want = [[i * 40, 0, 255 - i] for i in range(6) for _ in range(2)]
    np.testing.assert_array_equal(sample["face_colors"], want)


def test_comments_blank_lines_crlf_and_tabs(tmp_path):
    text = (
        "# leading comment\r\n\r\nOFF # keyword\r\n  # more\r\n4\t2 0 # counts\r\n"
        + verts_text(CUBE_VERTS[:4]).replace("\n", " # a vertex\r\n\r\n")
        + "3 0 1 2 # first\r\n\t3 0 2 3"
    )
    sample = load(write(tmp_path, text))
    np.testing.assert_array_equal(sample["verts"], np.float32(CUBE_VERTS[:4]))
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2], [0, 2, 3]])


def test_vertices_keep_the_files_order_and_count(tmp_path):
    # duplicates and unused vertices stay: the sample is the file's vertex array
    verts = [[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]]
    text = "OFF\n5 1 0\n" + verts_text(verts) + "3 3 2 0\n"
    sample = load(write(tmp_path, text))
    np.testing.assert_array_equal(sample["verts"], verts)
    np.testing.assert_array_equal(sample["faces"], [[3, 2, 0]])


# --------------------------------------------------------------------------- refused files
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("# only a comment\n\n", "only comments"),
        ("OFF\n", "no counts line"),
        ("OFF\n3 1\n0 0 0\n1 0 0\n", r"only 2 lines follow.*truncated"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n", r"only 3 lines follow"),
        ("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", r"1 lines follow the last face"),
        ("OFF\nx 1 0\n", r"expected the counts.*'x 1 0'"),
        ("OFF\n-3 1 0\n", r"expected the counts"),
        ("OFF\n3 1 0 7\n", r"expected the counts"),
        ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", r"\(line 4\).*vertex 1 has 2 values"),
        ("OFF\n3 1 0\n0 0 0\n1 0 x\n0 1 0\n3 0 1 2\n", r"\(line 4\).*'x' is not a number"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n", r"\(line 6\).*vertex 3, outside"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", r"vertex -1, outside"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1.5 2\n", r"vertex 1.5, outside"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", r"face 0 declares 2 corners"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", r"declares 4 corners but its line"),
        # found by scripts/fuzz_readers.py: an infinite corner count raised OverflowError
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\ninf 0 1 2\n", r"face 0 declares inf corners"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n1e300 0 1 2\n", r"declares 1e\+300 corners but"),
        ("OFF\n3 1 0\n0 0 nan\n1 0 0\n0 1 0\n3 0 1 2\n", r"\(line 3\).*vertex 0 is not finite"),
        ("OFF\n3 1 0\n0 0 1e39\n1 0 0\n0 1 0\n3 0 1 2\n", r"vertex 0 is not finite"),
        ("4OFF\n1 0 0\n0 0 0 1\n", r"4D / n-dimensional"),
        ("nOFF\n4\n1 0 0\n0 0 0 1\n", r"4D / n-dimensional"),
        ("COFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", r"a COFF vertex has 3 \(\+3 or 4"),
        ("COFF\n1 0 0\n0 0 0 1 2 300\n", r"color \[1.0, 2.0, 300.0\] is outside 0..255"),
        (
            "OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2 1 0 0\n3 0 1 2\n",
            r"\(line 7\).*face 1 has 0 color values, face 0 has 3",
        ),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2 7\n", r"colormap indices"),
    ],
)
def test_malformed_files_name_the_file_and_the_reason(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(ReadError, match=match) as info:
        load(path)
    assert str(info.value).startswith(str(path))
    with contextlib.suppress(ReadError):  # scan: counts or a ReadError, nothing else
        scan(path)


def test_nonfinite_values_in_any_float_field(tmp_path):
    text = "NOFF\n3 1 0\n0 0 0 0 0 1\n1 0 0 0 0 nan\n0 1 0 0 0 1\n3 0 1 2\n"
    with pytest.raises(ReadError, match=r"\(line 4\).*normal 1 is not finite"):
        load(write(tmp_path, text))
    assert np.isnan(load(tmp_path / "x.off", allow_nonfinite=True)["normals"][1, 2])
    text = "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2 0.5 inf 0\n"
    with pytest.raises(ReadError, match="face color 0 is not finite"):
        load(write(tmp_path, text))


# --------------------------------------------------------------------------- binary OFF
def binary_off(
    verts,
    polygons,
    *,
    keyword="OFF",
    order=">",
    normals=None,
    colors=None,
    uvs=None,
    face_colors=None,
):
    """Geomview's binary layout, written here from its description: the keyword line ending in
    BINARY, int32 counts, float32 vertex rows, then per face int32 n, n int32 indices, int32
    color count and that many float32."""
    out = [f"{keyword} BINARY\n".encode(), struct.pack(order + "3i", len(verts), len(polygons), 0)]
    columns = [np.asarray(verts)] + [np.asarray(c) for c in (normals, colors, uvs) if c is not None]
    out.append(np.concatenate(columns, axis=1).astype(order + "f4").tobytes())
    for i, poly in enumerate(polygons):
        out.append(struct.pack(order + f"{len(poly) + 1}i", len(poly), *poly))
        fc = [] if face_colors is None else list(face_colors[i])
        out.append(struct.pack(order + "i", len(fc)) + struct.pack(order + f"{len(fc)}f", *fc))
    return b"".join(out)


def test_binary_off_big_and_little_endian(tmp_path):
    polygons = [[0, 1, 2], [0, 2, 3]]
    for order in (">", "<"):
        path = write(tmp_path, binary_off(CUBE_VERTS[:4], polygons, order=order), "b.off")
        sample = load(path)
        np.testing.assert_array_equal(sample["verts"], np.float32(CUBE_VERTS[:4]))
        np.testing.assert_array_equal(sample["faces"], polygons)
        assert scan(path) == ("off", 4, 2)


def test_binary_off_mixed_polygons_colors_and_normals(tmp_path):
    rng = np.random.default_rng(1)
    normals = rng.standard_normal((8, 3)).astype(np.float32)
    colors = rng.random((8, 4)).astype(np.float32)
    face_colors = rng.random((7, 3)).astype(np.float32)
    polygons = [[0, 1, 2], *CUBE_QUADS[1:], [7, 6, 5, 4, 3]]
    data = binary_off(
        CUBE_VERTS,
        polygons,
        keyword="CNOFF",
        normals=normals,
        colors=colors,
        face_colors=face_colors[: len(polygons)],
    )
    sample = load(write(tmp_path, data), polygons=True)
    np.testing.assert_array_equal(sample["normals"], normals)
    np.testing.assert_array_equal(sample["colors"], colors)
    np.testing.assert_array_equal(sample["faces"], fan(polygons))
    sizes = [len(p) for p in polygons]
    np.testing.assert_array_equal(sample["polygon_sizes"], sizes)
    want = np.repeat(face_colors[: len(polygons)], [s - 2 for s in sizes], axis=0)
    np.testing.assert_array_equal(sample["face_colors"], want)


@pytest.mark.parametrize(
    ("cut", "match"),
    [
        (lambda d: d[:-3], "truncated|runs past"),
        (lambda d: d + b"junk", "bytes follow the last face"),
        (lambda d: d[:40], "8 vertices needs at least"),
    ],
)
def test_binary_off_damaged(tmp_path, cut, match):
    data = binary_off(CUBE_VERTS, CUBE_QUADS)
    path = write(tmp_path, cut(data))
    with pytest.raises(ReadError, match=match) as info:
        load(path)
    assert str(info.value).startswith(str(path))


def test_binary_off_corner_count_past_the_end(tmp_path):
    data = binary_off(CUBE_VERTS[:3], [])
    data = data[:11] + struct.pack(">3i", 3, 1, 0) + data[23:]
    # a count below (file size / 4) whose colors count would lie past the end: struct.error once
    n = (len(data) + 8) // 4 - 1
    data += struct.pack(">2i", n, 0)
    with pytest.raises(ReadError, match="face 0 of 1 runs past the end: truncated"):
        load(write(tmp_path, data))


def test_binary_off_bad_index(tmp_path):
    path = write(tmp_path, binary_off(CUBE_VERTS[:3], [[0, 1, 5]]))
    with pytest.raises(ReadError, match=r"face 0 refers to vertex 5, outside \[0, 3\)"):
        load(path)


# ------------------------------------------------------- trimesh tests/test_off.py, translated
def test_trimesh_comments_off(shared_meshes):
    # trimesh test_comment: comments.off loads as 8 vertices, 12 triangles (6 quads)
    sample = load(shared_meshes / "mikedh__trimesh/models/comments.off", polygons=True)
    assert sample["verts"].shape == (8, 3) and sample["faces"].shape == (12, 3)
    # and what trimesh drops: the RGBA color of each face, as floats
    assert sample["face_colors"].shape == (12, 4) and sample["face_colors"].dtype == np.float32
    np.testing.assert_allclose(sample["face_colors"][0], [1.0, 0.0, 0.0, 0.75])
    # "# see this vertex be weird" after vertex 1 is a comment
    np.testing.assert_allclose(sample["verts"][1], [0.0, 1.632993, 1.154701], rtol=1e-6)


def test_trimesh_whitespace_off(shared_meshes):
    # trimesh test_whitespace: tab and spaces before a keyword with its counts glued on
    # ("OFF8 6 12 # or nah"), still 8 vertices and 12 triangles
    sample = load(shared_meshes / "mikedh__trimesh/models/whitespace.off")
    assert sample["verts"].shape == (8, 3) and sample["faces"].shape == (12, 3)
    comments = load(shared_meshes / "mikedh__trimesh/models/comments.off")
    for key in comments:
        np.testing.assert_array_equal(sample[key], comments[key])


# ---------------------------------------------------- PyTorch3D tests/test_io_off.py, translated
WIKI_CUBE = [
    "OFF",
    "# cube.off",
    "# A cube",
    " ",
    "8 6 12",
    " 1.0  0.0 1.4142",
    " 0.0  1.0 1.4142",
    "-1.0  0.0 1.4142",
    " 0.0 -1.0 1.4142",
    " 1.0  0.0 0.0",
    " 0.0  1.0 0.0",
    "-1.0  0.0 0.0",
    " 0.0 -1.0 0.0",
    "4  0 1 2 3  255 0 0 #red",
    "4  7 4 0 3  0 255 0 #green",
    "4  4 5 1 0  0 0 255 #blue",
    "4  5 6 2 1  0 255 0 ",
    "4  3 2 6 7  0 0 255",
    "4  6 5 4 7  255 0 0",
]
# PyTorch3D's CUBE_FACES: the quads above, each split as (0,1,2), (0,2,3) -- but listed
# first-triangles-then-second; ours keep both triangles of a quad together (fan order)


def test_pytorch3d_load_face_colors(tmp_path):
    # test_load_face_colors: the Wikipedia cube with integer face colors
    sample = load(write(tmp_path, "\n".join(WIKI_CUBE)))
    np.testing.assert_array_equal(sample["verts"], np.float32(CUBE_VERTS))
    np.testing.assert_array_equal(sample["faces"], fan(CUBE_QUADS))
    colors = sample["face_colors"]
    # PyTorch3D scales integer colors to [0, 1]; we keep them as stored (uint8)
    assert colors.dtype == np.uint8 and colors.shape == (12, 3)
    assert colors.max() == 255 and (colors.sum(axis=1) == 255).all()


def test_pytorch3d_load_vertex_colors(tmp_path):
    # test_load_vertex_colors: no keyword, integer vertex colors on a plain OFF, one face
    lines = ["8 1 12"] + [" ".join(map(str, v)) + " 0 1 0" for v in CUBE_VERTS] + ["3 0 1 2"]
    sample = load(write(tmp_path, "\n".join(lines)))
    np.testing.assert_array_equal(sample["verts"], np.float32(CUBE_VERTS))
    np.testing.assert_array_equal(sample["faces"], [[0, 1, 2]])
    # PyTorch3D: 1/255 in channel 1; as stored: uint8 [0, 1, 0]
    np.testing.assert_array_equal(sample["colors"], [[0, 1, 0]] * 8)


def test_pytorch3d_load_lumpy(tmp_path):
    # test_load_lumpy: faces of different sizes; PyTorch3D gets 5 triangles
    lines = ["8 3 12"] + [" ".join(map(str, v)) for v in CUBE_VERTS]
    lines += ["3  0 1 2    255 0 0 #red", "4  7 4 0 3  0 255 0 #green", "4  4 5 1 0  0 0 255"]
    sample = load(write(tmp_path, "\n".join(lines)))
    # the same 5 triangles as PyTorch3D's faces_expected, in the same order
    np.testing.assert_array_equal(
        sample["faces"], [[0, 1, 2], [7, 4, 0], [7, 0, 3], [4, 5, 1], [4, 1, 0]]
    )
    np.testing.assert_array_equal(
        sample["face_colors"][:3], [[255, 0, 0], [0, 255, 0], [0, 255, 0]]
    )


PT3D_GOOD = ["4 2 12", " 1.0  0.0 1.4142", " 0.0  1.0 1.4142", " 1.0  0.0 0.4142",
             " 0.0  1.0 0.4142", "3  0 1 2 ", "3  1 3 0 "]  # fmt: skip


def _pt3d(tmp_path, lines):
    return load(write(tmp_path, "\n".join(lines)))


def test_pytorch3d_bad_header_forms_that_pass(tmp_path):
    # test_bad: the good example, with the keyword on its own line, glued with a space, glued
    want = _pt3d(tmp_path, PT3D_GOOD)
    np.testing.assert_array_equal(want["faces"], [[0, 1, 2], [1, 3, 0]])
    for first in (["OFF", PT3D_GOOD[0]], ["OFF " + PT3D_GOOD[0]], ["OFF" + PT3D_GOOD[0]]):
        got = _pt3d(tmp_path, first + PT3D_GOOD[1:])
        np.testing.assert_array_equal(got["verts"], want["verts"])
        np.testing.assert_array_equal(got["faces"], want["faces"])


def test_pytorch3d_bad_files(tmp_path):
    # test_bad, each PyTorch3D ValueError is a ReadError here
    def refuses(lines, match):
        with pytest.raises(ReadError, match=match):
            _pt3d(tmp_path, lines)

    refuses(PT3D_GOOD[:-1], "only 5 lines follow")  # "Not enough face data."
    lines = PT3D_GOOD.copy()
    lines[0] = "4 1 12"
    refuses(lines, "lines follow the last face")  # "Extra data at end of file:"
    lines = PT3D_GOOD.copy()
    lines[-1] = "2 1 3"
    refuses(lines, "declares 2 corners")  # "Faces must have at least 3 vertices."
    lines[-1] = "4 1 3 0"
    refuses(lines, "declares 4 corners but its line holds 3")  # "did not have the specified length"
    lines = PT3D_GOOD.copy()
    lines[0] = "6 2 0"  # PyTorch3D: "Wrong number of columns at line 5"; the counts ask for
    refuses(lines, "declares 6 vertices and 2 faces but only 6 lines follow")  # 8 lines
    lines[0] = "5 1 0"  # the first face line read as vertex 4
    refuses(lines, r"\(line 6\).*vertex 4 has 4 values, vertex 0 has 3")
    lines[0] = "16 2 0"
    refuses(lines, "only 6 lines follow")
    lines[0] = "3 3 0"  # "the last vertex could be a face": its first value is 0.0 corners
    refuses(lines, r"\(line 5\).*face 0 declares 0 corners")
    lines[4] = "7.3 4.2 8.3"  # "A line of face data did not have the specified length."
    refuses(lines, r"face 0 declares 7.3 corners")
    lines = PT3D_GOOD.copy()
    lines[2] = "7.3 4.2 8.3 932"  # "Wrong number of columns at line 2"
    refuses(lines, r"vertex 1 has 4 values, vertex 0 has 3")
    lines[1] = lines[3] = lines[4] = "7.3 4.2 8.3 932"  # "Bad vertex data."
    refuses(lines, "a vertex line has 4 values")
    lines = PT3D_GOOD.copy()
    lines[5], lines[6] = "3  0 1 2 0.9", "3  0 3 0 0.9"  # "Unexpected number of colors."
    refuses(lines, "colormap indices")


def test_pytorch3d_vertex_and_face_colors_both_kept(tmp_path):
    # PyTorch3D warns "Faces colors ignored because vertex colors provided too"; both are
    # fields here, nothing is dropped
    lines = PT3D_GOOD.copy()
    for i in range(1, 7):
        lines[i] += " 4 4 4 4"
    sample = _pt3d(tmp_path, lines)
    np.testing.assert_array_equal(sample["colors"], [[4, 4, 4, 4]] * 4)
    np.testing.assert_array_equal(sample["face_colors"], [[4, 4, 4, 4]] * 2)


# ------------------------------------------------------------------------- roundtrip property
def write_ascii_off(verts: np.ndarray, polygons: list[list[int]], colors=None) -> bytes:
    lines = ["OFF", f"{len(verts)} {len(polygons)} 0"]
    for i, row in enumerate(verts.tolist()):
        extra = "" if colors is None else " " + " ".join(map(str, colors[i].tolist()))
        lines.append(" ".join(repr(x) for x in row) + extra)
    lines += [" ".join(map(str, [len(p), *p])) for p in polygons]
    return ("\n".join(lines) + "\n").encode()


meshes = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(
            st.tuples(*[st.floats(-1e6, 1e6, width=32, allow_subnormal=False)] * 3),
            min_size=n,
            max_size=n,
        ),
        st.lists(st.lists(st.integers(0, n - 1), min_size=3, max_size=7), max_size=30),
    )
)


@settings(max_examples=60)
@given(mesh=meshes, binary=st.booleans(), colored=st.booleans())
def test_roundtrip(tmp_path_factory, mesh, binary, colored):
    verts = np.asarray(mesh[0], dtype=np.float32).reshape(-1, 3)
    polygons = mesh[1]
    path = tmp_path_factory.mktemp("off") / "r.off"
    colors = np.arange(len(verts) * 3, dtype=np.int64).reshape(-1, 3) % 256 if colored else None
    if binary:
        path.write_bytes(binary_off(verts, polygons))
    else:
        path.write_bytes(write_ascii_off(verts, polygons, colors))
    sample = load(path, polygons=True)
    np.testing.assert_array_equal(sample["verts"], verts)
    if polygons:
        np.testing.assert_array_equal(sample["faces"], fan(polygons))
        np.testing.assert_array_equal(sample["polygons"], [i for p in polygons for i in p])
    else:
        assert "faces" not in sample
    if colored and not binary:
        np.testing.assert_array_equal(sample["colors"], colors)
    info = scan(path)
    assert info == ("off", len(verts), len(polygons))
    assert info.n_triangles == (None if binary else len(fan(polygons)))
