"""``preprocess --layout``: the layouts (ModelNet, ShapeNetCore, ScanNet, SemanticKITTI) into
shards, with class labels and per-point labels, read back through ShardDataset and ShardStream
and compared with what the layout's own reader (hetload.data's class) gives for each key;
parallel (the bytes do not depend on the workers) and resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from layout_data import KITTI_MAP, write_kitti, write_modelnet, write_scannet, write_shapenet

from hetload.cli import main
from hetload.data import (
    ModelNet,
    ScanNetScenes,
    SemanticKITTI,
    ShapeNetCore,
    ShardDataset,
    ShardStream,
)
from hetload.shards.preprocess import preprocess

WRITERS = {
    "modelnet": (write_modelnet, ModelNet),
    "shapenet": (write_shapenet, ShapeNetCore),
    "scannet": (write_scannet, ScanNetScenes),
    "semantic-kitti": (write_kitti, SemanticKITTI),
}
OPTIONS = {
    "modelnet": {"split": "test"},
    "shapenet": {},
    "scannet": {"label_map": {i: 6 - i for i in range(7)}},
    "semantic-kitti": {"learning_map": KITTI_MAP},
}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    return a == b


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_round_trip_against_the_layout_reader(layout: str, tmp_path: Path) -> None:
    write, cls = WRITERS[layout]
    write(tmp_path / "src")
    preprocess(
        tmp_path / "src",
        tmp_path / "shards",
        max_count=2,
        workers=2,
        progress=False,
        layout=layout,
        layout_options=OPTIONS[layout],
    )
    own = cls(
        tmp_path / "src",
        **OPTIONS[layout],
        **({"index": None} if layout != "semantic-kitti" else {}),
    )
    expected = {own.keys[i]: own[i] for i in range(len(own))}
    shards = ShardDataset(tmp_path / "shards")
    assert len(shards) == len(expected)
    assert shards.classes == getattr(own, "classes", None)
    for i in range(len(shards)):
        got = shards[i]
        want = expected[got["key"]]
        assert set(got) == set(want), got["key"]
        for name in want:
            assert same(got[name], want[name]), (got["key"], name)
    # the per-point fields are rows aligned with verts
    per_point = {"labels", "semantic", "instance"} & set(shards[0])
    assert per_point or layout in ("modelnet", "shapenet")
    for name in per_point:
        assert (shards.index.rows(name) == shards.index.rows("verts")).all()
    # the stream: every sample once, the same values
    stream = ShardStream(tmp_path / "shards", batch_size=2, shuffle=False, collate_fn=None)
    seen = {}
    for batch in stream:
        for sample in batch:
            seen[sample["key"]] = sample
    assert set(seen) == set(expected)
    for key, sample in seen.items():
        for name in per_point:
            assert same(sample[name], expected[key][name]), (key, name)


def test_labels_are_mapped_and_the_workers_do_not_change_a_byte(tmp_path: Path) -> None:
    ref = write_scannet(tmp_path / "scans")
    runs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        preprocess(
            tmp_path / "scans", out, max_count=1, workers=workers, progress=False, layout="scannet"
        )
        runs.append(tree_bytes(out))
    assert runs[0] == runs[1]
    shards = ShardDataset(tmp_path / "w1")
    for i in range(len(shards)):
        sample = shards[i]
        assert sample["labels"].tolist() == ref[sample["key"]]["labels"].tolist()  # unmapped
        assert sample["labels"].dtype == np.int64


def test_an_interrupted_layout_run_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    write_scannet(tmp_path / "scans")
    clean = tmp_path / "clean"
    preprocess(tmp_path / "scans", clean, max_count=1, progress=False, layout="scannet")
    # the last scene's labels no longer match its mesh: the run stops there (on_error=raise)
    labels = tmp_path / "scans" / "scene0002_00" / "scene0002_00_vh_clean_2.labels.ply"
    good = labels.read_bytes()
    other = tmp_path / "other"
    write_scannet(other)
    labels.write_bytes((other / "scene0000_00" / "scene0000_00_vh_clean_2.labels.ply").read_bytes())
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"scene0002_00_vh_clean_2\.labels\.ply"):
        preprocess(tmp_path / "scans", out, max_count=1, progress=False, layout="scannet")
    assert (out / ".hetload-journal.jsonl").exists()
    labels.write_bytes(good)
    result = preprocess(tmp_path / "scans", out, max_count=1, progress=False, layout="scannet")
    assert result.resumed_at >= 1  # the shards written before the error are kept
    assert tree_bytes(out) == tree_bytes(clean)


def test_samples_the_layout_refuses_are_listed_in_errors(tmp_path: Path) -> None:
    write_kitti(tmp_path / "k")
    bad = tmp_path / "k" / "sequences" / "00" / "velodyne" / "000001.bin"
    bad.write_bytes(bad.read_bytes()[:-3])  # not whole points
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"000001\.bin"):
        preprocess(tmp_path / "k", out, progress=False, layout="semantic-kitti")
    result = preprocess(
        tmp_path / "k", out, progress=False, layout="semantic-kitti", on_error="skip"
    )
    shards = ShardDataset(out)
    assert "00/000001" not in {shards[i]["key"] for i in range(len(shards))}
    assert len(shards) == 4
    errors = [json.loads(s) for s in (out / "errors.jsonl").read_text().splitlines()]
    assert any("000001.bin" in e["source"] for e in errors), errors
    assert result is not None


def test_settings_errors(tmp_path: Path) -> None:
    write_modelnet(tmp_path / "m")
    with pytest.raises(ValueError, match="unknown layout 'kitti'"):
        preprocess(tmp_path / "m", tmp_path / "o", layout="kitti", progress=False)
    with pytest.raises(
        ValueError, match="layout modelnet takes no option 'synsets'; it takes: split"
    ):
        preprocess(
            tmp_path / "m", tmp_path / "o", layout="modelnet", layout_options={"synsets": []}
        )
    with pytest.raises(ValueError, match="drop --labels"):
        preprocess(tmp_path / "m", tmp_path / "o", layout="modelnet", labels="folder")
    with pytest.raises(ValueError, match="layout_options need a layout"):
        preprocess(tmp_path / "m", tmp_path / "o", layout_options={"split": "test"})


def test_cli_layout_flags(tmp_path: Path, capsys) -> None:
    ref = write_kitti(tmp_path / "k")
    (tmp_path / "map.yaml").write_text(yaml.safe_dump({"learning_map": KITTI_MAP}))
    argv = ["preprocess", str(tmp_path / "k"), str(tmp_path / "out"), "--quiet"]
    argv += ["--layout", "semantic-kitti", "--sequences", "8", "--label-map"]
    assert main([*argv, str(tmp_path / "map.yaml")]) == 0
    shards = ShardDataset(tmp_path / "out")
    keys = sorted(shards[i]["key"] for i in range(len(shards)))
    assert keys == sorted(k for k in ref if k.startswith("08/"))
    for i in range(len(shards)):
        sample = shards[i]
        mapped = [KITTI_MAP[int(v)] for v in ref[sample["key"]]["semantic"]]
        assert sample["semantic"].tolist() == mapped
    capsys.readouterr()
    assert main(["preprocess", str(tmp_path / "k"), str(tmp_path / "o2"), "--synsets", "x"]) == 2
    assert "--synsets applies to --layout shapenet" in capsys.readouterr().err
    write_scannet(tmp_path / "scans")
    (tmp_path / "split.txt").write_text("scene0001_00\n")
    argv = ["preprocess", str(tmp_path / "scans"), str(tmp_path / "s"), "--quiet"]
    assert main([*argv, "--layout", "scannet", "--scenes", str(tmp_path / "split.txt")]) == 0
    assert [ShardDataset(tmp_path / "s")[0]["key"]] == ["scene0001_00"]
