"""Shards keep MeshFolder's keys: two inputs sharing a name in two formats (``chair/a.obj``
beside ``chair/a.ply``, as real folders hold) keep their whole relative paths as keys, so no two
shard samples share a key and a label or manifest looked up by key cannot apply to both."""

from __future__ import annotations

from pathlib import Path

import torch

import hetload as hl
from hetload.data import MeshFolder, ShardDataset, ShardStream
from hetload.shards.preprocess import preprocess


def _obj(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {i} {i + 1} {i + 2}" for i in range(n)] + ["f 1 2 3"]
    path.write_text("\n".join(lines) + "\n")


def _ply(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"ply\nformat ascii 1.0\nelement vertex {n}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    path.write_text(header + "".join(f"{i} 0 0\n" for i in range(n)))


def test_shard_keys_equal_mesh_folder_keys_when_names_clash(tmp_path):
    src = tmp_path / "src"
    _obj(src / "chair" / "a.obj", 4)
    _ply(src / "chair" / "a.ply", 5)
    _obj(src / "chair" / "b.obj", 6)
    _obj(src / "table" / "a.obj", 7)
    folder = MeshFolder(src, labels="folder")
    want = {folder[i]["key"]: len(folder[i]["verts"]) for i in range(len(folder))}
    assert sorted(want) == ["chair/a.obj", "chair/a.ply", "chair/b", "table/a"]

    preprocess(src, tmp_path / "shards", labels="folder", progress=False, max_count=2)
    ds = ShardDataset(tmp_path / "shards")
    per_sample = {ds[i]["key"]: len(ds[i]["verts"]) for i in range(len(ds))}
    assert per_sample == want
    # the batch-level read path and the stream give the same keys
    batch = hl.collate(ds.__getitems__(list(range(len(ds)))))
    assert dict(zip(batch.key, batch.verts.lengths.tolist())) == want
    streamed = {
        s["key"]: len(s["verts"]) for b in ShardStream(tmp_path / "shards", batch_size=2) for s in b
    }
    assert streamed == want
    # a label per key: each clashing file keeps its own class
    labels = {ds[i]["key"]: int(ds[i]["label"]) for i in range(len(ds))}
    assert labels == {folder[i]["key"]: int(folder[i]["label"]) for i in range(len(folder))}
    assert bool(torch.isfinite(batch.verts.values).all())
