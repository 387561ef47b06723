"""Issue 11's reader bugs, one regression test each (the issue's own bytes first), and the
members of the same classes found beside them: data dropped or replaced without an error."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from peer_io import OBJ_SPELLINGS, PLY_FORMATS, XYZ, equal, ply, read, refuse, write

from hetload import collate
from hetload.io import load, scan
from hetload.transforms import Subsample

TRIANGLE = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"


# ---------------------------------------------------- OBJ: uv / normal indices on some faces
def test_uvs_on_some_faces_only(tmp_path):  # the file
    sample = read(tmp_path, TRIANGLE + "vt 0.5 0.5\nf 1 2 3\nf 1/1 2/1 3/1\n")
    equal(sample["uvs"], np.float32([[0.5, 0.5]]))
    equal(sample["faces_uvs"], [[-1, -1, -1], [0, 0, 0]], np.int64)


def test_normals_on_some_faces_only(tmp_path):
    sample = read(tmp_path, TRIANGLE + "vn 0 0 1\nf 1//1 2//1 3//1\nf 3 2 1\n")
    equal(sample["faces_normals"], [[0, 0, 0], [-1, -1, -1]], np.int64)


@pytest.mark.parametrize(
    ("faces", "expected"),
    [
        # slash totals of the line equal three 'v/t' corners: the fast path must not take it
        ("f 1/1 2 3/2/1\n", [[0, -1, 1]]),
        ("f 1/2 2/3 3\nf 1/1 2 3/3/1\n", [[1, 2, -1], [0, -1, 2]]),
        ("f 1/1 2//1 3/2\n", [[0, -1, 1]]),
    ],
)
def test_mixed_corner_formats_keep_each_corner(tmp_path, faces, expected):
    # found by the property test below: the vectorized parser checked slash totals only, so
    # 'f 1/1 2 3/2/1' read as corners (1, 1) (2, 3) (2, 1): a wrong uv without an error
    sample = read(tmp_path, TRIANGLE + "vt 0 0\nvt 1 0\nvt 1 1\nvn 0 0 1\n" + faces)
    equal(sample["faces_uvs"], expected, np.int64)
    equal(sample["faces"], [[0, 1, 2]] * len(expected), np.int64)


@st.composite
def partial_corners(draw):
    """Faces of 3..5 corners; each corner with or without a uv index (1-based, may be
    negative) and a normal index; returns (obj text, expected faces_uvs, faces_normals)."""
    n_faces = draw(st.integers(1, 6))
    lines = [TRIANGLE, "v 1 1 0\nv 2 2 0\n", "vt 0 0\nvt 1 0\n", "vn 0 0 1\n"]
    uv_rows, normal_rows = [], []
    for _ in range(n_faces):
        arity = draw(st.integers(3, 5))
        corners, uv_of, normal_of = [], [], []
        for k in range(arity):
            uv = draw(st.sampled_from([None, 1, 2, -1, -2]))
            normal = draw(st.sampled_from([None, 1, -1]))
            text = str(k + 1)
            if uv is not None or normal is not None:
                text += "/" + ("" if uv is None else str(uv))
            if normal is not None:
                text += f"/{normal}"
            corners.append(text)
            uv_of.append(-1 if uv is None else (uv - 1 if uv > 0 else 2 + uv))
            normal_of.append(-1 if normal is None else 0)
        lines.append("f " + " ".join(corners) + "\n")
        for k in range(1, arity - 1):  # the fan around the first corner
            uv_rows.append([uv_of[0], uv_of[k], uv_of[k + 1]])
            normal_rows.append([normal_of[0], normal_of[k], normal_of[k + 1]])
    return "".join(lines), np.array(uv_rows), np.array(normal_rows)


@given(case=partial_corners(), spelling=st.sampled_from(sorted(OBJ_SPELLINGS)))
def test_partial_corner_indices_property(tmp_path_factory, case, spelling):
    text, uv_rows, normal_rows = case
    sample = read(tmp_path_factory.mktemp("obj"), OBJ_SPELLINGS[spelling](text))
    for name, rows in (("faces_uvs", uv_rows), ("faces_normals", normal_rows)):
        if (rows == -1).all():
            assert name not in sample  # no corner has one: no field
        else:
            equal(sample[name], rows, np.int64)


def test_partial_uvs_collate_refuses_the_missing_corners(tmp_path):
    # -1 is "no uv" in a sample; the batch has no such marker, so collate says so (loudly)
    sample = read(tmp_path, TRIANGLE + "vt 0.5 0.5\nf 1 2 3\nf 1/1 2/1 3/1\n")
    with pytest.raises(ValueError, match=r"faces_uvs.*-1"):
        collate([sample])
    sample.pop("faces_uvs")
    assert collate([sample]).faces.values.shape == (2, 3)


# ------------------------------------------------------------- PLY: an element declared twice
TWICE = (
    "ply\nformat ascii 1.0\nelement vertex 1\n" + "\n".join(XYZ) + "\nelement vertex 2\n"
    + "\n".join(XYZ) + "\nend_header\n0 0 0\n1 1 1\n2 2 2\n"
)  # fmt: skip


@pytest.mark.parametrize("reader", [load, scan])
def test_element_declared_twice(tmp_path, reader):  # load kept the second, scan counted both
    path = write(tmp_path, TWICE, ".ply")
    with pytest.raises(Exception, match="element 'vertex' is declared twice") as info:
        reader(path)
    assert info.value.where == "header line 7"


# ---------------------------------------------------------- PLY: CRLF after 'end_header' only
@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_crlf_after_end_header(tmp_path, fmt):
    data = ply(fmt, ["element vertex 2", *XYZ], [[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]])
    data = data.replace(b"end_header\n", b"end_header\r\n")
    path = write(tmp_path, data, ".ply")
    equal(load(path)["verts"], np.float32([[0, 1, 2], [3, 4, 5]]))
    assert scan(path) == ("ply", 2, 0)


def test_lone_cr_after_a_lf_header_is_still_refused(tmp_path):
    data = b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n" + "\n".join(XYZ).encode()
    data += b"\nend_header\r" + struct.pack("<3f", 1, 2, 3)
    refuse(tmp_path, data, ".ply", "'end_header' is not followed by a line end")


# ----------------------------------------------- OBJ: group names that differ in whitespace
GROUPED = TRIANGLE + "g a  b\nf 1 2 3\ng a b\nf 1 3 2\ng\tb a\nf 2 1 3\n"


@pytest.mark.parametrize("force_line_path", [False, True])
def test_group_names_normalized_on_both_paths(tmp_path, force_line_path):
    # a face of mixed corner formats sends the file to the per-line parser
    text = GROUPED + ("vt 0 0\nf 1/1 2 3\n" if force_line_path else "f 1 2 3\n")
    equal(read(tmp_path, text)["face_groups"], [0, 0, 1, 1])


_NAME_PART = st.sampled_from(["a", "b", "c d"])
_SPACE = st.sampled_from([" ", "  ", "\t", " \t "])


@given(names=st.lists(st.tuples(_NAME_PART, _SPACE, _NAME_PART, _SPACE), min_size=1, max_size=5))
def test_face_groups_agree_between_paths_property(tmp_path_factory, names):
    body = "".join(f"g{s1}{a}{s2}{b}{s1}\nf 1 2 3\n" for a, s1, b, s2 in names)
    fast = read(tmp_path_factory.mktemp("g"), TRIANGLE + body + "f 1 2 3\n")
    slow = read(tmp_path_factory.mktemp("g"), TRIANGLE + body + "vt 0 0\nf 1/1 2 3\n")
    equal(fast["face_groups"], slow["face_groups"])
    expected = {}
    for a, _, b, _ in names:
        expected.setdefault(" ".join(f"{a} {b}".split()), len(expected))
    groups = [expected[" ".join(f"{a} {b}".split())] for a, _, b, _ in names]
    equal(fast["face_groups"], [*groups, groups[-1]])


# ------------------------------------------- scan vs load: a one-byte last line, no newline
@pytest.mark.parametrize("tail", ["g", "#", "s", "o", "x", "\n", " ", "\t", "\r"])
@pytest.mark.parametrize("faces", ["f 1 2 3\n", "f 1 2 3 1\n", "f 1 2 3\nf 3 2 1\n"])
def test_scan_triangles_agree_with_load(tmp_path, tail, faces):
    path = write(tmp_path, TRIANGLE + faces + tail, ".obj")
    info = scan(path)
    sample = load(path)
    assert info.n_triangles == len(sample["faces"]), (info, faces, tail)
    assert info.n_faces == faces.count("f ") and info.n_verts == 3


# --------------------------------------------- NaN / inf in every float field, one switch
OBJ_NONFINITE = {
    "normals": (TRIANGLE + "vn 0 0 1\nvn nan 0 1\nf 1 2 3\n", "line 5"),
    "uvs": (TRIANGLE + "vt 0 inf\nf 1/1 2/1 3/1\n", "line 4"),
    "colors": ("v 0 0 0 1 0 0\nv 1 0 0 -inf 0 0\nv 0 1 0 0 0 1\n", "line 2"),
    "vertex_weights": ("v 0 0 0 1\nv 1 0 0 nan\nv 0 1 0 1\n", "line 2"),
    "verts": ("v 0 0 0\nv 1e39 0 0\n", "line 2"),  # finite as a double, not as float32
}


@pytest.mark.parametrize("field", sorted(OBJ_NONFINITE))
@pytest.mark.parametrize("spelling", ["lf", "crlf", "indented"])
def test_obj_nonfinite_in_every_float_field(tmp_path, field, spelling):
    text, where = OBJ_NONFINITE[field]
    error = refuse(tmp_path, OBJ_SPELLINGS[spelling](text), ".obj", f"field {field!r}")
    assert "not finite" in error.reason and "allow_nonfinite" in error.reason
    if spelling != "indented":
        assert error.where == where
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](text), allow_nonfinite=True)
    assert not np.isfinite(sample[field]).all()


PLY_FLOATS = {  # field in the sample: (vertex properties, face properties) beyond the usual
    "normals": (["property float nx", "property float ny", "property float nz"], []),
    "uvs": (["property float u", "property float v"], []),
    "colors": (["property float red", "property float green", "property float blue"], []),
    "intensity": (["property double intensity"], []),
    "face_quality": ([], ["property float quality"]),
    "face_colors": ([], ["property float red", "property float green", "property float blue"]),
    "face_texcoord": ([], ["property list uchar float texcoord"]),  # 4 values: not per corner
    "label_weight": ([], []),  # an element of its own
}


def _ply_with_nan(fmt: str, field: str) -> bytes:
    """A triangle whose ``field`` holds one NaN (vertex 2, face 0, or label 1)."""
    vertex_props, face_props = PLY_FLOATS[field]
    header = ["element vertex 3", *XYZ, *vertex_props, "element face 1"]
    header += ["property list uchar int vertex_indices", *face_props]
    header += ["element label 2", "property float weight"]
    nan = float("nan")
    tail = [0.5] * len(vertex_props)
    verts = [[0.0, 0.0, 0.0, *tail], [1.0, 0.0, 0.0, *tail], [0.0, 1.0, 0.0, *tail[1:], nan]]
    verts[2] = verts[2][: 3 + len(vertex_props)]
    if field == "face_texcoord":
        face = [[0, 1, 2], [0.0, 1.0, nan, 0.5]]
    else:
        face = [[0, 1, 2], *[nan] * len(face_props)]
    weights = [[1.0], [nan if field == "label_weight" else 2.0]]
    return ply(fmt, header, [verts, [face], weights])


@pytest.mark.parametrize("field", sorted(PLY_FLOATS))
@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_ply_nonfinite_in_every_float_field(tmp_path, field, fmt):
    data = _ply_with_nan(fmt, field)
    error = refuse(tmp_path, data, ".ply", f"field {field!r}", "not finite")
    element = "vertex" if not field.startswith(("face", "label")) else field.split("_")[0]
    row = {"vertex": 2, "face": 0, "label": 1}[element]
    assert error.where == f"element {element!r} row {row}", error
    sample = read(tmp_path, data, ".ply", allow_nonfinite=True)
    assert not np.isfinite(sample[field]).all()


def test_ply_per_corner_uvs_nonfinite(tmp_path):
    header = ["element vertex 3", *XYZ, "element face 2", "property list uchar int vertex_indices"]
    header.append("property list uchar float texcoord")
    faces = [[[0, 1, 2], [0, 0, 1, 0, 0, 1]], [[2, 1, 0], [0, 0, 1, 0, float("nan"), 1]]]
    data = ply("binary_little_endian", header, [[[0, 0, 0], [1, 0, 0], [0, 1, 0]], faces])
    error = refuse(tmp_path, data, ".ply", "field 'uvs': row 5")
    assert error.where == "element 'face' row 1"


def test_integer_fields_are_not_checked(tmp_path):
    header = ["element vertex 1", *XYZ, "property uchar red", "property uchar green"]
    sample = read(
        tmp_path, ply("ascii", [*header, "property uchar blue"], [[[0, 0, 0, 1, 2, 3]]]), ".ply"
    )
    equal(sample["colors"], np.uint8([[1, 2, 3]]))


# ------------------------------------------------------- double-precision PLY and `dtype`
DOUBLE_HEADER = ["element vertex 2", "property double x", "property double y", "property double z"]


@pytest.mark.parametrize("fmt", PLY_FORMATS)
def test_double_ply_dtype(tmp_path, fmt):
    rows = [[500000.456, 1.0, 2.0], [0.1, 0.2, 0.3]]
    data = ply(fmt, DOUBLE_HEADER, [rows])
    default = read(tmp_path, data, ".ply")
    assert default["verts"].dtype == np.float32  # the documented default: rounded
    assert default["verts"][0, 0] == np.float32(500000.47)
    for dtype in (np.float64, None):  # None: as stored
        kept = read(tmp_path, data, ".ply", dtype=dtype)
        equal(kept["verts"], np.array(rows), np.float64)
    mixed = ["element vertex 1", "property float x", "property float y", "property short z"]
    as_stored = read(tmp_path, ply(fmt, mixed, [[[1.5, 2.5, 3]]]), ".ply", dtype=None)
    equal(as_stored["verts"], np.float32([[1.5, 2.5, 3]]), np.float32)


def test_obj_dtype_none_is_the_parsed_double(tmp_path):
    sample = read(tmp_path, "v 500000.456 0.1 0\nvn 0.1 0.2 0.3\n", dtype=None)
    assert sample["verts"][0, 0] == 500000.456 and sample["normals"].dtype == np.float64


def test_bad_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="float32, float64 or None"):
        read(tmp_path, TRIANGLE, dtype=np.int32)


# --------------------------------------------------- empty 'vn': the error, not numpy's warning
@pytest.mark.parametrize("line", ["vn", "vn ", "vt", "v", "vn\t"])
def test_empty_attribute_line_raises_without_a_warning(tmp_path, line):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        refuse(tmp_path, f"v 0 0 0\n{line}\n", ".obj", "line 2", "needs")


# ------------------------------------------------------ OBJ 'l' / 'p' through the pipeline
def test_lines_and_points_collate_and_subsample(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\nl 1 2 3 4\np 4 1\n"
    a = read(tmp_path, text)
    b = read(tmp_path, "v 9 9 9\n" + text.replace("l 1 2 3 4", "l 2 3"))
    equal(a["lines"], [[0, 1], [1, 2], [2, 3]])
    equal(a["point_indices"], [3, 0])
    batch = collate([a, b])
    equal(batch["lines"].values, [[0, 1], [1, 2], [2, 3], [5, 6]])  # b's rebased by 4
    equal(batch["point_indices"].values, [3, 0, 7, 4])
    kept = Subsample(3)(a, np.random.default_rng(0))
    n = len(kept["verts"])
    assert kept["lines"].shape[1] == 2 and (kept["lines"] < n).all()
    assert (kept["point_indices"] < n).all() and len(kept["point_indices"]) <= 2


def test_scan_counts_obj_with_lines(tmp_path):
    path = write(tmp_path, "v 0 0 0\nv 1 0 0\nl 1 2\np 1\n", ".obj")
    assert scan(path) == ("obj", 2, 0)  # 'l' / 'p' are no faces
    assert scan(path).n_triangles == 0


# ------------------------------------------------ PLY: float-typed vertex index lists
@pytest.mark.parametrize("fmt", PLY_FORMATS)
@pytest.mark.parametrize("element", ["face", "tristrips"])
def test_float_vertex_indices_must_be_whole(tmp_path, fmt, element):
    header = ["element vertex 3", *XYZ, f"element {element} 1"]
    header.append("property list uchar float vertex_indices")
    verts = [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    whole = read(tmp_path, ply(fmt, header, [verts, [[[0.0, 1.0, 2.0]]]]), ".ply")
    equal(whole["faces"], [[0, 1, 2]])
    data = ply(fmt, header, [verts, [[[0.0, 1.5, 2.0]]]])
    refuse(tmp_path, data, ".ply", "vertex index 1.5 is not a whole number", element)
