"""An adversarial pass over the datasets and layouts with the folders real users have: linked
class folders, link loops, one name in two formats, hidden and unicode names, files rewritten
after the scan, labels outside the classes, per-point labels that do not fit their cloud.

Each case must raise an error naming the file and the reason, or (under ``on_error="skip"``)
leave the sample out with a report entry: never a wrong label, a shifted key or a truncated
per-point array. Every test builds its folder in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
from pathlib import PurePosixPath

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetload.data import LabelMap, MeshFolder, ModelNet, ScanNetScenes, SemanticKITTI
from hetload.data.scannet import point_labels
from hetload.io import ReadError
from hetload.keys import sample_key, sample_keys
from hetload.transforms import SamplePoints, Subsample, Transform


def write_obj(path, n: int) -> None:
    """``n`` vertices (x = row number) and a fan of ``n - 2`` triangles."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {i} {i % 2} {i % 3}" for i in range(n)]
    lines += [f"f 1 {i + 2} {i + 3}" for i in range(n - 2)]
    path.write_text("\n".join(lines) + "\n")


def write_ply(path, n: int, label=None, label_type: str = "int") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["ply", "format ascii 1.0", f"element vertex {n}"]
    header += ["property float x", "property float y", "property float z"]
    if label is not None:
        header.append(f"property {label_type} label")
    header.append("end_header")
    rows = [f"{i} 0 0" + ("" if label is None else f" {label[i]}") for i in range(n)]
    path.write_text("\n".join(header + rows) + "\n")


def keys_and_labels(ds) -> dict[str, int]:
    return {s["key"]: s["label"] for s in (ds[i] for i in range(len(ds)))}


# ---------------------------------------------------------------------------- folder trees
def test_linked_class_folders_are_read_like_real_ones(tmp_path):
    """Python 3.11's ``**`` does not enter linked folders: a class folder linked from another
    disk had no files, silently (its class number kept, its samples gone)."""
    store = tmp_path / "store"
    write_obj(store / "chairs" / "a.obj", 4)
    write_obj(store / "chairs" / "deep" / "b.obj", 5)
    root = tmp_path / "ds"
    write_obj(root / "table" / "t.obj", 6)
    os.symlink(store / "chairs", root / "chair")
    ds = MeshFolder(root, labels="folder", index=None)
    assert ds.classes == ["chair", "table"]
    assert keys_and_labels(ds) == {"chair/a": 0, "chair/deep/b": 0, "table/t": 1}
    assert len(ds[1]["verts"]) == 5
    # the ModelNet layout (a non-recursive pattern) through a linked class folder too
    write_obj(store / "mn" / "train" / "x.off", 3)
    (store / "mn" / "train" / "x.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    os.symlink(store / "mn", root / "bed")
    mn = ModelNet(root, "train", on_error="skip", index=None)
    assert [mn[i]["key"] for i in range(len(mn))] == ["bed/train/x"]


def test_a_link_loop_is_reported_and_never_followed(tmp_path):
    root = tmp_path / "ds"
    write_obj(root / "chair" / "a.obj", 4)
    os.symlink(root, root / "chair" / "up")  # chair/up/chair/up/... forever
    with pytest.raises(ReadError, match=r"chair/up: links to a folder above it \(a loop\)"):
        MeshFolder(root, index=None)
    ds = MeshFolder(root, on_error="skip", index=None)
    assert ds.keys == ["chair/a"]  # read once, by its own path
    assert [(s.source, "loop" in s.reason) for s in ds.report] == [(str(root / "chair/up"), True)]


def test_hidden_unicode_and_spaced_names(tmp_path):
    root = tmp_path / "ds"
    write_obj(root / "chaise longue" / "é 1.obj", 4)
    write_obj(root / "椅子" / "b c.OBJ", 5)
    write_obj(root / "chaise longue" / ".hidden.obj", 3)  # hidden: never a sample
    write_obj(root / ".trash" / "x.obj", 3)
    (root / "chaise longue" / "._é 1.obj").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    ds = MeshFolder(root, labels="folder", index=None)
    assert ds.classes == ["chaise longue", "椅子"]
    assert keys_and_labels(ds) == {"chaise longue/é 1": 0, "椅子/b c": 1}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "a.obj", "A"]),
            st.sampled_from([".obj", ".OBJ", ".ply", ".Ply", ""]),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda name: name[0] + name[1],
    )
)
def test_sample_keys_are_unique_and_plain_where_they_can_be(names):
    rels = [f"c/{stem}{suffix}" for stem, suffix in names]
    keys = sample_keys(rels)
    assert len(set(keys)) == len(keys)
    plain = [sample_key(r) for r in rels]
    for rel, key, stem in zip(rels, keys, plain):
        assert key in (stem, rel)
        # the key is the plain one unless another file's plain key or path is that too
        shared = sum(stem == other for other in plain) > 1 or any(
            stem == other for other in rels if other != rel
        )
        if not shared:
            assert key == stem


