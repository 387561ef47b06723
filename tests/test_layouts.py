"""The layouts users have on disk: ShapeNetCore, ScanNet scenes, SemanticKITTI sequences.

Every test builds a miniature copy of the layout in ``tmp_path`` and checks what comes out
against the values it wrote: sizes without loads, labels, keys, per-point fields aligned with
``verts`` through transforms, errors that name the file, and a DataLoader pass.
"""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import hetload as hl
from hetload.data import LabelMap, ScanNetScenes, SemanticKITTI, ShapeNetCore
from hetload.errors import HetloadWarning
from hetload.io import ReadError
from hetload.samplers import BucketBatchSampler
from hetload.transforms import SamplePoints, Subsample


# ---------------------------------------------------------------------------- writers
def write_obj(path, n_verts: int, bad_index: bool = False) -> None:
    """A ShapeNet-style OBJ: material, groups, uvs, normals, ``n - 2`` triangles and one quad
    (``n`` triangles once loaded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["mtllib model_normalized.mtl", "g mesh1-geometry", "usemtl material_0_24"]
    lines += [f"v {i} {i % 3} {i % 5}" for i in range(n_verts)]
    lines += ["vt 0.5 0.25", "vn 0 0 1"]
    lines += [f"f {i + 1}/1/1 {i + 2}/1/1 {i + 3}/1/1" for i in range(n_verts - 2)]
    lines += ["g mesh2-geometry", "f 1/1/1 2/1/1 3/1/1 4/1/1"]
    if bad_index:
        lines.append(f"f 1 2 {n_verts + 7}")
    path.write_text("\n".join(lines) + "\n")


def write_ply(path, verts, props=(), faces=None, ascii_format: bool = False) -> None:
    """A PLY with ``verts`` and extra vertex properties ``(name, ply type, numpy dtype, values)``,
    little-endian binary or ASCII."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(verts)
    header = ["ply", f"format {'ascii' if ascii_format else 'binary_little_endian'} 1.0"]
    header += [f"element vertex {n}", "property float x", "property float y", "property float z"]
    header += [f"property {ptype} {name}" for name, ptype, _, _ in props]
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    text = "\n".join(header) + "\n"
    if ascii_format:
        rows = [
            " ".join([*(repr(float(c)) for c in verts[i]), *(str(v[i]) for *_, v in props)])
            for i in range(n)
        ]
        rows += [f"3 {a} {b} {c}" for a, b, c in faces or ()]
        path.write_text(text + "".join(r + "\n" for r in rows))
        return
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + [(nm, dt) for nm, _, dt, _ in props]
    body = np.empty(n, dtype=dtype)
    body["x"], body["y"], body["z"] = verts[:, 0], verts[:, 1], verts[:, 2]
    for name, _, _, values in props:
        body[name] = values
    data = text.encode() + body.tobytes()
    if faces is not None:
        data += b"".join(struct.pack("<B3i", 3, *f) for f in faces)
    path.write_bytes(data)


def grid(n: int, offset: float = 0.0) -> np.ndarray:
    """``n`` distinct points; point ``i`` has ``x == i + offset``, so a test can tell which
    vertex a row came from."""
    i = np.arange(n, dtype=np.float32)
    return np.stack([i + offset, np.sin(i), np.cos(i)], axis=1).astype(np.float32)


def strip(n: int) -> list[tuple[int, int, int]]:
    return [(i, i + 1, i + 2) for i in range(n - 2)]


def loader_pass(ds, max_tokens: int, num_workers: int = 0) -> list:
    sampler = BucketBatchSampler(ds.sizes, max_tokens=max_tokens, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=hl.collate, num_workers=num_workers)
    return list(loader)


# ---------------------------------------------------------------------------- ShapeNetCore
AIRPLANE, CHAIR, EMPTY, UNNAMED = "02691156", "03001627", "04379243", "02828884"


