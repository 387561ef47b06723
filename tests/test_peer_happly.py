"""happly's reader tests, translated: nmwsharp/happly test/main_test.cpp (TypedReadWriteTest,
TypedListReadWriteTest, TypePromotionTest, MeshTest; each case names its test).

happly writes a property of each type in ASCII, binary and byte-swapped binary and reads it back
unchanged; here the same values are written by the test and must come back from ``load`` with
the stored dtype (extra properties keep their type), including each type's extremes.
"""

from __future__ import annotations

import numpy as np
import pytest
from peer_io import PLY_FORMATS, XYZ, equal, ply, read, refuse

TYPES = {
    "char": np.int8, "uchar": np.uint8, "short": np.int16, "ushort": np.uint16,
    "int": np.int32, "uint": np.uint32, "float": np.float32, "double": np.float64,
}  # fmt: skip


def extremes(ply_type: str) -> list:
    """Values a reader must keep exactly: the type's limits, 0, small and negative ones."""
    dtype = TYPES[ply_type]
    if np.dtype(dtype).kind == "f":
        info = np.finfo(dtype)
        values = [0.0, -0.0, 1.5, -3.25, float(info.max), float(info.min), float(info.tiny)]
        return [float(dtype(v)) for v in values] + [float(dtype(1 / 3))]
    info = np.iinfo(dtype)
    return sorted({int(info.min), int(info.min) + 1, 0, 1, 7, int(info.max) - 1, int(info.max)})


@pytest.mark.parametrize("fmt", PLY_FORMATS)
@pytest.mark.parametrize("ply_type", sorted(TYPES))
def test_typed_read(tmp_path, ply_type, fmt):  # TypedReadWriteTest.ReadWrite<T>{ASCII,Binary,Swap}
    values = extremes(ply_type)
    header = ["element vertex 1", *XYZ, f"element testElement {len(values)}"]
    data = ply(
        fmt, [*header, f"property {ply_type} testData"], [[[0, 0, 0]], [[v] for v in values]]
    )
    sample = read(tmp_path, data, ".ply")
    equal(sample["testElement_testData"], np.array(values, dtype=TYPES[ply_type]), TYPES[ply_type])


@pytest.mark.parametrize("fmt", PLY_FORMATS)
@pytest.mark.parametrize("ply_type", sorted(TYPES))
def test_typed_list_read(tmp_path, ply_type, fmt):  # TypedListReadWriteTest.ReadWrite<T>*
    values = extremes(ply_type)
    lists = [values, [], values[:1], values[::-1]]
    header = ["element testElement 4", f"property list uchar {ply_type} testData"]
    sample = read(tmp_path, ply(fmt, header, [[[v] for v in lists]]), ".ply")
    flat = np.array([x for v in lists for x in v], dtype=TYPES[ply_type])
    equal(sample["testElement_testData"], flat, TYPES[ply_type])
    equal(sample["testElement_testData_sizes"], [len(v) for v in lists])


@pytest.mark.parametrize("fmt", PLY_FORMATS)
@pytest.mark.parametrize("index_type", ["char", "uchar", "short", "ushort", "int", "uint"])
def test_face_index_types(tmp_path, index_type, fmt):  # TypePromotionTest.PromoteFaceInd / Sign
    header = ["element vertex 4", *XYZ, "element face 2"]
    header.append(f"property list uchar {index_type} vertex_indices")
    rows = [[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], [[[0, 1, 2]], [[0, 2, 3]]]]
    sample = read(tmp_path, ply(fmt, header, rows), ".ply")
    equal(sample["faces"], [[0, 1, 2], [0, 2, 3]], np.int64)


@pytest.mark.parametrize("fmt", PLY_FORMATS)
@pytest.mark.parametrize("bad", [-1, 4, 127])
def test_face_index_outside_the_vertices(tmp_path, bad, fmt):  # TypePromotionTest.FaceIndThrow
    header = ["element vertex 4", *XYZ, "element face 1", "property list uchar char vertex_indices"]
    rows = [[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], [[[0, 1, bad]]]]
    refuse(tmp_path, ply(fmt, header, rows), ".ply", f"refers to vertex {bad}")


def test_platonic_shelf_agrees_in_every_encoding(shared_meshes):  # MeshTest.ReadWrite*Mesh
    from hetload.io import load

    root = shared_meshes / "nmwsharp__happly/test/sampledata"
    names = ["platonic_shelf_ascii.ply", "platonic_shelf.ply", "platonic_shelf_big_endian.ply"]
    samples = [load(root / name, dtype=None, polygons=True) for name in names]
    reference = samples[0]
    # the face element comes before the vertices; double coordinates kept as stored
    assert reference["verts"].shape == (50, 3) and reference["verts"].dtype == np.float64
    assert len(reference["polygon_sizes"]) == 50 and set(reference["polygon_sizes"]) >= {3, 4, 5}
    for sample in samples[1:]:
        assert sample.keys() == reference.keys()
        for key in reference:
            equal(sample[key], reference[key], reference[key].dtype)
