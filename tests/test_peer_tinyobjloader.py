"""tinyobjloader's reader tests, translated: tinyobjloader/tinyobjloader tests/tester.cc and the
models it loads (``models/*.obj``; the small ones are written out here, each under its test's
name).

tinyobjloader returns shapes (one per ``o`` / ``g``); we return one sample with a per-triangle
``face_groups``. Where we differ on purpose, the case says so: a face of fewer than 3 corners
is refused (tinyobjloader drops it and returns an empty shape), and the ``w`` of ``v x y z w``
is returned as ``vertex_weights`` (tinyobjloader's ``vertex_weights``).
"""

from __future__ import annotations

import numpy as np
import pytest
from peer_io import OBJ_SPELLINGS, equal, read, refuse

SPELLINGS = sorted(OBJ_SPELLINGS)

CUBE_V = """v 0.000000 2.000000 2.000000
v 0.000000 0.000000 2.000000
v 2.000000 0.000000 2.000000
v 2.000000 2.000000 2.000000
v 0.000000 2.000000 0.000000
v 0.000000 0.000000 0.000000
v 2.000000 0.000000 0.000000
v 2.000000 2.000000 0.000000
"""
CUBE_XYZ = np.float32(
    [[0, 2, 2], [0, 0, 2], [2, 0, 2], [2, 2, 2], [0, 2, 0], [0, 0, 0], [2, 0, 0], [2, 2, 0]]
)

# models/cube.obj (test_multiple_group_names) and TestStreamLoadObj's stream
CUBE = f"""mtllib cube.mtl

{CUBE_V}# 8 vertices

g front cube
usemtl white
f 1 2 3 4
# two white spaces between 'back' and 'cube'
g back  cube
# expects white material
f 8 7 6 5
g right cube
usemtl red
f 4 3 7 8
g top cube
usemtl white
f 5 1 4 8
g left cube
usemtl green
f 5 6 2 1
g bottom cube
usemtl white
f 2 6 7 3
# 6 elements"""


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_multiple_group_names(tmp_path, spelling):  # test_multiple_group_names, test_stream_load
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](CUBE))
    equal(sample["verts"], CUBE_XYZ)
    assert sample["faces"].shape == (12, 3)
    # 6 shapes: one group per quad, 'back  cube' named as 'back cube'
    equal(sample["face_groups"], np.repeat(np.arange(6), 2))


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_group_names_differing_in_whitespace_are_one_group(tmp_path, spelling):
    text = CUBE.replace("g right cube", "g back cube").replace("g top cube", "g  back\tcube ")
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](text))
    equal(sample["face_groups"], np.repeat([0, 1, 1, 1, 2, 3], 2))


LINE_PRIM = f"mtllib cube.mtl\n\n{CUBE_V}\ng g0\nusemtl white\nl 1 2 3 4\nl 5 6 7 8\n"
POINTS_PRIM = f"mtllib cube.mtl\n\n{CUBE_V}\ng g0\nusemtl white\np 1 2 3 4 5 6 7 8\n"


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_line_primitive(tmp_path, spelling):  # test_line_primitive: 8 indices in 2 polylines
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](LINE_PRIM))
    # each polyline of 4 vertices is 3 segments
    equal(sample["lines"], [[0, 1], [1, 2], [2, 3], [4, 5], [5, 6], [6, 7]], np.int64)
    assert "faces" not in sample and "point_indices" not in sample


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_points_primitive(tmp_path, spelling):  # test_points_primitive: 8 point indices
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](POINTS_PRIM))
    equal(sample["point_indices"], np.arange(8), np.int64)
    assert "faces" not in sample and "lines" not in sample


@pytest.mark.parametrize(
    "statement, expected",
    [
        ("l 1/1 2/1 -1", {"lines": [[0, 1], [1, 7]]}),  # 'v/vt' corners, a relative index
        ("p -8 -1", {"point_indices": [0, 7]}),
        ("l 1 2 # a comment\np 3 # another", {"lines": [[0, 1]], "point_indices": [2]}),
        ("f 1 2 3\nl 1 2\nf 1 3 4", {"faces": [[0, 1, 2], [0, 2, 3]], "lines": [[0, 1]]}),
    ],
)
def test_lines_and_points_beside_faces(tmp_path, statement, expected):
    sample = read(tmp_path, f"{CUBE_V}vt 0 0\n{statement}\n")
    for key, value in expected.items():
        equal(sample[key], value, np.int64)


@pytest.mark.parametrize(
    "statement, fragment",
    [("l 1", "needs at least 2 vertices"), ("p", "needs at least 1"), ("l 1 9", "out of range")],
)
def test_bad_lines_and_points(tmp_path, statement, fragment):
    refuse(tmp_path, f"{CUBE_V}{statement}\n", ".obj", fragment, "line 9")