@pytest.fixture
def shapenet(tmp_path):
    """Two synsets with models, one empty synset folder, one synset the taxonomy omits;
    a model folder without its OBJ. Returns (root, {key: n_verts})."""
    root = tmp_path / "ShapeNetCore.v2"
    models = {
        f"{AIRPLANE}/a1": 5,
        f"{AIRPLANE}/a0": 7,
        f"{CHAIR}/c0": 4,
        f"{CHAIR}/c1": 9,
        f"{UNNAMED}/u0": 6,
    }
    for key, n in models.items():
        write_obj(root / key / "models" / "model_normalized.obj", n)
    (root / EMPTY).mkdir()
    (root / CHAIR / "no_obj" / "models").mkdir(parents=True)  # a model without its file
    taxonomy = [
        {"synsetId": AIRPLANE, "name": "airplane,aeroplane,plane", "children": []},
        {"synsetId": CHAIR, "name": "chair", "children": ["03002210"]},
        {"synsetId": EMPTY, "name": "table", "children": []},
    ]
    (root / "taxonomy.json").write_text(json.dumps(taxonomy))
    return root, models


def test_shapenet_labels_keys_sizes(shapenet):
    root, models = shapenet
    ds = ShapeNetCore(root)
    assert ds.classes == sorted([AIRPLANE, CHAIR, EMPTY, UNNAMED])  # empty synset included
    assert ds.class_names == ["airplane", UNNAMED, "chair", "table"]
    keys = sorted(models)
    assert len(ds) == len(keys)
    for i, key in enumerate(keys):
        sample = ds[i]
        assert sample["key"] == key
        assert sample["label"] == ds.classes.index(key.split("/")[0]) == ds.targets[i]
        assert len(sample["verts"]) == models[key] == ds.sizes[i]
        assert len(sample["faces"]) == models[key] == ds.field_sizes["faces"][i]


