"""hetload.io over every mesh file in ../shared/data/meshes (files written by other tools)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import hetload as hl
from hetload.io import ReadError, load, scan

MESH_SUFFIXES = {".obj", ".ply", ".off", ".stl"}

# Files hetload refuses, each for a reason a user can act on (the message names it).
EXPECTED_ERRORS = {
    # its faces count vertices from 1 (face 1 names vertex 6 of 0..5)
    "NVIDIAGameWorks__kaolin/tests/samples/simple_off/model.off": "refers to vertex 6",
    "google__draco/testdata/float_inf_point_cloud.ply": "not finite",
    "google__draco/testdata/inf_nan.obj": "not finite",
    "mikedh__trimesh/models/fuze_ascii.ply": "has 21 values, its properties take 15",
    "mikedh__trimesh/models/nancolor.obj": "field 'colors': row 6 is not finite",
    "mikedh__trimesh/models/notenoughindices.obj": "at least 3 corners",
    "mikedh__trimesh/models/points_emptyascii.ply": "follow the last element",
    "tinyobjloader__tinyobjloader/models/invalid-face-definition.obj": "at least 3 corners",
    "tinyobjloader__tinyobjloader/models/invalid-relative-texture-index.obj": "out of range",
    "tinyobjloader__tinyobjloader/models/invalid-relative-vertex-index.obj": "out of range",
    "tinyobjloader__tinyobjloader/models/issue-140-zero-face-idx.obj": "OBJ indices start at 1",
    "tinyobjloader__tinyobjloader/models/test-nan.obj": "'1.#IND' is not a number",
}


@pytest.fixture(scope="module")
def manifest(shared_meshes):
    with open(shared_meshes / "MANIFEST.tsv", newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh, delimiter="\t")}


@pytest.fixture(scope="module")
def loaded(shared_meshes):
    """Every mesh file -> its sample, or the ReadError it raised."""
    out = {}
    for path in sorted(shared_meshes.rglob("*")):
        if path.suffix.lower() not in MESH_SUFFIXES:
            continue
        key = path.relative_to(shared_meshes).as_posix()
        try:
            out[key] = load(path, polygons=True)
        except ReadError as exc:
            out[key] = exc
    return out


def test_every_file_loads_or_raises_read_error(loaded, manifest):
    # the fixture already proves nothing but ReadError escapes; here: which ones, and why
    assert set(loaded) == set(manifest)
    errors = {k: v for k, v in loaded.items() if isinstance(v, ReadError)}
    assert set(errors) == set(EXPECTED_ERRORS)
    for key, exc in errors.items():
        assert EXPECTED_ERRORS[key] in str(exc), str(exc)
        assert key in str(exc) and str(exc.path).endswith(key)


def test_vertex_and_face_counts_match_the_file(loaded, manifest):
    checked = 0
    for key, sample in loaded.items():
        row = manifest[key]
        if isinstance(sample, ReadError):
            continue
        assert len(sample["verts"]) == int(row["n_vertices"]), key
        if row["format"] == "stl":  # three vertices per triangle, as stored
            assert len(sample.get("faces", ())) == int(row["n_faces"]), key
            continue
        n_polygons = len(sample.get("polygon_sizes", ()))
        assert n_polygons == int(row["n_faces"]), key
        if row["face_arity"].startswith("3:") and "," not in row["face_arity"]:
            assert len(sample["faces"]) == n_polygons, key
        checked += 1
    assert checked > 150


def test_scan_counts_match_the_manifest(shared_meshes, manifest):
    for key, row in manifest.items():
        try:
            info = scan(shared_meshes / key)
        except ReadError:
            assert row["bytes"] != "0" and key in EXPECTED_ERRORS
            continue
        assert (info.n_verts, info.n_faces) == (int(row["n_vertices"]), int(row["n_faces"])), key


def test_samples_are_well_formed(loaded):
    for key, sample in loaded.items():
        if isinstance(sample, ReadError):
            continue
        verts = sample["verts"]
        assert verts.dtype == np.float32 and verts.ndim == 2 and verts.shape[1] == 3, key
        for name, target in (
            ("faces", "verts"),
            ("faces_uvs", "uvs"),
            ("faces_normals", "normals"),
        ):
            if name in sample:
                idx = sample[name]
                assert idx.dtype == np.int64 and idx.shape[1] == 3, key
                # -1: a corner without a uv / normal in a file where other corners have one
                lowest = 0 if name == "faces" else -1
                assert idx.min() >= lowest and idx.max() < len(sample[target]), (key, name)
        if "faces" in sample:
            for name in ("faces_uvs", "faces_normals", "face_groups", "face_colors"):
                if name in sample:
                    assert len(sample[name]) == len(sample["faces"]), (key, name)


def test_vertices_agree_with_trimesh_where_it_keeps_order(shared_meshes, manifest, loaded):
    trimesh = pytest.importorskip("trimesh")
    compared = 0
    for key, row in manifest.items():
        sample = loaded[key]
        if row["vertices_vs_file"] != "identical" or isinstance(sample, ReadError):
            continue
        if float(row["load_ms"] or 0) > 150:  # keep the test fast; the big ones are benched
            continue
        mesh = trimesh.load(shared_meshes / key, process=False)
        np.testing.assert_allclose(sample["verts"], mesh.vertices, rtol=1e-6, atol=1e-6)
        pure_triangles = row["face_arity"].startswith("3:") and "," not in row["face_arity"]
        if pure_triangles and hasattr(mesh, "faces"):
            np.testing.assert_array_equal(sample["faces"], mesh.faces)
        compared += 1
    assert compared > 60


def test_real_samples_collate_and_come_back_bit_for_bit(loaded):
    keys = ("verts", "faces")
    samples = [
        {k: s[k] for k in keys}
        for s in loaded.values()
        if not isinstance(s, ReadError) and "faces" in s
    ][:40]
    batch = hl.collate(samples)
    for i, sample in enumerate(samples):
        back = batch.sample(i)
        for k in keys:
            np.testing.assert_array_equal(back[k].numpy(), sample[k])
    for got, want in zip(batch.verts.unbind(), samples):
        np.testing.assert_array_equal(got.numpy(), want["verts"])


def test_files_with_the_same_fields_collate_whole(loaded):
    mesh = "mikedh__trimesh/models/fuze.ply"
    sample = loaded[mesh]
    batch = hl.collate([sample, sample])
    back = batch.sample(1)
    for k, v in sample.items():
        np.testing.assert_array_equal(back[k].numpy(), v)


def test_obj_keeps_the_files_vertices_where_trimesh_splits_them(loaded):
    # trimesh gives 3840 vertices for this 642-vertex icosphere (split at normal seams)
    sample = loaded["mikedh__trimesh/models/ico4.obj"]
    assert sample["verts"].shape == (642, 3)
    assert sample["normals"].shape == (1280, 3)
    assert sample["faces_normals"].shape == (1280, 3)


def test_obj_groups_become_face_groups(loaded):
    sample = loaded["mikedh__trimesh/models/groups.obj"]
    groups = sample["face_groups"]
    assert groups.shape == (len(sample["faces"]),)
    assert groups.min() == 0 and len(np.unique(groups)) > 1


def test_nonfinite_files_load_when_allowed(shared_meshes):
    sample = load(shared_meshes / "google__draco/testdata/inf_nan.obj", allow_nonfinite=True)
    assert not np.isfinite(sample["verts"]).all()
    cloud = load(
        shared_meshes / "google__draco/testdata/float_inf_point_cloud.ply", allow_nonfinite=True
    )
    assert len(cloud["verts"]) == 16 and "faces" not in cloud


def test_binary_ply_variants_agree(shared_meshes):
    shelf = shared_meshes / "nmwsharp__happly/test/sampledata"
    little = load(shelf / "platonic_shelf.ply", dtype=np.float64, polygons=True)
    big = load(shelf / "platonic_shelf_big_endian.ply", dtype=np.float64, polygons=True)
    text = load(shelf / "platonic_shelf_ascii.ply", dtype=np.float64, polygons=True)
    for other in (big, text):
        assert other.keys() == little.keys()
        for k in little:
            np.testing.assert_array_equal(other[k], little[k])
    assert sorted(set(little["polygon_sizes"].tolist())) == [3, 4, 5]


def test_cr_only_header_and_mixed_arity_binary(shared_meshes):
    box = load(shared_meshes / "google__draco/testdata/Box.ply", polygons=True)
    assert box["verts"].shape == (24, 3) and box["colors"].dtype == np.uint8
    assert sorted(box["polygon_sizes"].tolist()) == [3] * 4 + [4] * 4
    assert len(box["faces"]) == 4 + 2 * 4
    assert box["material_ambient_red"].shape == (1,)