ISSUE_295 = (
    "#mtllib invalid.mtl\n"
    + "".join(
        f"v {x}.0 {y}.0 {z}.0\n" for x in (14678, 14679) for z in range(9605, 9609) for y in (0, 1)
    )
    + "# UV\nvt 0.0 0.0\nvt 1.0 0.0\nvt 1.0 1.0\nvt 0.0 1.0\n#usemtl invalid\no invalid\n"
    + """f 9/4 11/1 3/2 1/3
f 4/1 12/2 10/3 2/4
f 2/3 10/4 9/1 1/2
f 3/2 4/3 2/4 1/1
f 10/3 12/4 11/1 9/2
f 11/4 13/1 5/2 3/3
f 6/1 14/2 12/3 4/4
f 5/2 6/3 4/4 3/1
f 12/3 14/4 13/1 11/2
f 13/4 15/1 7/2 5/3
f 8/1 16/2 14/3 6/4
f 15/2 16/3 8/4 7/1
f 7/2 8/3 6/4 5/1
f 14/3 16/4 15/1 13/2
"""
)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_face_missing_issue295(tmp_path, spelling):  # 14 quads -> 28 triangles
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](ISSUE_295))
    assert sample["faces"].shape == sample["faces_uvs"].shape == (28, 3)
    equal(sample["faces"][:2], [[8, 10, 2], [8, 2, 0]])
    equal(sample["faces_uvs"][:2], [[3, 0, 1], [3, 1, 2]])
    equal(sample["verts"][8], np.float32([14679, 0, 9605]))


ISSUE_161 = f"""o cube
{CUBE_V}vt 0 0
vt 1 0
vt 0 1
vt 1 1
s 1
f 1/1 2/2 3/3
f 3/3 2/2 4/4
f 5 1 3
"""


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_inconsistent_f_issue161(tmp_path, spelling):  # models/issue-161-inconsistent-f.obj
    # the last face has no uvs: -1 there, the others kept (they were all dropped before)
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](ISSUE_161))
    equal(sample["faces"], [[0, 1, 2], [2, 1, 3], [4, 0, 2]])
    equal(sample["faces_uvs"], [[0, 1, 2], [2, 1, 3], [-1, -1, -1]])


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_vertex_col_ext_issue144(tmp_path, spelling):  # test_vertex_col_ext_issue144
    colors = ["0 0 0", "0 0 1", "0 1 0", "0 1 1", "1 0 0", "1 0 1", "1 1 0", "1 1 1"]
    lines = [f"{v} {c}" for v, c in zip(CUBE_V.splitlines(), colors)]
    sample = read(tmp_path, OBJ_SPELLINGS[spelling]("\n".join([*lines, "f 1 2 3"]) + "\n"))
    assert sample["colors"].shape == (8, 3)
    equal(sample["colors"][[0, 1, 4, 7]], np.float32([[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 1, 1]]))
    equal(sample["verts"], CUBE_XYZ)


def test_colors_on_some_vertices_only_are_refused(tmp_path):
    # keeping some would misalign them, dropping all would lose them without a word
    data = "v 0 0 0 1 0 0\nv 1 0 0\nv 0 1 0 0 0 1\nf 1 2 3\n"
    refuse(tmp_path, data, ".obj", "some 'v' lines have colors", "line 2")


@pytest.mark.parametrize(
    "text, expected",
    [
        # test_leading_decimal_dots_issue201
        (
            "v .8e-1 -.7e+2 -5.532511\nv .575869 -.666304 5.896140",
            [[0.08, -70, -5.532511], [0.575869, -0.666304, 5.896140]],
        ),
        # test_leading_zero_in_exponent_notation_issue210
        ("v .8e-001 -.7e+02 -5.532511", [[0.08, -70, -5.532511]]),
        ("v +1 -0 1e0\nv 1E+2 2.E1 -.5", [[1, 0, 1], [100, 20, -0.5]]),
    ],
)
def test_number_spellings(tmp_path, text, expected):
    equal(read(tmp_path, "o Test\n" + text + "\nusemtl default\n")["verts"], np.float32(expected))


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_vertex_w_component(tmp_path, spelling):  # models/cube-vertex-w-component.obj
    weights = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    lines = [f"{v} {w} " for v, w in zip(CUBE_V.splitlines(), weights)]
    sample = read(tmp_path, OBJ_SPELLINGS[spelling]("\n".join([*lines, "f 1 2 3 4"]) + "\n"))
    equal(sample["verts"], CUBE_XYZ)
    equal(sample["vertex_weights"], np.float32(weights))