def test_shapenet_synsets_subset_and_errors(shapenet, tmp_path):
    root, _ = shapenet
    ds = ShapeNetCore(root, synsets=[CHAIR, AIRPLANE])
    assert ds.classes == [AIRPLANE, CHAIR]
    assert [ds[i]["label"] for i in range(len(ds))] == [0, 0, 1, 1]
    by_name = ShapeNetCore(root, synsets=["chair", "aeroplane"])  # taxonomy names
    assert by_name.classes == ds.classes and by_name.missing == [root / CHAIR / "no_obj"]
    with pytest.raises(ValueError, match="99999999"):
        ShapeNetCore(root, synsets=["99999999"])
    with pytest.raises(ValueError, match="'sofa'"):
        ShapeNetCore(root, synsets=["sofa"])
    (root / "taxonomy.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match=r"taxonomy\.json"):
        ShapeNetCore(root)
    (root / "taxonomy.json").unlink()
    assert ShapeNetCore(root).class_names == ShapeNetCore(root).classes


def test_shapenet_bad_model_follows_on_error(shapenet):
    root, models = shapenet
    bad = root / CHAIR / "c0" / "models" / "model_normalized.obj"
    write_obj(bad, 4, bad_index=True)  # only a full load notices
    i = sorted(models).index(f"{CHAIR}/c0")
    with pytest.raises(ReadError, match="c0"):
        ShapeNetCore(root)[i]
    ds = ShapeNetCore(root, on_error="skip")
    assert ds[i] is None and ds[i + 1]["key"] == f"{CHAIR}/c1"
    assert [s.source for s in ds.report] == [str(bad)]


def test_shapenet_transform_is_seeded_and_keeps_label_and_key(shapenet):
    root, _ = shapenet
    ds = ShapeNetCore(root, transform=SamplePoints(16), seed=3)
    first, again = ds[0], ds[0]
    np.testing.assert_array_equal(first["verts"], again["verts"])
    assert first["verts"].shape == (16, 3)
    assert first["label"] == 0 and first["key"] == f"{AIRPLANE}/a0"
    ds.set_epoch(1)
    assert not np.array_equal(ds[0]["verts"], first["verts"])


def test_shapenet_loader_pass(shapenet):
    root, models = shapenet
    ds = ShapeNetCore(root)
    batches = loader_pass(ds, max_tokens=20)
    keys = []
    for batch in batches:
        keys += batch["key"]
        for b, key in enumerate(batch["key"]):
            assert int(batch.verts.lengths[b]) == models[key]
            assert int(batch["label"][b]) == ds.classes.index(key.split("/")[0])
    assert sorted(keys) == sorted(models)


# ---------------------------------------------------------------------------- ScanNet
@pytest.fixture
def scannet(tmp_path):
    """A labelled ScanNet scene with segment files, an unlabelled one, a flat ASCII scene PLY.
    Returns (root, reference per scene)."""
    root = tmp_path / "scans"
    ref = {}
    # scene0000_00: labels.ply (ScanNet's properties), segments and objects
    n = 12
    verts = grid(n)
    label = (np.arange(n) * 7 % 40).astype(np.uint16)
    rgba = ("red", "green", "blue", "alpha")
    colors = (np.arange(n)[:, None] * [20, 7, 3, 1] % 256).astype(np.uint8)  # the scan's
    painted = np.repeat((label * 5 % 256).astype(np.uint8)[:, None], 4, axis=1)  # by label
    scene = root / "scene0000_00"
    props = [(c, "uchar", "u1", painted[:, k]) for k, c in enumerate(rgba)]
    props.append(("label", "ushort", "<u2", label))
    write_ply(scene / "scene0000_00_vh_clean_2.labels.ply", verts, props, strip(n))
    props = [(c, "uchar", "u1", colors[:, k]) for k, c in enumerate(rgba)]
    write_ply(scene / "scene0000_00_vh_clean_2.ply", verts, props, strip(n))
    segments = [10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15]
    groups = [
        {"objectId": 0, "label": "chair", "segments": [10, 12]},
        {"objectId": 1, "label": "table", "segments": [11]},
        {"objectId": 2, "label": "desk", "segments": [12, 14]},  # 12 again: the later wins
    ]
    (scene / "scene0000_00_vh_clean_2.0.010000.segs.json").write_text(
        json.dumps({"sceneId": "scene0000_00", "segIndices": segments})
    )
    (scene / "scene0000_00.aggregation.json").write_text(
        json.dumps({"sceneId": "scene0000_00", "segGroups": groups})
    )
    owner = {}
    for g in groups:
        for s in g["segments"]:
            owner[s] = g["objectId"]
    ref["scene0000_00"] = {
        "verts": verts,
        "colors": colors,
        "labels": label.astype(np.int64),
        "instance": np.array([owner.get(s, -1) for s in segments], np.int64),
    }
    # scene0707_00: a test scene, unlabelled
    verts = grid(6, offset=100)
    write_ply(root / "scene0707_00" / "scene0707_00_vh_clean_2.ply", verts, faces=strip(6))
    ref["scene0707_00"] = {"verts": verts}
    # room.ply: the simplified layout, ASCII, semantic + instance properties
    n = 9
    verts = grid(n, offset=50)
    semantic = np.arange(n) % 3
    instance = np.arange(n) // 4
    props = [("semantic", "int", "<i4", semantic), ("instance", "uchar", "u1", instance)]
    write_ply(root / "room.ply", verts, props, strip(n), ascii_format=True)
    ref["room"] = {"verts": verts, "semantic": semantic, "instance": instance}
    (root / "notes.txt").write_text("not a scene")
    (root / "scene0999_00").mkdir()  # a folder without a mesh is not a scene
    return root, ref


def test_scannet_per_point_labels_keys_sizes(scannet):
    root, ref = scannet
    ds = ScanNetScenes(root)
    assert ds.scenes == sorted(ref) == ["room", "scene0000_00", "scene0707_00"]
    for i, name in enumerate(ds.scenes):
        sample = ds[i]
        assert sample["key"] == name
        assert ds.sizes[i] == len(ref[name]["verts"])
        np.testing.assert_array_equal(sample["verts"], ref[name]["verts"])
        label_fields = {"labels", "semantic", "instance"} & set(sample)
        assert label_fields == set(ref[name]) - {"verts", "colors"}
        for field in label_fields:
            assert sample[field].dtype == np.int64
            np.testing.assert_array_equal(sample[field], ref[name][field])
    # geometry and colors from the plain mesh, labels from the .labels.ply
    assert ds.files[1].name == "scene0000_00_vh_clean_2.ply"
    assert ds.label_files[1].name == "scene0000_00_vh_clean_2.labels.ply"
    np.testing.assert_array_equal(ds[1]["colors"], ref["scene0000_00"]["colors"])


def test_scannet_labels_ply_alone_and_mismatched(scannet):
    root, ref = scannet
    plain = root / "scene0000_00" / "scene0000_00_vh_clean_2.ply"
    plain.unlink()  # only the .labels.ply: read from it, its label colors dropped
    sample = ScanNetScenes(root, ["scene0000_00"])[0]
    assert "colors" not in sample
    np.testing.assert_array_equal(sample["labels"], ref["scene0000_00"]["labels"])
    np.testing.assert_array_equal(sample["verts"], ref["scene0000_00"]["verts"])
    write_ply(plain, grid(12, offset=1), faces=strip(12))  # other vertices than the labels'
    with pytest.raises(ReadError, match=r"labels\.ply.*12 vertices are not the 12 of"):
        ScanNetScenes(root, ["scene0000_00"], index=None)[0]


def test_scannet_split_file_and_label_map(scannet, tmp_path):
    root, ref = scannet
    split = tmp_path / "scannetv2_val.txt"
    split.write_text("scene0000_00\n\n")
    table = {int(v): int(v) % 5 for v in np.unique(ref["scene0000_00"]["labels"])}
    ds = ScanNetScenes(root, split, label_map=table)
    assert len(ds) == 1
    np.testing.assert_array_equal(ds[0]["labels"], ref["scene0000_00"]["labels"] % 5)
    del table[int(ref["scene0000_00"]["labels"][3])]
    with pytest.raises(ReadError, match=r"labels\.ply.*not in the label map"):
        ScanNetScenes(root, ["scene0000_00"], label_map=table)[0]
    with pytest.raises(ValueError, match="scene0123_00"):
        ScanNetScenes(root, ["scene0123_00"])


def test_scannet_subsample_keeps_labels_aligned(scannet):
    root, ref = scannet
    ds = ScanNetScenes(root, ["scene0000_00", "room"], transform=Subsample(5), seed=1)
    for i in range(len(ds)):
        sample = ds[i]
        truth = ref[sample["key"]]
        # x tells which vertex a row came from (grid); every label field follows the verts
        rows = np.rint(sample["verts"][:, 0] - truth["verts"][0, 0]).astype(int)
        assert len(rows) == 5
        for field in set(truth) - {"verts"}:  # labels, semantic, instance, colors
            np.testing.assert_array_equal(sample[field], truth[field][rows])


@pytest.mark.parametrize(
    "breakage, names",
    [
        ("segs_length", "segs.json"),
        ("segs_missing", "segs.json"),
        ("aggregation_bad", "aggregation.json"),
        ("float_label", "room.ply"),
        ("list_label", "room.ply"),
    ],
)
def test_scannet_errors_name_the_file(scannet, breakage, names):
    root, _ = scannet
    scene = root / "scene0000_00"
    segs = scene / "scene0000_00_vh_clean_2.0.010000.segs.json"
    if breakage == "segs_length":
        segs.write_text(json.dumps({"segIndices": [1, 2, 3]}))
    elif breakage == "segs_missing":
        segs.unlink()
    elif breakage == "aggregation_bad":
        (scene / "scene0000_00.aggregation.json").write_text('{"segGroups": [{"objectId": 0}]}')
    elif breakage == "float_label":
        props = [("label", "float", "<f4", np.array([0.0, 1.5, 2.0]))]
        write_ply(root / "room.ply", grid(3), props)
    else:
        (root / "room.ply").write_text(
            "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
            "property float z\nproperty list uchar int label\nend_header\n0 0 0 1 4\n1 1 1 1 5\n"
        )
    index = 0 if breakage in ("float_label", "list_label") else 1
    with pytest.raises(ReadError, match=names.replace(".", r"\.")):
        ScanNetScenes(root, index=None)[index]
    ds = ScanNetScenes(root, on_error="skip", index=None)
    assert ds[index] is None and names in ds.report[0].source + ds.report[0].reason


@given(
    st.lists(st.integers(-2, 9), min_size=1, max_size=25),
    st.lists(st.tuples(st.integers(0, 6), st.lists(st.integers(-2, 11), max_size=6)), max_size=6),
)
def test_scannet_instances_match_a_loop(segments, groups):
    """Per-vertex objectId through the segments, the later group winning: against a loop."""
    import tempfile
    from pathlib import Path

    owner = {}
    for object_id, segs in groups:
        for seg in segs:
            owner[seg] = object_id
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp) / "scene0005_00"
        write_ply(scene / "scene0005_00_vh_clean_2.ply", grid(len(segments)))
        (scene / "scene0005_00_vh_clean_2.0.010000.segs.json").write_text(
            json.dumps({"segIndices": segments})
        )
        aggregation = [{"objectId": o, "label": "x", "segments": s} for o, s in groups]
        (scene / "scene0005_00.aggregation.json").write_text(json.dumps({"segGroups": aggregation}))
        instance = ScanNetScenes(tmp, index=None)[0]["instance"]
    assert instance.tolist() == [owner.get(seg, -1) for seg in segments]