def test_one_name_in_two_formats_gets_two_keys_and_no_shared_label(tmp_path):
    """``a.obj`` beside ``a.PLY`` (real corpora hold such pairs: trimesh's ``reference.obj`` /
    ``reference.ply``) were two samples with one key, and a mapping keyed ``"c/a"`` labelled
    both silently."""
    root = tmp_path / "ds"
    write_obj(root / "c" / "a.obj", 4)
    write_ply(root / "c" / "a.PLY", 5)
    write_obj(root / "c" / "b.obj", 3)
    ds = MeshFolder(root, index=None)
    assert ds.keys == ["c/a.PLY", "c/a.obj", "c/b"]
    assert [len(ds[i]["verts"]) for i in range(3)] == [5, 4, 3]
    with pytest.raises(ValueError, match=r"c/a\.PLY: no label for 'c/a\.PLY'"):
        MeshFolder(root, labels={"c/a": 1, "c/b": 0}, index=None)
    ds = MeshFolder(root, labels={"c/a.obj": 1, "c/a.PLY": 2, "c/b": 0}, index=None)
    assert keys_and_labels(ds) == {"c/a.PLY": 2, "c/a.obj": 1, "c/b": 0}


# ---------------------------------------------------------------------------- labels
@pytest.mark.parametrize(
    ("labels", "classes", "message"),
    [
        ({"c/a": 2, "c/b": 0}, ["x", "y"], r"a\.obj: label 2 is outside \[0, 2\)"),
        ({"c/a": -1, "c/b": 0}, None, r"a\.obj: label -1 is outside >= 0"),
        ({"c/a": 1, "c/b": "y"}, None, r"a\.obj: its label is a number while other files'"),
        (lambda key: np.int64(-3), ["x"], r"label -3 is outside \[0, 1\)"),
        (lambda key: 2**70, None, "does not fit int64"),
    ],
)
def test_labels_outside_the_classes_name_the_file(tmp_path, labels, classes, message):
    write_obj(tmp_path / "c" / "a.obj", 3)
    write_obj(tmp_path / "c" / "b.obj", 3)
    with pytest.raises(ValueError, match=message):
        MeshFolder(tmp_path, labels=labels, classes=classes, index=None)


def test_numbers_and_names_mix_only_with_explicit_classes(tmp_path):
    write_obj(tmp_path / "c" / "a.obj", 3)
    write_obj(tmp_path / "c" / "b.obj", 3)
    ds = MeshFolder(tmp_path, labels={"c/a": 1, "c/b": "x"}, classes=["x", "y"], index=None)
    assert ds.labels.tolist() == [1, 0]