def test_vertex_w_defaults_to_one_where_absent(tmp_path):  # the OBJ spec's default
    sample = read(tmp_path, "v 0 0 0 0.5\nv 1 0 0\nv 0 1 0 0\n")
    equal(sample["vertex_weights"], np.float32([0.5, 1, 0]))


@pytest.mark.parametrize(
    "text, fragment",
    [
        (f"{CUBE_V}f 1 2 0\n", "index 0 is not valid"),  # test_zero_face_idx_value_issue140
        (f"{CUBE_V}f -9 1 2\n", "vertex index -9 is out of range"),  # invalid_relative_vertex
        (f"{CUBE_V}vt 0 0\nf 1/-2 2/1 3/1\n", "uv index -2 is out of range"),  # ..._texture_
        (f"{CUBE_V}g front cube\nf 1\ng back cube\nf 8 7\n", "at least 3 corners"),
        ("v 1.#IND 0 0\n", "'1.#IND' is not a number"),  # models/test-nan.obj
    ],
)
def test_refused_files(tmp_path, text, fragment):
    # test_invalid_face_definition: tinyobjloader drops 1- and 2-corner faces; we refuse them
    refuse(tmp_path, text, ".obj", fragment)


FIRST_FOUR = "".join(CUBE_V.splitlines(keepends=True)[:4])
SMOOTHING = f"""{FIRST_FOUR}v 4.000000 0.000000 -3.255298
v 4.000000 2.000000 -3.255298
#vn 0.000000 0.000000 1.000000
# 6 vertices

g all
s 1
f 1//1 2//2 3//3 4//4
f 4//4 3//3 5//5
"""


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_smoothing_group_two_squares(tmp_path, spelling):  # models/smoothing-group-two-squares
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](SMOOTHING))
    equal(sample["faces"], [[0, 1, 2], [0, 2, 3], [3, 2, 4]])
    assert "faces_normals" not in sample  # every 'vn' is commented out


USEMTL_THEN_O = """v -1.000000 1.202466 1.000000
v 1.000000 1.202466 1.000000
v -1.000000 1.202466 -1.000000
v 1.000000 1.202466 -1.000000
vn 0.0000 1.0000 0.0000
v -1.000000 0.000000 1.000000
v 1.000000 0.000000 1.000000
v -1.000000 0.000000 -1.000000
v 1.000000 0.000000 -1.000000
vn 0.0000 1.0000 0.0000

usemtl None
o Plane.001
f 1//1 2//1 4//1

usemtl None1
o Plane
f 5//2 6//2 8//2
"""


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_usemtl_then_o_issue235(tmp_path, spelling):  # 2 shapes; the second was once lost
    sample = read(tmp_path, OBJ_SPELLINGS[spelling](USEMTL_THEN_O))
    equal(sample["faces"], [[0, 1, 3], [4, 5, 7]])
    equal(sample["faces_normals"], [[0, 0, 0], [1, 1, 1]])
    equal(sample["face_groups"], [0, 1])


def test_usemtl_at_last_line_issue104(tmp_path):  # models/usemtl-issue-104.obj (shortened)
    text = "  # comment\n\n   \no floor\nv 552.8 0.0   0.0\nv 0.0   0.0   0.0\n"
    text += "v 0.0   0.0 559.2\nv 549.6 0.0 559.2\n\nf 1 2 3 4 \n\nusemtl white"
    sample = read(tmp_path, text)
    equal(sample["faces"], [[0, 1, 2], [0, 2, 3]])
    equal(sample["face_groups"], [0, 0])


def test_every_model_of_the_suite(shared_meshes):  # tester.cc's TEST_LIST, on the files
    from hetload.io import ReadError, load

    root = shared_meshes / "tinyobjloader__tinyobjloader/models"
    refused = {
        "invalid-face-definition.obj", "invalid-relative-texture-index.obj",
        "invalid-relative-vertex-index.obj", "issue-140-zero-face-idx.obj", "test-nan.obj",
    }  # fmt: skip
    for path in sorted(root.glob("*.obj")):
        if path.name in refused:
            with pytest.raises(ReadError):
                load(path)
            continue
        sample = load(path)
        n_v = sum(line.split()[:1] == [b"v"] for line in path.read_bytes().splitlines())
        assert len(sample["verts"]) == n_v, path.name
    issue_161 = load(root / "issue-161-inconsistent-f.obj")
    assert (issue_161["faces_uvs"] == -1).all(axis=1).sum() == 1
    equal(load(root / "line-prim.obj")["lines"][:3], [[0, 1], [1, 2], [2, 3]])
    assert len(load(root / "points-prim.obj")["point_indices"]) == 8
    assert load(root / "issue-295-trianguation-failure.obj")["faces"].shape == (28, 3)