def test_scannet_scene_claimed_twice(scannet):
    root, _ = scannet
    write_ply(root / "scene0707_00.ply", grid(3))
    with pytest.raises(ValueError, match="scene0707_00"):
        ScanNetScenes(root)


def test_scannet_loader_pass(scannet):
    root, ref = scannet
    # three copies of the labelled scene under other names batch together
    for name in ("scene0001_00", "scene0002_00"):
        (root / name).mkdir()
        src = root / "scene0000_00"
        for f in src.iterdir():
            (root / name / f.name.replace("scene0000_00", name)).write_bytes(f.read_bytes())
    ds = ScanNetScenes(
        root, ["scene0000_00", "scene0001_00", "scene0002_00"], fields=("verts", "labels")
    )
    batches = loader_pass(ds, max_tokens=30)
    keys = [k for batch in batches for k in batch["key"]]
    assert sorted(keys) == ["scene0000_00", "scene0001_00", "scene0002_00"]
    for batch in batches:
        assert batch.labels.offsets.tolist() == batch.verts.offsets.tolist()
        for labels in batch.labels.unbind():
            np.testing.assert_array_equal(labels.numpy(), ref["scene0000_00"]["labels"])
        # Pointcept's point dict takes the per-point labels as its segment
        point = hl.interop.to_pointcept(batch)
        assert point["segment"].tolist() == batch.labels.values.tolist()