# ---------------------------------------------------------------------------- scan vs read
def test_a_file_rewritten_after_the_scan_is_a_bad_file(tmp_path):
    """Sizes come from the scan; a file rewritten before it is read (same mtime, as ``rsync
    -t`` or a copy keeps) made ``sizes`` lie to the sampler, and the batch overran its budget."""
    write_obj(tmp_path / "a.obj", 4)
    write_obj(tmp_path / "b.obj", 5)
    ds = MeshFolder(tmp_path, on_error="skip", index=None)
    strict = MeshFolder(tmp_path, index=None)
    write_obj(tmp_path / "a.obj", 40)
    assert ds[0] is None and len(ds[1]["verts"]) == 5
    assert "has 40 verts rows now but 4 when the dataset was made" in ds.report[0].reason
    with pytest.raises(ReadError, match=r"a\.obj: has 40 verts rows now but 4"):
        strict[0]
    # fewer faces with as many vertices: the faces budget is checked too
    (tmp_path / "b.obj").write_text("".join(f"v {i} 0 0\n" for i in range(5)) + "f 1 2 3\n")
    with pytest.raises(ReadError, match=r"b\.obj: has 1 faces rows now but 3"):
        strict[1]


def test_a_scan_rewritten_after_the_dataset_was_made(tmp_path):
    seq = tmp_path / "sequences" / "00"
    (seq / "velodyne").mkdir(parents=True)
    (seq / "velodyne" / "000000.bin").write_bytes(np.zeros((5, 4), "<f4").tobytes())
    ds = SemanticKITTI(tmp_path, labels=False)
    (seq / "velodyne" / "000000.bin").write_bytes(np.zeros((9, 4), "<f4").tobytes())
    with pytest.raises(ReadError, match=r"000000\.bin: has 9 verts rows now but 5"):
        ds[0]


# ---------------------------------------------------------------------------- out_size
class _Upsample(Transform):
    """Doubles the points, and (the bug) claims it keeps their count."""

    def apply(self, sample, rng):
        sample["verts"] = np.concatenate([sample["verts"], sample["verts"]])
        return sample


def test_a_transform_whose_out_size_lies_is_an_error_whatever_on_error_says(tmp_path):
    write_obj(tmp_path / "a.obj", 4)
    for transform in (_Upsample(), lambda s: SamplePoints(64)(s)):
        ds = MeshFolder(tmp_path, transform=transform, on_error="skip", index=None)
        with pytest.raises(ValueError, match=r"a\.obj\): the transform returned \d+ rows of 'v"):
            ds[0]
    # honest claims pass: SamplePoints states n, Subsample at most n
    ds = MeshFolder(tmp_path, transform=SamplePoints(64), index=None)
    assert ds.sizes.tolist() == [64] and len(ds[0]["verts"]) == 64
    ds = MeshFolder(tmp_path, transform=Subsample(2), index=None)
    assert ds.sizes.tolist() == [2] and len(ds[0]["verts"]) == 2


# ---------------------------------------------------------------------------- SemanticKITTI
def _kitti(tmp_path, points, labels=None):
    seq = tmp_path / "sequences" / "00"
    (seq / "velodyne").mkdir(parents=True, exist_ok=True)
    (seq / "velodyne" / "000000.bin").write_bytes(np.asarray(points, "<f4").tobytes())
    if labels is not None:
        (seq / "labels").mkdir(exist_ok=True)
        (seq / "labels" / "000000.label").write_bytes(labels)
    return seq


def test_kitti_nan_remission_is_refused(tmp_path):
    points = np.ones((4, 4), np.float32)
    points[2, 3] = np.nan
    _kitti(tmp_path, points)
    with pytest.raises(ReadError, match=r"000000\.bin.*remission of point 2 is not finite"):
        SemanticKITTI(tmp_path)[0]
    kept = SemanticKITTI(tmp_path, allow_nonfinite=True)[0]["remission"]
    assert np.isnan(kept[2]) and np.isfinite(np.delete(kept, 2)).all()


