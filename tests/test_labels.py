"""Labels and keys through every path: MeshFolder, ModelNet, configs, preprocess, ShardDataset,
ShardStream; and sizes that follow the transforms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hetload as hl
from hetload import transforms
from hetload.config import build_loader
from hetload.data import MeshFolder, ModelNet, ShardDataset, ShardStream
from hetload.data.labels import read_manifest
from hetload.shards.preprocess import preprocess
from hetload.shards.targets import resolve_targets


def write_off(path: Path, n: int) -> None:
    """A fan of ``n - 2`` triangles over ``n`` vertices, in plain OFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    verts = np.column_stack([np.cos(angle), np.sin(angle), angle / 7])
    lines = ["OFF", f"{n} {n - 2} 0"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"3 0 {i} {i + 1}" for i in range(1, n - 1)]
    path.write_text("\n".join(lines) + "\n")


def write_obj(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"v {i} {i % 3} {i % 5}" for i in range(n)]
    rows += [f"f 1 {i} {i + 1}" for i in range(2, n)]
    path.write_text("\n".join(rows) + "\n")


def class_folder(root: Path, files: dict[str, list[int]], empty: tuple[str, ...] = ()) -> Path:
    """``root/<class>/<name>.obj`` with the given vertex counts; ``empty`` class folders."""
    for cls, sizes in files.items():
        for j, n in enumerate(sizes):
            write_obj(root / cls / f"{cls}_{j}.obj", n)
    for cls in empty:
        (root / cls).mkdir(parents=True)
    return root


@pytest.fixture
def splits(tmp_path: Path) -> tuple[Path, Path]:
    """train has airplane, bed, chair; test has the same folders but bed is empty."""
    train = class_folder(tmp_path / "train", {"airplane": [5, 6], "bed": [4], "chair": [7, 8]})
    test = class_folder(tmp_path / "test", {"airplane": [5], "chair": [6]}, empty=("bed",))
    return train, test


# --------------------------------------------------------------------------- MeshFolder
def test_folder_labels_are_stable_when_a_class_folder_is_empty(splits):
    train, test = (MeshFolder(root, labels="folder", index=None) for root in splits)
    assert train.classes == test.classes == ["airplane", "bed", "chair"]
    assert train.labels.tolist() == [0, 0, 1, 2, 2]
    assert test.labels.tolist() == [0, 2]  # chair is 2 in both splits
    sample = test[1]
    assert sample["label"] == 2 and sample["key"] == "chair/chair_0"
    assert [train[i]["key"] for i in range(len(train))] == train.keys
    batch = hl.collate([train[i] for i in range(len(train))])
    assert batch.label.tolist() == [0, 0, 1, 2, 2]
    keys = ["airplane/airplane_0", "airplane/airplane_1", "bed/bed_0", "chair/chair_0"]
    assert batch.key == [*keys, "chair/chair_1"]


def test_every_sample_has_a_key_even_without_labels_or_with_fields(splits):
    ds = MeshFolder(splits[0], fields=["verts"], index=None)
    assert ds.classes is None and ds.labels is None
    assert set(ds[0]) == {"verts", "key"} and ds[0]["key"] == "airplane/airplane_0"


def test_mapping_callable_and_explicit_classes(splits):
    root = splits[0]
    by_key = {"airplane/airplane_0": "jet", "airplane/airplane_1": "jet", "bed/bed_0": "bed"}
    by_key |= {"chair/chair_0.obj": "chair", "chair/chair_1": 2}  # a relative path works too
    ds = MeshFolder(root, labels=by_key, classes=["bed", "chair", "jet"], index=None)
    assert ds.labels.tolist() == [2, 2, 0, 1, 2]
    named = MeshFolder(root, labels=lambda key: key.split("/")[0], index=None)
    assert named.classes == ["airplane", "bed", "chair"]
    assert named.labels.tolist() == [0, 0, 1, 2, 2]
    numbered = MeshFolder(root, labels=lambda key: len(key), index=None)
    assert numbered.classes is None and numbered[2]["label"] == len("bed/bed_0")


