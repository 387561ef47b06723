"""assimp's reader tests, translated: assimp/assimp test/unit/utObjImportExport.cpp and
test/unit/utPLYImportExport.cpp (and the small models they load from test/models/, written
out here). Each case names its TEST_F.

Where we differ on purpose, the case says so:

- assimp unrolls vertices (one per face corner: the box of 8 vertices becomes 24); we keep the
  file's vertex array, so per-vertex data lines up with the file and indices mean what they say;
- assimp divides ``v x y z w`` by w (and refuses w = 0); the OBJ spec makes w a weight for
  rational curves, so x y z stay as written and w is returned as ``vertex_weights``;
- assimp accepts a uv / normal index past its table (``invalid_normals_uvs``); we refuse it;
- assimp refuses a file without faces (``issue1453_segfault``); we return its point cloud;
- assimp reads a vertex row that lacks a declared list (``issue623.ply``); we refuse it: the
  header does not describe the row.
"""

from __future__ import annotations

import numpy as np
import pytest
from peer_io import OBJ_SPELLINGS, XYZ, equal, ply, read, refuse

SPELLINGS = sorted(OBJ_SPELLINGS)

BOX = """o 1

# Vertex list

v -0.5 -0.5  0.5
v -0.5 -0.5 -0.5
v -0.5  0.5 -0.5
v -0.5  0.5  0.5
v  0.5 -0.5  0.5
v  0.5 -0.5 -0.5
v  0.5  0.5 -0.5
v  0.5  0.5  0.5

# Point / Line / Face list

g Box01
usemtl Default
f 4 3 2 1
f 2 6 5 1
f 3 7 6 2
f 8 7 3 4
f 5 8 4 1
f 6 7 8 5

# End of file
"""
BOX_XYZ = np.float32(
    [[-0.5, -0.5, 0.5], [-0.5, -0.5, -0.5], [-0.5, 0.5, -0.5], [-0.5, 0.5, 0.5],
     [0.5, -0.5, 0.5], [0.5, -0.5, -0.5], [0.5, 0.5, -0.5], [0.5, 0.5, 0.5]]
)  # fmt: skip
BOX_QUADS = [[3, 2, 1, 0], [1, 5, 4, 0], [2, 6, 5, 1], [7, 6, 2, 3], [4, 7, 3, 0], [5, 6, 7, 4]]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_obj_import_test(tmp_path, spelling):  # obj_import_test (assimp: 24 unrolled vertices)
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](BOX), polygons=True)
    equal(sample["verts"], BOX_XYZ)
    equal(sample["polygons"], np.ravel(BOX_QUADS))
    equal(sample["faces"], [t for q in BOX_QUADS for t in ([q[0], q[1], q[2]], [q[0], q[2], q[3]])])
    # 'o 1' holds no face; every face is in 'g Box01'
    equal(sample["face_groups"], np.zeros(12))


def test_import_without_linend(tmp_path):  # import_without_linend (box_without_lineending.obj)
    sample = read(tmp_path, BOX.split("\n\n# End")[0].rstrip("\n"))
    assert sample["faces"].shape == (12, 3)
    equal(sample["faces"][-2:], [[5, 6, 7], [5, 7, 4]])


def test_issue1111_no_mat_name(tmp_path):  # issue1111_no_mat_name_Test: a bare 'usemtl'
    text = "o 1\n\n# Vertex list\n\nv -0.5 -0.5  0.5\nv -0.5 -0.5 -0.5\nv -0.5  0.5 -0.5\n\n"
    sample = read(tmp_path, text + "usemtl\nf 1 2 3\n\n# End of file\n")
    equal(sample["faces"], [[0, 1, 2]])


CUBE8 = "".join(f"v  {x}.0  {y}.0  {z}.0\n" for x in (0, 1) for y in (0, 1) for z in (0, 1))


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_issue1453_segfault(tmp_path, spelling):  # issue1453_segfault: 8 vertices, then 'B'
    # assimp returns no scene (no faces); an unknown statement is skipped and the point cloud kept
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](CUBE8 + "B"))
    equal(sample["verts"], np.float32([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]))
    assert set(sample) == {"verts"}


RELATIVE = """v -0.500000 0.000000 0.400000
v -0.500000 0.000000 -0.800000
v -0.500000 1.000000 -0.800000
v -0.500000 1.000000 0.400000
f -4 -3 -2 -1
B"""


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_relative_indices(tmp_path, spelling):  # relative_indices_Test
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](RELATIVE), polygons=True)
    assert sample["verts"].shape == (4, 3)
    equal(sample["polygons"], [0, 1, 2, 3])
    equal(sample["polygon_sizes"], [4])
    equal(sample["faces"], [[0, 1, 2], [0, 2, 3]])