@pytest.mark.parametrize("kind", ["dangling", "folder", "odd bytes"])
def test_kitti_label_file_there_but_broken(tmp_path, kind):
    seq = _kitti(tmp_path, np.zeros((3, 4)))
    (seq / "labels").mkdir()
    label = seq / "labels" / "000000.label"
    if kind == "dangling":
        os.symlink(tmp_path / "gone.label", label)
    elif kind == "folder":
        label.mkdir()
    else:
        label.write_bytes(b"\x00" * 13)  # 3.25 uint32
    with pytest.raises(ReadError) as info:
        SemanticKITTI(tmp_path)
    assert info.value.path in (str(label), str(seq / "velodyne" / "000000.bin"))
    ds = SemanticKITTI(tmp_path, on_error="skip")
    assert len(ds) == 0 and len(ds.report) == 1  # never read as an unlabelled scan


# ---------------------------------------------------------------------------- ScanNet
@pytest.mark.parametrize(
    ("values", "ply_type", "message"),
    [
        ([1, 2.5, 3], "float", "non-integral"),
        ([1, 1e19, 3], "double", "labels beyond int64"),  # cast to int64 it was -2**63
    ],
)
def test_scannet_labels_the_int64_cast_would_change(tmp_path, values, ply_type, message):
    write_ply(tmp_path / "room.ply", 3, label=values, label_type=ply_type)
    with pytest.raises(ReadError, match=rf"room\.ply: vertex property 'label' holds {message}"):
        ScanNetScenes(tmp_path, index=None)[0]


def test_point_labels_refuse_unsigned_beyond_int64(tmp_path):
    sample = {"verts": np.zeros((2, 3), np.float32), "semantic": np.array([1, 2**64 - 1], "u8")}
    with pytest.raises(ReadError, match="beyond int64"):
        point_labels(tmp_path / "x.ply", sample)


@pytest.mark.parametrize(
    ("segments", "groups", "message"),
    [
        ([0, 1.5, 1], [{"objectId": 0, "segments": [0]}], r"segIndices\[1\] is 1.5"),
        ([0, 1, 1], [{"objectId": True, "segments": [0]}], "no integer objectId"),
        ([0, 1, 1], [{"objectId": 0, "segments": [0, "1"]}], r"segments\[1\] is '1'"),
    ],
)
def test_scannet_segment_files_with_non_integers(tmp_path, segments, groups, message):
    """``np.asarray(dtype=int64)`` read segment 1.5 as 1: a vertex joined the wrong object."""
    scene = tmp_path / "scene0000_00"
    write_ply(scene / "scene0000_00_vh_clean_2.ply", 3)
    (scene / "scene0000_00_vh_clean_2.0.010000.segs.json").write_text(
        json.dumps({"segIndices": segments})
    )
    (scene / "scene0000_00.aggregation.json").write_text(json.dumps({"segGroups": groups}))
    with pytest.raises(ReadError, match=message):
        ScanNetScenes(tmp_path, index=None)[0]


# ---------------------------------------------------------------------------- LabelMap
@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([10.0, 2.7]), "whole numbers"),
        (np.array([10, 2**64 - 1], np.uint64), "beyond int64"),
        (np.array([True, False]), "must be integers"),
    ],
)
def test_label_map_refuses_ids_the_cast_would_change(values, message):
    table = LabelMap({10: 1, 2: 0, 0: 5, 1: 6})
    with pytest.raises(ReadError, match=f"frame.label.*{message}"):
        table(values, "frame.label")
    assert table(np.array([10.0, 2.0]), "frame.label").tolist() == [1, 0]


def test_keys_are_posix_relative_paths(tmp_path):
    write_obj(tmp_path / "a" / "b" / "c.d.obj", 3)
    ds = MeshFolder(tmp_path, index=None)
    assert ds.keys == ["a/b/c.d"] == [str(PurePosixPath("a/b/c.d"))]