# ---------------------------------------------------------------------------- SemanticKITTI
def write_scan(folder, frame: str, points: np.ndarray, labels: np.ndarray | None) -> None:
    (folder / "velodyne").mkdir(parents=True, exist_ok=True)
    (folder / "velodyne" / f"{frame}.bin").write_bytes(points.astype("<f4").tobytes())
    if labels is not None:
        (folder / "labels").mkdir(exist_ok=True)
        (folder / "labels" / f"{frame}.label").write_bytes(labels.astype("<u4").tobytes())


@pytest.fixture
def kitti(tmp_path):
    """Sequences 00 (3 frames) and 08 (2 frames) labelled, 11 (1 frame) unlabelled.
    Returns (root, {key: (points f32 [N, 4], semantic [N] | None, instance [N] | None)})."""
    root = tmp_path / "dataset"
    rng = np.random.default_rng(0)
    ref = {}
    for seq, frames, labelled in (("00", 3, True), ("08", 2, True), ("11", 1, False)):
        for f in range(frames):
            n = int(rng.integers(5, 40))
            points = rng.normal(size=(n, 4)).astype(np.float32)
            points[:, 0] = np.arange(n)  # x tells the row
            semantic = rng.choice([0, 10, 40, 252], size=n).astype(np.uint32)
            instance = rng.integers(0, 70000, size=n).astype(np.uint32) % 65536
            raw = (instance << 16) | semantic
            frame = f"{f:06d}"
            write_scan(root / "sequences" / seq, frame, points, raw if labelled else None)
            ref[f"{seq}/{frame}"] = (points, *((semantic, instance) if labelled else (None, None)))
    return root, ref