HOMOGENEOUS = """v -0.500000 0.000000 0.400000 {w}
v -0.500000 0.000000 -0.800000 1.00000
v 0.500000 1.000000 -0.800000 0.5000
f 1 2 3
B"""


@pytest.mark.parametrize("w", ["0.50000", "0."])  # homogeneous_coordinates(_divide_by_zero)_Test
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_homogeneous_coordinates(tmp_path, w, spelling):
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](HOMOGENEOUS.format(w=w)))
    # assimp: (-1, 0, 0.8), and no scene for w = 0; we keep x y z and return w
    equal(sample["verts"][0], np.float32([-0.5, 0.0, 0.4]))
    equal(sample["vertex_weights"], np.float32([float(w), 1.0, 0.5]))
    equal(sample["faces"], [[0, 1, 2]])


THREE = "v -0.5 0.0 0.4\nv -0.5 0.0 -0.8\nv -0.5 1.0 -0.8\n"


@pytest.mark.parametrize(
    "text, fragment",
    [
        (THREE + "f 0 1 2\nB", "index 0 is not valid"),  # zero_based_array_Test
        (THREE + "vt 0 0\nvn 0 1 0\nf 1/1/1 1/1/1 2/2/2\nB", "uv index 2 is out of range"),
    ],
)
def test_refused_obj(tmp_path, text, fragment):  # zero_based_array_Test, invalid_normals_uvs
    refuse(tmp_path, text, ".obj", fragment, "line 4" if "f 0" in text else "line 6")


def test_no_vt_just_vns(tmp_path):  # no_vt_just_vns: 'v/vt' corners and no 'vt' at all
    text = "v 0 0 0\n" * 10 + "v 10 0 0\nv 0 10 0\n" + "vn 0 0 1\n" * 12 + "f 10/10 11/11 12/12\n"
    sample = read(tmp_path, text)
    equal(sample["faces"], [[9, 10, 11]])
    assert "faces_uvs" not in sample and sample["normals"].shape == (12, 3)


def test_import_with_line_continuations(tmp_path):  # import_with_line_continuations
    text = "v -0.5 -0.5 0.5\nv -0.5 \\\n  -0.5 -0.5\nv -0.5 \\\n   0.5 \\\n   -0.5\nf 1 2 3\n"
    for spelling in ("lf", "crlf"):
        sample = read(tmp_path, OBJ_SPELLINGS[spelling](text))
        equal(
            sample["verts"], np.float32([[-0.5, -0.5, 0.5], [-0.5, -0.5, -0.5], [-0.5, 0.5, -0.5]])
        )
        equal(sample["faces"], [[0, 1, 2]])


# ------------------------------------------------------------------------------------- PLY
COLORED = """ply
format ascii 1.0
element vertex 4
property float x
property float y
property float z
property uchar red
property uchar green
property uchar blue
property float nx
property float ny
property float nz
end_header
0.0 0.0 0.0 255 255 255 0.0 1.0 0.0
0.0 0.0 1.0 255 0 255 0.0 0.0 1.0
0.0 1.0 0.0 255 255 0 1.0 0.0 0.0
0.0 1.0 1.0 0 255 255 1.0 1.0 0.0
"""


def test_parse_error_test(tmp_path):  # parseErrorTest: colors and normals after them
    sample = read(tmp_path, COLORED, ".ply")
    equal(sample["verts"], np.float32([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]]))
    equal(
        sample["colors"], np.uint8([[255, 255, 255], [255, 0, 255], [255, 255, 0], [0, 255, 255]])
    )
    equal(sample["normals"], np.float32([[0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 1, 0]]))


@pytest.mark.parametrize(
    "second, rows",  # parseInvalidDoubleProperty, parseInvalidDoubleCustomProperty
    [
        (["element vertex 8", *XYZ], "0 0 0 0 0 0\n" * 6),
        (["element name 8", "property float x", "element name 5", "property float x"], "0\n" * 17),
    ],
)
def test_element_declared_twice(tmp_path, second, rows):
    header = "\n".join(["ply", "format ascii 1.0", "element vertex 4", *XYZ, *second, "end_header"])
    refuse(tmp_path, header + "\n" + rows, ".ply", "is declared twice")