def test_a_file_removed_while_the_dataset_is_made_is_a_bad_file(tmp_path, monkeypatch):
    write_obj(tmp_path / "a.obj", 3)
    write_obj(tmp_path / "b.obj", 4)
    real_stat = type(tmp_path).stat

    def vanish(self, *args, **kwargs):  # b.obj goes between the listing and the size scan
        if self.name == "b.obj" and getattr(vanish, "listed", 0) >= 1:
            raise FileNotFoundError(2, "No such file or directory", str(self))
        if self.name == "b.obj":
            vanish.listed = 1
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "stat", vanish)
    ds = MeshFolder(tmp_path, on_error="skip", index=None)
    assert ds.keys == ["a"] and "No such file" in ds.report[0].reason


def test_shapenet_label_survives_fields_and_transforms(tmp_path):
    """``fields=["verts"]`` or a transform building a new dict dropped ShapeNet's label (the key
    survived: MeshFolder sets it last; now the label too)."""
    from hetload.data import ShapeNetCore

    for synset in ("02691156", "03001627"):
        write_obj(tmp_path / synset / "m" / "models" / "model_normalized.obj", 3)
    for options in ({"fields": ["verts"]}, {"transform": lambda s: {"verts": s["verts"]}}):
        ds = ShapeNetCore(tmp_path, index=None, **options)
        assert [(ds[i]["key"], ds[i]["label"]) for i in range(2)] == [
            ("02691156/m", 0),
            ("03001627/m", 1),
        ]


def test_numbered_class_folders_that_sort_as_text_are_refused(tmp_path):
    """Folders ``0`` ... ``10`` sorted as text put ``10`` before ``2``: folder 2 got label 3."""
    for name in ("0", "1", "2", "10"):
        write_obj(tmp_path / name / "a.obj", 3)
    with pytest.raises(ValueError, match=r"numbers .* folder '2' would not get label 2"):
        MeshFolder(tmp_path, labels="folder", index=None)
    ds = MeshFolder(tmp_path, labels="folder", classes=["0", "1", "2", "10"], index=None)
    assert keys_and_labels(ds) == {"0/a": 0, "1/a": 1, "2/a": 2, "10/a": 3}
    by_number = MeshFolder(tmp_path, labels=lambda key: int(key.split("/")[0]), index=None)
    assert keys_and_labels(by_number) == {"0/a": 0, "1/a": 1, "2/a": 2, "10/a": 10}
    for name in ("00", "01", "02"):  # zero-padded: text order is numeric order
        write_obj(tmp_path / "padded" / name / "a.obj", 3)
    padded = MeshFolder(tmp_path / "padded", labels="folder", index=None)
    assert padded.classes == ["00", "01", "02"]


def test_layouts_leave_hidden_entries_out(tmp_path):
    """A copy made on macOS leaves ``._name`` AppleDouble files beside each file: 4096 bytes, a
    whole number of 16-byte points, so SemanticKITTI read ``._000000.bin`` as a scan of 256
    garbage points; ScanNet took ``._room.ply`` for a scene."""
    apple_double = b"\x00\x05\x16\x07" + b"\x00" * 4092
    seq = _kitti(tmp_path / "kitti", np.zeros((3, 4)))
    (seq / "velodyne" / "._000000.bin").write_bytes(apple_double)
    ds = SemanticKITTI(tmp_path / "kitti")
    assert ds.keys == ["00/000000"] and ds.sizes.tolist() == [3]
    write_ply(tmp_path / "scans" / "room.ply", 3, label=[1, 2, 3])
    (tmp_path / "scans" / "._room.ply").write_bytes(apple_double)
    (tmp_path / "scans" / ".ipynb_checkpoints").mkdir()
    assert ScanNetScenes(tmp_path / "scans", index=None).scenes == ["room"]
    from hetload.data import ShapeNetCore

    write_obj(tmp_path / "sn" / "02691156" / "m" / "models" / "model_normalized.obj", 3)
    (tmp_path / "sn" / "02691156" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "sn" / "02691156" / ".ipynb_checkpoints").mkdir()
    shapes = ShapeNetCore(tmp_path / "sn", index=None)
    assert shapes.keys == ["02691156/m"] and shapes.missing == []


