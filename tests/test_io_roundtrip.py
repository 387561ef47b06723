"""Property tests: random meshes written by a tiny writer here, read back by hetload.io."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import hetload as hl
from hetload.io import load, scan


@st.composite
def meshes(draw, min_verts=0):
    """``(verts f32 [N, 3], polygons list[list[int]])`` with every index in range."""
    n = draw(st.integers(min_verts, 30))
    coords = st.floats(-1e6, 1e6, allow_nan=False, width=32)
    verts = np.array(draw(st.lists(st.tuples(coords, coords, coords), min_size=n, max_size=n)))
    verts = verts.astype(np.float32).reshape(-1, 3)
    polygons = []
    if n:
        sizes = draw(st.lists(st.integers(3, 7), max_size=20))
        for size in sizes:
            polygons.append(draw(st.lists(st.integers(0, n - 1), min_size=size, max_size=size)))
    return verts, polygons


def fan(polygons: list[list[int]]) -> np.ndarray:
    """Reference fan triangulation, one triangle at a time."""
    triangles = []
    for poly in polygons:
        for k in range(1, len(poly) - 1):
            triangles.append([poly[0], poly[k], poly[k + 1]])
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


def write_obj(path: Path, verts, polygons, negative: bool = False) -> None:
    lines = ["# written by the test"]
    for x, y, z in verts.tolist():
        lines.append(f"v {x:.9g} {y:.9g} {z:.9g}")
    for poly in polygons:
        # negative indices count back from the last vertex written so far (all of them here)
        ids = [i - len(verts) if negative else i + 1 for i in poly]
        lines.append("f " + " ".join(str(i) for i in ids))
    path.write_text("\n".join(lines) + "\n")


def write_ply(path: Path, verts, polygons, fmt: str) -> None:
    header = [
        "ply",
        f"format {fmt} 1.0",
        f"element vertex {len(verts)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(polygons)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    head = ("\n".join(header) + "\n").encode()
    if fmt == "ascii":
        rows = [f"{x:.9g} {y:.9g} {z:.9g}" for x, y, z in verts.tolist()]
        rows += [" ".join(str(i) for i in [len(p), *p]) for p in polygons]
        path.write_bytes(head + "".join(r + "\n" for r in rows).encode())
        return
    order = "<" if fmt == "binary_little_endian" else ">"
    body = b"".join(struct.pack(order + "3f", *row) for row in verts.tolist())
    body += b"".join(struct.pack(f"{order}B{len(p)}i", len(p), *p) for p in polygons)
    path.write_bytes(head + body)


def check(sample, verts, polygons):
    np.testing.assert_array_equal(sample["verts"], verts)
    if polygons:
        np.testing.assert_array_equal(sample["faces"], fan(polygons))
        np.testing.assert_array_equal(sample["polygons"], np.concatenate(polygons))
        np.testing.assert_array_equal(sample["polygon_sizes"], [len(p) for p in polygons])
    else:
        assert "faces" not in sample


@given(meshes(), st.booleans())
def test_obj_round_trip(tmp_path_factory, mesh, negative):
    verts, polygons = mesh
    path = tmp_path_factory.mktemp("obj") / "m.obj"
    write_obj(path, verts, polygons, negative)
    check(load(path, polygons=True), verts, polygons)
    assert scan(path) == ("obj", len(verts), len(polygons))


@given(meshes(), st.sampled_from(["ascii", "binary_little_endian", "binary_big_endian"]))
def test_ply_round_trip(tmp_path_factory, mesh, fmt):
    verts, polygons = mesh
    path = tmp_path_factory.mktemp("ply") / "m.ply"
    write_ply(path, verts, polygons, fmt)
    check(load(path, polygons=True), verts, polygons)
    assert scan(path) == ("ply", len(verts), len(polygons))


@given(st.lists(meshes(min_verts=1), min_size=1, max_size=4))
def test_loaded_samples_collate_and_unbind_exactly(tmp_path_factory, batch_meshes):
    folder = tmp_path_factory.mktemp("batch")
    samples = []
    for i, (verts, _) in enumerate(batch_meshes):
        # one face per mesh so every sample has the same fields
        polygons = [[0, 0, 0]]
        write_ply(folder / f"{i}.ply", verts, polygons, "binary_little_endian")
        samples.append(load(folder / f"{i}.ply"))
    batch = hl.collate(samples)
    for i, sample in enumerate(samples):
        back = batch.sample(i)
        assert back.keys() == sample.keys()
        for k in sample:
            np.testing.assert_array_equal(back[k].numpy(), sample[k])


@given(meshes(min_verts=3))
def test_per_corner_uvs_and_normals_stay_indexed(tmp_path_factory, mesh):
    verts, polygons = mesh
    path = tmp_path_factory.mktemp("objvt") / "m.obj"
    uvs = np.arange(2 * len(verts), dtype=np.float32).reshape(-1, 2) / 8
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in verts.tolist()]
    lines += [f"vt {u:.9g} {v:.9g}" for u, v in uvs.tolist()]
    lines += ["vn 0 0 1", "vn 0 1 0"]
    # uv index of a corner: its vertex index reversed; normal: parity of the corner
    n = len(verts)
    for poly in polygons:
        lines.append("f " + " ".join(f"{i + 1}/{n - i}/{k % 2 + 1}" for k, i in enumerate(poly)))
    path.write_text("\n".join(lines))
    sample = load(path)
    np.testing.assert_array_equal(sample["uvs"], uvs)
    if polygons:
        faces = fan(polygons)
        np.testing.assert_array_equal(sample["faces_uvs"], n - 1 - faces)
        corner = fan([list(range(len(p))) for p in polygons])
        np.testing.assert_array_equal(sample["faces_normals"], corner % 2)


def test_read_error_survives_pickling():
    exc = hl.io.ReadError("a.ply", "truncated", "element 'face' at byte 12")
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, ValueError)
    assert (back.path, back.reason, back.where, str(back)) == (
        exc.path,
        exc.reason,
        exc.where,
        str(exc),
    )