@pytest.mark.parametrize(
    ("labels", "classes", "message"),
    [
        ({"bed/bed_0": 1}, None, "no label for 'airplane/airplane_0'"),
        ("folder", ["airplane", "chair"], "class 'bed' is not in classes"),
        (lambda key: 1.5, None, "a label is an int or a class name, got float"),
        ("name", None, "labels must be 'folder'"),
        ("folder", ["bed", "bed"], "holds a name twice"),
    ],
)
def test_bad_labels_name_the_file_and_the_reason(splits, labels, classes, message):
    with pytest.raises(ValueError, match=message):
        MeshFolder(splits[0], labels=labels, classes=classes, index=None)


def test_a_file_outside_every_class_folder_is_an_error(splits):
    write_obj(splits[0] / "stray.obj", 4)
    with pytest.raises(ValueError, match=r"stray\.obj is not"):
        MeshFolder(splits[0], labels="folder", index=None)


def test_config_labels_use_the_same_classes(splits, tmp_path):
    config = {
        "dataset": {"type": "MeshFolder", "root": str(splits[1]), "labels": "folder"},
        "sampler": {"type": "fixed", "batch_size": 8, "shuffle": False},
        "loader": {"num_workers": 0},
    }
    loader = build_loader(config)
    assert loader.dataset.classes == ["airplane", "bed", "chair"]
    (batch,) = list(loader)
    assert batch.label.tolist() == [0, 2]


# --------------------------------------------------------------------------- ModelNet
@pytest.fixture
def modelnet(tmp_path: Path) -> Path:
    root = tmp_path / "ModelNet10"
    for cls, (n_train, n_test) in {"bathtub": (2, 1), "chair": (2, 0), "desk": (1, 2)}.items():
        for j in range(n_train):
            write_off(root / cls / "train" / f"{cls}_{j + 1:04d}.off", 5 + j)
        for j in range(n_test):
            write_off(root / cls / "test" / f"{cls}_{n_train + j + 1:04d}.off", 6 + j)
    (root / "chair" / "test").mkdir()
    return root


def test_modelnet_classes_are_the_same_in_both_splits(modelnet):
    train, test = ModelNet(modelnet, "train", index=None), ModelNet(modelnet, "test", index=None)
    assert train.classes == test.classes == ["bathtub", "chair", "desk"]
    assert train.labels.tolist() == [0, 0, 1, 1, 2]
    assert test.labels.tolist() == [0, 2, 2]
    sample = test[1]
    assert sample["key"] == "desk/test/desk_0002" and sample["label"] == 2
    assert sample["verts"].shape == (6, 3) and sample["faces"].shape == (4, 3)
    assert test.sizes.tolist() == [6, 6, 7]
    with pytest.raises(ValueError, match="split must be one of"):
        ModelNet(modelnet, "val")
    with pytest.raises(TypeError, match="sets 'labels' itself"):
        ModelNet(modelnet, labels="folder")