def test_kitti_fields_keys_sizes(kitti):
    root, ref = kitti
    ds = SemanticKITTI(root)
    assert ds.sequences == ["00", "08", "11"]
    assert len(ds) == len(ref)
    assert ds.labelled.tolist() == [True] * 5 + [False]
    for i, key in enumerate(sorted(ref)):
        points, semantic, instance = ref[key]
        sample = ds[i]
        assert sample["key"] == key and ds.sizes[i] == len(points)
        assert sample["verts"].dtype == np.float32 and sample["verts"].flags.c_contiguous
        np.testing.assert_array_equal(sample["verts"], points[:, :3])
        np.testing.assert_array_equal(sample["remission"], points[:, 3])
        if semantic is None:
            assert "semantic" not in sample and "instance" not in sample
        else:
            assert sample["semantic"].dtype == sample["instance"].dtype == np.int64
            np.testing.assert_array_equal(sample["semantic"], semantic)
            np.testing.assert_array_equal(sample["instance"], instance)


def test_kitti_sequences_and_splits(kitti):
    root, _ = kitti
    assert [s["key"] for s in SemanticKITTI(root, "valid")] == ["08/000000", "08/000001"]
    assert SemanticKITTI(root, [0, "08"]).sequences == ["00", "08"]
    assert len(SemanticKITTI(root, [8], labels=False)[0]) == 3  # verts, remission, key
    selected = SemanticKITTI(root, [8], fields=("verts", "key"))[0]
    assert sorted(selected) == ["key", "verts"] and selected["key"] == "08/000000"
    assert sorted(SemanticKITTI(root, [8], fields=("semantic",))[1]) == ["key", "semantic"]
    with pytest.raises(ValueError, match="12"):
        SemanticKITTI(root, "test")  # only 11 of 11-21 is here
    with pytest.raises(ValueError, match="split"):
        SemanticKITTI(root, "training")
    with pytest.raises(ValueError, match="labels"):
        SemanticKITTI(root, labels="folder")
    with pytest.raises(ValueError, match="sequences"):
        SemanticKITTI(root / "sequences")


def test_kitti_learning_map_dict_and_yaml(kitti, tmp_path):
    root, ref = kitti
    learning_map = {0: 0, 10: 1, 40: 9, 252: 1}
    config = tmp_path / "semantic-kitti.yaml"
    config.write_text(yaml.safe_dump({"labels": {0: "unlabeled"}, "learning_map": learning_map}))
    for table in (learning_map, config, yaml.safe_load(config.read_text())):
        sample = SemanticKITTI(root, [8], learning_map=table)[1]
        expected = np.array([learning_map[int(s)] for s in ref["08/000001"][1]])
        np.testing.assert_array_equal(sample["semantic"], expected)
    del learning_map[252]
    with pytest.raises(ReadError, match=r"000000\.label.*label 252"):
        SemanticKITTI(root, [0], learning_map=learning_map)[0]


def test_kitti_bin_not_whole_points(kitti):
    root, _ = kitti
    odd = root / "sequences" / "00" / "velodyne" / "000001.bin"
    odd.write_bytes(odd.read_bytes() + b"\0\0\0")
    with pytest.raises(ReadError, match=r"000001\.bin.*multiple of 16"):
        SemanticKITTI(root, [0])  # sizes come from file sizes: the constructor sees it
    ds = SemanticKITTI(root, [0], on_error="skip")
    # a scan the sizing cannot read is left out of the dataset (no sampler plans it), reported
    assert [s.source for s in ds.report] == [str(odd)]
    assert [ds[i]["key"] for i in range(len(ds))] == ["00/000000", "00/000002"]
    assert ds.label_files[1].name == "000002.label" and ds.labelled.tolist() == [True, True]