@given(
    st.lists(st.sampled_from(["b", "a", "c d", "é", "10", "2"]), min_size=1, unique=True),
    st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(["x.obj", "x.ply", "y.PLY", "z"])), max_size=10
    ),
    st.sampled_from(["folder", "mapping", "callable", "numbers"]),
)
def test_labels_follow_a_plain_reference(classes, files, how):
    """Every way of giving labels, against a plain lookup: the class's position in ``classes``,
    or an error naming a file; never another number."""
    from hetload.data.labels import resolve_labels

    rels = sorted({f"{classes[i % len(classes)]}/{name}" for i, name in files})
    folder = [rel.split("/")[0] for rel in rels]
    expected = [classes.index(c) for c in folder]
    keys = sample_keys(rels)
    if how == "folder":
        spec = "folder"
    elif how == "mapping":
        spec = dict(zip(keys, folder))
    elif how == "callable":
        spec = lambda key: key.split("/")[0]  # noqa: E731
    else:  # numbers, one of them perhaps out of range
        spec = {k: e for k, e in zip(keys, expected)}
    got, names = resolve_labels("/nowhere", rels, spec, classes)
    assert names == classes and got.tolist() == expected
    if rels:
        bad = dict(zip(keys, expected)) | {keys[0]: len(classes)}
        with pytest.raises(ValueError, match=f"{rels[0]}: label {len(classes)} is outside"):
            resolve_labels("/nowhere", rels, bad, classes)


def test_fields_may_name_key_and_label(tmp_path):
    """``fields=["verts", "label"]`` made every file a bad file ("has no 'label' field"): the
    dataset sets both after the selection."""
    write_obj(tmp_path / "c" / "a.obj", 3)
    for fields in (["verts", "label"], ["verts", "key"], ["label", "key", "verts"]):
        sample = MeshFolder(tmp_path, labels="folder", fields=fields, index=None)[0]
        assert sorted(sample) == ["key", "label", "verts"]
    with pytest.raises(ReadError, match="has no 'label' field"):
        MeshFolder(tmp_path, fields=["verts", "label"], index=None)[0]  # no labels= given


def test_kitti_sequence_listed_twice_is_refused(tmp_path):
    """``[8, "08"]`` served every frame of sequence 08 twice an epoch."""
    _kitti(tmp_path, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"sequence\(s\) \['00'\] listed twice"):
        SemanticKITTI(tmp_path, [0, "00"])
    assert len(SemanticKITTI(tmp_path, [0])) == 1


def test_a_folder_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    """pathlib's glob passes over a folder it may not list (permissions): its files vanished
    from the dataset without a word. (Faked: the tests may run as root, who lists anything.)"""
    write_obj(tmp_path / "chair" / "a.obj", 3)
    write_obj(tmp_path / "table" / "b.obj", 3)
    real = os.scandir

    def scandir(path):
        if os.fspath(path).endswith("table"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ReadError, match=r"table: cannot list the folder: Permission denied"):
        MeshFolder(tmp_path, labels="folder", index=None)
    ds = MeshFolder(tmp_path, labels="folder", on_error="skip", index=None)
    assert ds.keys == ["chair/a"] and ds.classes == ["chair", "table"]
    assert [s.source for s in ds.report] == [str(tmp_path / "table")]


def test_modelnet_without_split_folders_is_refused(tmp_path):
    """``root/chair/*.off`` (no ``train/``) made the class empty in both splits, silently."""
    off = "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
    for path in ("bed/train/b.off", "bed/test/c.off", "chair/a.off"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(off)
    with pytest.raises(ValueError, match=r"chair holds \.off files but no train/ folder"):
        ModelNet(tmp_path, "train", index=None)
    (tmp_path / "chair" / "a.off").unlink()  # an empty class folder is fine: no files yet
    assert ModelNet(tmp_path, "train", index=None).classes == ["bed", "chair"]