# --------------------------------------------------------------------------- shards
def test_preprocess_labels_folder_reaches_shard_dataset_and_stream(splits, tmp_path):
    dst = tmp_path / "shards"
    cli = [sys.executable, "-m", "hetload", "preprocess", str(splits[1]), str(dst)]
    done = subprocess.run(
        [*cli, "--labels", "folder", "--workers", "2", "--quiet"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    folder = MeshFolder(splits[1], labels="folder", index=None)
    ds = ShardDataset(dst)
    assert ds.classes == folder.classes == ["airplane", "bed", "chair"]
    for i in range(len(ds)):
        assert (ds[i]["key"], ds[i]["label"]) == (folder[i]["key"], folder[i]["label"])
    assert ShardDataset(dst, fields=["verts"])[1].keys() == {"verts", "key", "label"}
    stream = ShardStream(dst, batch_size=4, shuffle=False)
    assert stream.classes == folder.classes
    (batch,) = list(stream)
    assert batch.label.tolist() == [0, 2] and batch.key == ["airplane/airplane_0", "chair/chair_0"]
    # running again with other labels on the finished folder is refused, not mixed
    again = subprocess.run([*cli, "--quiet"], capture_output=True, text=True)
    assert again.returncode != 0 and "other inputs or settings" in again.stderr


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_preprocess_manifest_values(splits, tmp_path, suffix):
    rows = [
        ("airplane/airplane_0", "jet", 0.5),
        ("airplane/airplane_1.obj", "jet", 1.0),
        ("bed/bed_0", "bed", 2.0),
        ("chair/chair_0", "seat", 0.25),
        ("chair/chair_1", "seat", 3.0),
    ]
    manifest = tmp_path / f"manifest{suffix}"
    if suffix == ".csv":
        body = "path,label,weight,split\n" + "".join(f"{p},{c},{w},a\n" for p, c, w in rows)
    else:
        body = "".join(
            json.dumps({"path": p, "label": c, "weight": w, "split": "a"}) + "\n"
            for p, c, w in rows
        )
    manifest.write_text(body)
    preprocess(splits[0], tmp_path / "s", manifest=manifest, workers=2, progress=False)
    ds = ShardDataset(tmp_path / "s")
    assert ds.classes == ["bed", "jet", "seat"]
    got = [(ds[i]["label"], ds[i]["weight"], ds[i]["split"]) for i in range(len(ds))]
    assert got == [(1, 0.5, "a"), (1, 1.0, "a"), (0, 2.0, "a"), (2, 0.25, "a"), (2, 3.0, "a")]
    batch = hl.collate([ds[i] for i in range(len(ds))])
    assert batch.weight.tolist() == [0.5, 1.0, 2.0, 0.25, 3.0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("file,label\nairplane/airplane_0,1\n", "no row in the manifest"),
        ("name,label\nx,1\n", "no 'path' column"),
        ("path,key\nx,1\n", "column 'key' is reserved"),
        ("path,label\nx,\n", "column 'label' is empty"),
        ("path,label\nx,1\nx,2\n", "x is listed twice"),
    ],
)
def test_bad_manifests_name_the_line_and_the_reason(splits, tmp_path, body, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(body)
    with pytest.raises(ValueError, match=message):
        preprocess(splits[0], tmp_path / "s", manifest=manifest, progress=False)


def test_manifest_and_folder_labels_together_are_refused(splits, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": k, "label": 1}) + "\n" for k in ["a"]))
    assert read_manifest(manifest) == {"a": {"label": 1}}
    with pytest.raises(ValueError, match="pick one"):
        resolve_targets(splits[0], ["a.obj"], "folder", None, manifest)


def test_shard_dataset_transform_is_seeded_like_mesh_folder(splits, tmp_path):
    preprocess(splits[0], tmp_path / "s", progress=False)
    jitter = transforms.Compose([transforms.Jitter(0.1, 0.3), transforms.Subsample(5)])
    ds = ShardDataset(tmp_path / "s", transform=jitter, seed=3)
    plain = ShardDataset(tmp_path / "s")
    for i in range(len(ds)):
        expected = jitter(plain[i], transforms.sample_rng(3, 0, i))
        assert ds[i]["verts"].tobytes() == expected["verts"].tobytes()
        assert ds[i]["key"] == plain[i]["key"]
    first = ds[3]["verts"].copy()
    assert ds[3]["verts"].tobytes() == first.tobytes()  # same epoch: the same draw
    ds.set_epoch(1)
    assert ds.epoch == 1 and ds[3]["verts"].tobytes() != first.tobytes()
    assert ds.sizes.tolist() == [5, 5, 4, 5, 5]  # Subsample(5) states its output size


# --------------------------------------------------------------------------- sizes
def test_sizes_follow_the_transforms(splits):
    root = splits[0]
    raw = MeshFolder(root, index=None)
    assert raw.sizes.tolist() == [5, 6, 4, 7, 8]
    sampled = MeshFolder(root, transform=transforms.SamplePoints(32), index=None)
    assert sampled.sizes.tolist() == [32] * 5
    assert sampled.field_sizes["faces"].tolist() == [0] * 5
    assert sampled.raw_field_sizes["verts"].tolist() == [5, 6, 4, 7, 8]
    chain = transforms.Compose([transforms.Center(), transforms.Subsample(6)])
    assert MeshFolder(root, transform=chain, index=None).sizes.tolist() == [5, 6, 4, 6, 6]
    # a plain callable states nothing: sizes stay as read
    assert MeshFolder(root, transform=lambda s: s, index=None).sizes.tolist() == [5, 6, 4, 7, 8]

    class Double:
        """A custom callable that doubles the points and says so."""

        def __call__(self, sample):
            return {**sample, "verts": np.concatenate([sample["verts"]] * 2)}

        def out_size(self, n, field="verts"):
            return 2 * n if field == "verts" else n

    ds = MeshFolder(root, transform=Double(), index=None)
    assert ds.sizes.tolist() == [10, 12, 8, 14, 16]
    sampler = hl.samplers.BucketBatchSampler(ds.sizes, max_tokens=30, seed=0)
    for indices in sampler:
        batch = hl.collate([ds[i] for i in indices])
        assert len(batch) * batch.verts.max_len <= 30


def test_inline_yaml_transforms(splits, tmp_path):
    from hetload.shards.settings import load_transform_specs

    assert load_transform_specs("[Center, {Subsample: {n: 3}}]") == [
        "Center",
        {"Subsample": {"n": 3}},
    ]
    assert load_transform_specs("Center") == ["Center"]
    path = tmp_path / "t.yaml"
    path.write_text("- Center\n- {Subsample: {n: 3}}\n")
    assert load_transform_specs(path) == load_transform_specs(str(path))
    with pytest.raises(ValueError, match="no such file"):
        load_transform_specs(str(tmp_path / "missing.yaml"))
    cli = [sys.executable, "-m", "hetload", "preprocess", str(splits[0]), str(tmp_path / "s")]
    done = subprocess.run(
        [*cli, "--transform", "[{Subsample: {n: 3}}]", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert ShardDataset(tmp_path / "s").sizes.tolist() == [3] * 5


def test_parts_with_labels_merge_and_streams_budget_transformed_sizes(splits, tmp_path):
    from hetload.shards.preprocess import merge_parts

    for i in range(2):
        preprocess(splits[0], tmp_path / "p", labels="folder", part=f"{i}/2", progress=False)
    merge_parts(tmp_path / "p")
    ds = ShardDataset(tmp_path / "p")
    assert ds.classes == ["airplane", "bed", "chair"]
    assert [ds[i]["label"] for i in range(len(ds))] == [0, 0, 1, 2, 2]
    # the stream plans and cuts batches on the sizes after Subsample(3): 3 points each
    stream = ShardStream(
        tmp_path / "p", max_tokens=6, shuffle=False, transform=transforms.Subsample(3)
    )
    batches = list(stream)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(int(b.verts.lengths.max()) == 3 for b in batches)
    streamed = sorted(
        zip((k for b in batches for k in b.key), (int(x) for b in batches for x in b.label))
    )
    assert streamed == sorted((ds[i]["key"], ds[i]["label"]) for i in range(len(ds)))


def test_preprocess_takes_a_mapping_or_callable_like_mesh_folder(splits, tmp_path):
    def by_name(key: str) -> str:
        return "soft" if key.startswith("bed") else "hard"

    preprocess(splits[0], tmp_path / "s", labels=by_name, progress=False)
    ds = ShardDataset(tmp_path / "s")
    folder = MeshFolder(splits[0], labels=by_name, index=None)
    assert ds.classes == folder.classes == ["hard", "soft"]
    assert [ds[i]["label"] for i in range(len(ds))] == folder.labels.tolist() == [0, 0, 1, 0, 0]
    # the same job again is already complete; other labels on the same folder are refused
    assert preprocess(splits[0], tmp_path / "s", labels=by_name, progress=False).already_complete
    with pytest.raises(ValueError, match="other inputs or settings"):
        preprocess(splits[0], tmp_path / "s", labels=lambda key: "x", progress=False)