def test_kitti_label_count_differs(kitti):
    root, _ = kitti
    short = root / "sequences" / "00" / "labels" / "000002.label"
    short.write_bytes(short.read_bytes()[:-4])
    with pytest.raises(ReadError, match=r"000002\.label.*000002\.bin has \d+ points"):
        SemanticKITTI(root, [0])
    with pytest.warns(HetloadWarning, match=r"000002\.label"):
        ds = SemanticKITTI(root, [0], on_error="warn")
    # found while sizing: the scan is left out of the dataset and reported
    assert len(ds) == 2 and ds.report[0].source.endswith("000002.bin")
    assert str(short) in ds.report[0].reason


def test_kitti_missing_label_file(kitti):
    root, _ = kitti
    missing = root / "sequences" / "00" / "labels" / "000000.label"
    missing.unlink()
    ds = SemanticKITTI(root, [0])  # allowed (a test split has none) and stated in labelled
    assert ds.labelled.tolist() == [False, True, True] and "semantic" not in ds[0]
    with pytest.raises(ReadError, match=r"000000\.label.*missing"):
        SemanticKITTI(root, [0], labels=True)


def test_kitti_label_file_changed_after_construction(kitti):
    root, _ = kitti
    ds = SemanticKITTI(root, [8])
    label = root / "sequences" / "08" / "labels" / "000000.label"
    label.write_bytes(label.read_bytes() + b"\0\0\0\0")
    with pytest.raises(ReadError, match=r"000000\.label"):
        ds[0]


def test_kitti_nonfinite_points(kitti):
    root, ref = kitti
    points = ref["08/000000"][0].copy()
    points[2, 1] = np.nan
    write_scan(root / "sequences" / "08", "000000", points, None)
    with pytest.raises(ReadError, match=r"000000\.bin.*point 2"):
        SemanticKITTI(root, [8])[0]
    assert np.isnan(SemanticKITTI(root, [8], allow_nonfinite=True)[0]["verts"][2, 1])


def test_kitti_subsample_keeps_fields_aligned_and_is_seeded(kitti):
    root, ref = kitti
    ds = SemanticKITTI(root, [0], transform=Subsample(4), seed=5)
    first = [ds[i] for i in range(len(ds))]
    for sample in first:
        points, semantic, instance = ref[sample["key"]]
        rows = np.rint(sample["verts"][:, 0]).astype(int)
        np.testing.assert_array_equal(sample["remission"], points[rows, 3])
        np.testing.assert_array_equal(sample["semantic"], semantic[rows])
        np.testing.assert_array_equal(sample["instance"], instance[rows])
    np.testing.assert_array_equal(ds[0]["verts"], first[0]["verts"])
    ds.set_epoch(1)
    assert any(not np.array_equal(ds[i]["verts"], first[i]["verts"]) for i in range(len(ds)))


def test_kitti_loader_pass_with_workers(kitti):
    root, ref = kitti
    ds = SemanticKITTI(root, [0, 8], learning_map={0: 0, 10: 1, 40: 2, 252: 1})
    pickle.loads(pickle.dumps(ds))  # workers get a copy
    batches = loader_pass(ds, max_tokens=60, num_workers=2)
    keys = []
    for batch in batches:
        keys += batch["key"]
        for field in ("remission", "semantic", "instance"):
            assert batch[field].offsets.tolist() == batch.verts.offsets.tolist()
        for b, key in enumerate(batch["key"]):
            points, semantic, _ = ref[key]
            np.testing.assert_array_equal(batch.verts.unbind()[b].numpy(), points[:, :3])
            expected = np.array([{0: 0, 10: 1, 40: 2, 252: 1}[int(s)] for s in semantic])
            np.testing.assert_array_equal(batch.semantic.unbind()[b].numpy(), expected)
    assert sorted(keys) == sorted(k for k in ref if not k.startswith("11"))


# ---------------------------------------------------------------------------- LabelMap
RAW_IDS = st.one_of(st.integers(0, 300), st.integers(-(2**40), 2**40))  # dense / sparse tables


