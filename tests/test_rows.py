"""Row selections keep a sample consistent (hetload.rows): aligned fields follow, index fields are
renumbered and rows pointing at dropped rows go, through Subsample, SphereCrop and select_rows.

The reference is written here with plain Python lists and dicts, space by space in the order the
relations go (vertices -> faces / edges -> fields indexing faces).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hetload as hl
from hetload import transforms as T
from hetload.rows import select_rows
from hetload.schema import DEFAULT_SCHEMA

DTYPES = [np.float32, np.float64, np.int16, np.uint8, np.int64]


def long_form(examples: int) -> int:
    """``examples`` here, or the profile's count when larger (HYPOTHESIS_PROFILE=thorough: the
    campaign's long form, RELIABILITY.md)."""
    return max(examples, settings.default.max_examples)


@st.composite
def meshes(draw):
    """A sample with random extra fields of every relation, the schema that declares them, and
    the relation of each field for the reference: ``(space, target or None)``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 12))
    n_faces = draw(st.integers(0, 12))
    n_uvs = draw(st.integers(1, 6))
    sample = {
        "verts": rng.standard_normal((n, 3)).astype(np.float32),
        "faces": rng.integers(0, n, size=(n_faces, 3)),
        "uvs": rng.random((n_uvs, 2)).astype(np.float32),
        "faces_uvs": rng.integers(0, n_uvs, size=(n_faces, 3)).astype(np.int32),
        "label": 3,
        "path": "x.ply",
    }
    relation = {
        "verts": ("V", None),
        "faces": ("F", "verts"),
        "uvs": ("U", None),
        "faces_uvs": ("F", "uvs"),
    }
    declared = {}

    def extra(rows, trailing):
        dtype = draw(st.sampled_from(DTYPES))
        return rng.integers(0, 100, size=(rows, *trailing)).astype(dtype)

    trailing = st.sampled_from([(), (1,), (3,), (2, 2)])
    for k in range(draw(st.integers(0, 3))):  # per vertex: declared, or a PLY-style unknown name
        name = draw(st.sampled_from([f"pv{k}", f"vertex_q{k}"]))
        if name.startswith("pv"):
            declared[name] = "ragged@verts"
        sample[name] = extra(n, draw(trailing))
        relation[name] = ("V", None)
    for k in range(draw(st.integers(0, 3))):  # per face: declared, or PLY's face_<property>
        name = draw(st.sampled_from([f"pf{k}", f"face_q{k}"]))
        if name.startswith("pf"):
            declared[name] = "ragged@faces"
        sample[name] = extra(n_faces, draw(trailing))
        relation[name] = ("F", None)
    for k in range(draw(st.integers(0, 2))):  # edges into verts, with a per-edge weight
        rows, width = draw(st.integers(0, 8)), draw(st.sampled_from([None, 2, 3]))
        shape = (rows,) if width is None else (rows, width)
        dtype = draw(st.sampled_from([np.int64, np.int32, np.uint16]))
        sample[f"e{k}"] = rng.integers(0, n, size=shape).astype(dtype)
        sample[f"e{k}_w"] = rng.random(rows)
        declared[f"e{k}"] = "index:verts"
        declared[f"e{k}_w"] = f"ragged@e{k}"
        relation[f"e{k}"] = (f"E{k}", "verts")
        relation[f"e{k}_w"] = (f"E{k}", None)
    if n_faces and draw(st.booleans()):  # a field indexing faces (a selection of faces)
        rows = draw(st.integers(0, 6))
        sample["marked"] = rng.integers(0, n_faces, size=rows)
        declared["marked"] = "index:faces"
        relation["marked"] = ("M", "faces")
    return sample, DEFAULT_SCHEMA.extend(declared), relation


ORDER = ["V", "U", "F", "E0", "E1", "M"]  # every space after the spaces it indexes


def reference(sample, relation, field, keep):
    """Plain-Python selection: ``kept[space]`` is the list of original rows that stay, in order."""
    kept = {}
    new_number = {}
    selected_space = relation[field][0]
    for space in ORDER:
        names = [k for k, (s, _) in relation.items() if s == space]
        if not names:
            continue
        rows = list(range(len(sample[names[0]])))
        if space == selected_space:
            rows = [int(r) for r in keep]
        for name in names:
            target = relation[name][1]
            if target is None:
                continue
            alive = new_number[relation[target][0]]
            flat = sample[name].reshape(len(sample[name]), int(np.prod(sample[name].shape[1:])))
            rows = [r for r in rows if all(int(i) in alive for i in flat[r])]
        kept[space] = rows
        new_number[space] = {old: new for new, old in enumerate(rows)}
    out = {}
    for name, (space, target) in relation.items():
        rows = [sample[name][r] for r in kept[space]]
        if target is not None:
            numbering = new_number[relation[target][0]]
            rows = [
                np.vectorize(numbering.get)(r) if np.ndim(r) else numbering[int(r)] for r in rows
            ]
        out[name] = rows
    return out


def check_against_reference(got, sample, relation, field, keep):
    want = reference(sample, relation, field, keep)
    for name, rows in want.items():
        assert got[name].dtype == sample[name].dtype, name
        assert got[name].shape[1:] == sample[name].shape[1:], name
        assert len(got[name]) == len(rows), name
        for a, b in zip(got[name], rows):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert got["label"] == 3 and got["path"] == "x.ply"


@settings(max_examples=long_form(150), deadline=None)
@given(meshes(), st.data())
def test_selecting_vertices_or_faces_keeps_every_field_consistent(mesh, data):
    sample, schema, relation = mesh
    field = data.draw(st.sampled_from(["verts", "faces"]))
    rows = len(sample[field])
    keep = data.draw(st.lists(st.integers(0, max(rows - 1, 0)), unique=True, max_size=rows))
    keep = [k for k in keep if k < rows]  # a permutation of a subset: drops and reorders
    before = {k: v.copy() for k, v in sample.items() if isinstance(v, np.ndarray)}
    got = select_rows(sample, field, np.array(keep, dtype=np.int64), schema=schema)
    check_against_reference(got, sample, relation, field, keep)
    for name, value in before.items():  # the input sample is untouched
        np.testing.assert_array_equal(sample[name], value)
    # and the result batches: every index field is in range for its target
    hl.collate([got, got], schema=schema)


@settings(max_examples=long_form(60), deadline=None)
@given(meshes(), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_subsample_and_sphere_crop_go_through_the_same_mechanism(mesh, n, seed):
    sample, schema, relation = mesh
    for transform in (T.Subsample(n, schema=schema), T.SphereCrop(n, schema=schema)):
        got = transform(sample, np.random.default_rng(seed))
        if len(sample["verts"]) <= n:
            assert got["verts"] is sample["verts"]
            continue
        # which vertices survived, told by their coordinates (distinct random floats)
        keep = [int(np.flatnonzero((sample["verts"] == v).all(1))[0]) for v in got["verts"]]
        assert keep == sorted(keep) and len(keep) == n
        check_against_reference(got, sample, relation, "verts", keep)


def test_subsample_faces_selects_per_face_fields():
    sample = {
        "verts": np.zeros((4, 3), np.float32),
        "faces": np.array([[0, 1, 2], [1, 2, 3], [0, 2, 3], [0, 1, 3]]),
        "face_quality": np.arange(4, dtype=np.float32),
        "intensity": np.arange(4, dtype=np.float32),
    }
    got = T.Subsample(1, field="faces")(sample, np.random.default_rng(0))
    assert len(got["faces"]) == 1 and len(got["face_quality"]) == 1
    assert got["faces"][0].tolist() == sample["faces"][int(got["face_quality"][0])].tolist()
    assert got["intensity"] is sample["intensity"]  # vertices are not selected


# --- the examples ------------------------------------------------------------------------


def test_edges_and_declared_index_fields_follow_the_vertices():
    """Subsample renumbered the vertices but left edges / ``index:verts`` fields stale."""
    sample = {
        "verts": np.arange(15, dtype=np.float32).reshape(5, 3),
        "edges": np.array([[0, 1], [1, 2], [3, 4], [4, 0]]),
        "links": np.array([4, 3, 2]),
    }
    schema = DEFAULT_SCHEMA.extend({"links": "index:verts"})
    got = select_rows(sample, "verts", [1, 3, 4], schema=schema)
    assert got["edges"].tolist() == [[1, 2]]  # (3, 4) renumbered; edges touching 0 or 2 dropped
    assert got["links"].tolist() == [2, 1]
    batch = hl.collate([got], schema=schema)
    assert batch.edges.padded().tolist() == [[[1, 2]]]


def test_ply_face_property_keeps_one_row_per_face(tmp_path):
    """A PLY ``face_quality`` kept 4 rows for 1 face after a crop."""
    path = tmp_path / "q.ply"
    path.write_text(
        "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
        "property float z\nelement face 4\nproperty list uchar int vertex_indices\n"
        "property float quality\nend_header\n0 0 0\n1 0 0\n0 1 0\n9 9 9\n8 8 8\n"
        "3 0 1 2 0.5\n3 0 1 3 1.5\n3 1 3 4 2.5\n3 2 3 4 3.5\n"
    )
    sample = hl.io.load(path)
    for seed in range(6):
        for transform in (T.SphereCrop(3), T.Subsample(3)):
            got = transform(sample, np.random.default_rng(seed))
            assert len(got["face_quality"]) == len(got["faces"])
            for face, quality in zip(got["faces"], got["face_quality"]):
                corners = [got["verts"][i].tolist() for i in face]
                original = next(
                    q for f, q in zip(sample["faces"], sample["face_quality"])
                    if [sample["verts"][i].tolist() for i in f] == corners
                )  # fmt: skip
                assert quality == original
            hl.collate([got, sample])


def test_obj_tables_keep_their_rows_and_polygons_follow(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text(
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 5 5 5\nvt 0 0\nvt 1 0\nvt 1 1\nvn 0 0 1\n"
        "f 1/1/1 2/2/1 3/3/1 4/1/1\nf 2/1/1 5/2/1 3/3/1\n"
    )
    sample = hl.io.load(path, polygons=True)
    got = select_rows(sample, "verts", [0, 1, 2, 3])
    assert got["normals"].shape == (1, 3) and got["uvs"].shape == (3, 2)  # tables: untouched
    assert got["faces"].tolist() == [[0, 1, 2], [0, 2, 3]]
    assert len(got["faces_uvs"]) == 2 and len(got["faces_normals"]) == 2
    assert got["polygons"].tolist() == [0, 1, 2, 3] and got["polygon_sizes"].tolist() == [4]


def test_real_files_crop_consistently(shared_meshes):
    files = sorted(p for p in shared_meshes.rglob("*") if p.suffix.lower() in (".obj", ".ply"))
    files = [p for p in files if p.stat().st_size < 256 * 1024][:60]
    rng = np.random.default_rng(0)
    for path in files:
        try:
            sample = hl.io.load(path)
        except hl.io.ReadError:
            continue
        n = max(1, len(sample["verts"]) // 2)
        got = T.Subsample(n)(sample, rng)
        hl.collate([got, got])  # every index field in range
        for name, value in got.items():
            if name.startswith("face_") and name in sample and not name.endswith("_sizes"):
                assert len(value) == len(got["faces"]), (path, name)


def test_tensor_fields_follow_too():
    sample = {
        "verts": torch.arange(12.0).reshape(4, 3),
        "faces": torch.tensor([[0, 1, 2], [1, 2, 3]], dtype=torch.int32),
    }
    got = select_rows(sample, "verts", [1, 2, 3])
    assert got["faces"].dtype == torch.int32 and got["faces"].tolist() == [[0, 1, 2]]


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ([0, 0], "must not repeat"),
        ([5], r"\[0, 3\)"),
        ([-1], r"\[0, 3\)"),
        ([0.5], "integer positions"),
        ([[0]], "integer positions"),
        (np.array([True, False]), r"shape \(3,\)"),
    ],
)
def test_bad_selections_name_the_field(keep, message):
    sample = {"verts": np.zeros((3, 3), np.float32)}
    with pytest.raises(ValueError, match=f"'verts'.*{message}|{message}"):
        select_rows(sample, "verts", keep)


def test_stale_or_mismatched_relations_are_errors_not_silent():
    base = {"verts": np.zeros((3, 3), np.float32), "faces": np.array([[0, 1, 7]])}
    with pytest.raises(ValueError, match="'faces' holds index 7"):
        select_rows(base, "verts", [0, 1])
    with pytest.raises(ValueError, match="no array field 'points'"):
        select_rows(base, "points", [0])
    with pytest.raises(ValueError, match="'faces' indexes 'verts' but has dtype float64"):
        select_rows({**base, "faces": np.zeros((1, 3))}, "verts", [0, 1])
    polygons = {
        "verts": np.zeros((3, 3), np.float32),
        "polygons": np.array([0, 1, 2]),
        "polygon_sizes": np.array([4]),
    }
    with pytest.raises(ValueError, match="group sizes sum to 4"):
        select_rows(polygons, "verts", [0, 1])


def test_unreferenced_obj_tables_of_another_count_are_kept():
    """Real OBJ files (draco's cube_att_partial.obj) hold vn lines no face uses: 6 for 8 verts."""
    sample = {
        "verts": np.arange(24, dtype=np.float32).reshape(8, 3),
        "normals": np.zeros((6, 3), np.float32),
        "colors": np.arange(24, dtype=np.float32).reshape(8, 3),
    }
    got = select_rows(sample, "verts", [7, 0])
    assert got["normals"] is sample["normals"]
    np.testing.assert_array_equal(got["colors"], sample["colors"][[7, 0]])


def test_unmatched_face_list_properties_are_dropped_when_faces_change():
    sample = {
        "verts": np.zeros((4, 3), np.float32),
        "faces": np.array([[0, 1, 2], [0, 2, 3]]),
        "face_tex": np.arange(4),  # a per-polygon list property: 1 quad -> 2 triangles
        "face_tex_sizes": np.array([4]),
    }
    got = select_rows(sample, "verts", [0, 1, 2])
    assert "face_tex" not in got and "face_tex_sizes" not in got
    assert got["faces"].tolist() == [[0, 1, 2]]