CUBE_BIN_HEADER = [
    "comment VCGLIB generated", "element vertex 8", *XYZ, "element face 12",
    "property list uchar int vertex_indices",
]  # fmt: skip
CUBE_XYZ = [[x, y, z] for x in (0.0, 1.0) for y in (0.0, 1.0) for z in (0.0, 1.0)]
CUBE_TRIS = [[0, 1, 2], [0, 2, 3], [7, 6, 5], [7, 5, 4], [0, 4, 5], [0, 5, 1]] * 2


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
@pytest.mark.parametrize("where", ["end_header_only", "every_line"])
def test_import_binary_ply_with_rn_newline(tmp_path, fmt, where):  # importBinaryPLYWithRNNewline
    # cube_binary_header_with_RN_newline.ply: LF header lines, CRLF after 'end_header'
    data = ply(fmt, CUBE_BIN_HEADER, [CUBE_XYZ, [[t] for t in CUBE_TRIS]])
    head, body = data.split(b"end_header\n", 1)
    if where == "every_line":
        head = head.replace(b"\n", b"\r\n")
        body = body.replace(b"\n", b"\r\n") if fmt == "ascii" else body
    sample = read(tmp_path, head + b"end_header\r\n" + body, ".ply")
    assert sample["faces"].shape == (12, 3)
    equal(sample["faces"][0], [0, 1, 2])
    equal(sample["verts"], np.float32(CUBE_XYZ))


@pytest.mark.parametrize("order", "<>")
def test_import_binary_ply_with_newline_in_binary(tmp_path, order):  # ..WithNewlineInBinary
    # cube_binary_starts_with_nl.ply: the first float, 5.967534, begins with the byte 0x0a
    fmt = "binary_little_endian" if order == "<" else "binary_big_endian"
    verts = [[5.967534, 0.0, 0.0], *CUBE_XYZ[1:]]
    quads = [[0, 1, 2, 3], [4, 7, 6, 5], [0, 4, 5, 1], [1, 5, 6, 2], [2, 6, 7, 3], [3, 7, 4, 0]]
    header = ["element vertex 8", *XYZ, "element face 6", "property list uchar int vertex_index"]
    data = ply(fmt, header, [verts, [[q] for q in quads]])
    if order == "<":
        assert data.split(b"end_header\n", 1)[1][:1] == b"\n"
    sample = read(tmp_path, data, ".ply", polygons=True)
    equal(sample["verts"], np.float32(verts))
    equal(sample["polygons"][:4], [0, 1, 2, 3])
    assert sample["faces"].shape == (12, 3)


def test_vertex_color_test(tmp_path):  # vertexColorTest (float-color.ply): float rgba
    header = ["comment VCGLIB generated", "element vertex 3", *XYZ]
    header += [f"property float {c}" for c in ("red", "green", "blue", "alpha")]
    header += ["element face 1", "property list uchar int vertex_indices"]
    rows = [
        [
            [0.0, 0.0, 0.0, 0, 0, 1, 1],
            [100.0, 0.0, 0.0, 0, 0, 1, 1],
            [200.0, 200.0, 0.0, 0, 0, 1, 1],
        ]
    ]
    sample = read(tmp_path, ply("ascii", header, [*rows, [[[0, 1, 2]]]]), ".ply")
    equal(sample["faces"], [[0, 1, 2]])
    equal(sample["colors"], np.float32([[0, 0, 1, 1]] * 3), np.float32)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian"])
def test_import_ply_with_uv(tmp_path, fmt):  # importPLYwithUV (cube_uv.ply: x y z nx ny nz s t)
    header = [
        "element vertex 4",
        *XYZ,
        "property float nx",
        "property float ny",
        "property float nz",
    ]
    header += ["property float s", "property float t", "element face 1"]
    header.append("property list uchar uint vertex_indices")
    st = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    rows = [[[1.0, 1.0, -1.0, 0.0, 0.0, -1.0, *uv] for uv in st], [[[0, 1, 2, 3]]]]
    sample = read(tmp_path, ply(fmt, header, rows), ".ply")
    equal(sample["uvs"], np.float32(st))
    assert sample["faces"].shape == (2, 3) and "faces_uvs" not in sample  # uvs per vertex


def test_pointcloud_with_undeclared_list(tmp_path):  # pointcloudTest (issue623.ply)
    header = [
        "element vertex 2",
        *XYZ,
        "property float nx",
        "property float ny",
        "property float nz",
    ]
    head = "\n".join(
        ["ply", "format ascii 1.0", *header, "property list uchar uint vertex_indices"]
    )
    rows = "7.9 1.4 -0.9 0 0 -1\n7.9 -2.3 -0.9 0 0 -1\n"
    refuse(
        tmp_path, head + "\nend_header\n" + rows, ".ply", "fewer values than its properties take"
    )
    # the same cloud without the stray list loads, with its normals
    sample = read(
        tmp_path, "\n".join(["ply", "format ascii 1.0", *header, "end_header", rows]), ".ply"
    )
    assert sample["verts"].shape == sample["normals"].shape == (2, 3) and "faces" not in sample


def test_binary_faces_with_double_sided_cube(tmp_path):  # importBinaryPLY: 12 faces kept
    data = ply("binary_little_endian", CUBE_BIN_HEADER, [CUBE_XYZ, [[t] for t in CUBE_TRIS]])
    sample = read(tmp_path, data, ".ply")
    equal(sample["faces"], CUBE_TRIS)  # a face and its reverse are both kept