@given(st.dictionaries(RAW_IDS, st.integers(-5, 300), min_size=1, max_size=30), st.data())
def test_label_map_matches_a_dict_lookup(table, data):
    keys = sorted(table)
    values = np.array(data.draw(st.lists(st.sampled_from(keys), max_size=50)), dtype=np.int64)
    mapped = LabelMap(table)(values.reshape(-1, 1), "x.label")
    assert mapped.dtype == np.int64 and mapped.shape == (len(values), 1)
    assert mapped.ravel().tolist() == [table[v] for v in values.tolist()]
    near = st.integers(-3, 310) | st.integers(-(2**41), 2**41)  # in and out of a dense table
    unknown = data.draw(near.filter(lambda v: v not in table))
    with pytest.raises(ReadError, match=rf"x\.label.*label {unknown} \(point 1\)"):
        LabelMap(table)(np.array([keys[0], unknown]), "x.label")


@given(st.lists(st.integers(0, 2**32 - 1), max_size=40))
def test_kitti_label_bits(raw):
    """Low 16 bits semantic, high 16 instance: against Python's integer arithmetic."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        points = np.zeros((len(raw), 4), np.float32)
        write_scan(root / "sequences" / "04", "000000", points, np.array(raw, dtype=np.uint64))
        sample = SemanticKITTI(root)[0]
    assert sample["semantic"].tolist() == [r % 65536 for r in raw]
    assert sample["instance"].tolist() == [r // 65536 for r in raw]


def test_label_map_refuses_bad_tables(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        LabelMap({})
    with pytest.raises(ValueError, match="integers"):
        LabelMap({"car": 1})
    bad = tmp_path / "broken.yaml"
    bad.write_text("learning_map: [1, 2")
    with pytest.raises(ValueError, match=r"broken\.yaml"):
        LabelMap(bad)


# ---------------------------------------------------------------------------- README
def test_readme_layouts_snippet_runs(tmp_path, monkeypatch):
    """The README's "Scenes, ShapeNet and LiDAR" example, verbatim, on miniature copies."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"### Scenes, ShapeNet and LiDAR\n.*?```python\n(.+?)```", readme, re.S)
    assert block, "the README has no layouts example"
    monkeypatch.chdir(tmp_path)
    for synset in (AIRPLANE, CHAIR):
        write_obj(tmp_path / "ShapeNetCore.v2" / synset / "m0" / "models/model_normalized.obj", 5)
    (tmp_path / "ShapeNetCore.v2" / "taxonomy.json").write_text(
        json.dumps(
            [
                {"synsetId": AIRPLANE, "name": "airplane,aeroplane"},
                {"synsetId": CHAIR, "name": "chair"},
            ]
        )
    )
    scene = tmp_path / "scans" / "scene0011_00"
    props = [("label", "ushort", "<u2", np.arange(8) % 3)]
    write_ply(scene / "scene0011_00_vh_clean_2.labels.ply", grid(8), props, strip(8))
    props = [(c, "uchar", "u1", np.full(8, 90)) for c in ("red", "green", "blue", "alpha")]
    write_ply(scene / "scene0011_00_vh_clean_2.ply", grid(8), props, strip(8))
    (tmp_path / "scannetv2_val.txt").write_text("scene0011_00\n")
    raw = np.array([10, 252, 40, 10], np.uint32) | (np.arange(4, dtype=np.uint32) << 16)
    write_scan(
        tmp_path / "dataset" / "sequences" / "08", "000000", grid(4, 0)[:, [0, 1, 2, 0]], raw
    )
    (tmp_path / "semantic-kitti.yaml").write_text(
        yaml.safe_dump({"learning_map": {10: 1, 40: 9, 252: 1}})
    )

    namespace: dict = {}
    code = "import hetload as hl\nfrom torch.utils.data import DataLoader\n" + block.group(1)
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["shapes"].class_names == ["airplane", "chair"]
    assert namespace["shapes"][0]["key"] == f"{AIRPLANE}/m0"
    np.testing.assert_array_equal(namespace["scene"]["labels"], np.arange(8) % 3)
    assert (namespace["scene"]["colors"] == 90).all()
    assert namespace["scan"]["semantic"].tolist() == [1, 1, 9, 1]
    assert namespace["scan"]["instance"].tolist() == [0, 1, 2, 3]
    batch = namespace["batch"]
    assert batch["key"] == ["08/000000"]
    assert batch.semantic.offsets.tolist() == batch.verts.offsets.tolist() == [0, 4]
