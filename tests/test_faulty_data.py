"""Faulty data at scale: 10% broken files of every kind, and a truncated shard, under
``on_error="skip"``. Every good sample arrives exactly once per epoch (through DataLoader
workers and the bucketing sampler), no broken one ever does, and the report names every broken
file with its reason."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

import hetload.io as hio
from hetload import collate
from hetload.cli import main
from hetload.data import MeshFolder, ShardDataset, ShardStream
from hetload.samplers import BucketBatchSampler
from hetload.shards import ShardError
from hetload.shards.preprocess import preprocess

N_GOOD = 180
PLY_XYZ = "element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"

#: kind of damage -> (file name suffix, bytes, a pattern its reason must match)
BROKEN: dict[str, tuple[str, bytes, str]] = {
    "empty": (".obj", b"", "empty"),
    "nul bytes": (".obj", b"v 0 0 0\n\x00\x00\x7fELF\x02\x01", "NUL"),
    "nan vertex": (".obj", b"v 0 0 0\nv nan 1 2\nv 1 1 1\nf 1 2 3\n", "not finite"),
    "face index out of range": (".obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "9|range"),
    "too few coordinates": (".obj", b"v 0 0\nf 1 1 1\n", "x y z"),
    "not a number": (".obj", b"v 0 0 0\nv 1 \xff\xfe 0\nv 0 1 0\nf 1 2 3\n", "number"),
    "no end_header": (".ply", b"ply\nformat ascii 1.0\nelement vertex 1\n", "end_header"),
    "unknown property type": (
        ".ply",
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n0\n",
        "property",
    ),
    "truncated binary body": (
        ".ply",
        b"ply\nformat binary_little_endian 1.0\n"
        + PLY_XYZ.format(n=50).encode()
        + b"end_header\n"
        + bytes(100),
        "truncated",
    ),
    "huge declared count": (
        ".ply",
        b"ply\nformat binary_big_endian 1.0\n"
        + PLY_XYZ.format(n=10**12).encode()
        + b"end_header\n"
        + bytes(36),
        "truncated|declares",
    ),
}


def mesh(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(4, 300))
    verts = rng.standard_normal((n, 3)).astype(np.float32)
    return verts, rng.integers(0, n, size=(int(rng.integers(1, 2 * n)), 3))


def write_good(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    if path.suffix == ".obj":
        lines = [f"v {x!r} {y!r} {z!r}" for x, y, z in verts.astype(float).tolist()]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces.tolist()]
        path.write_text("\n".join(lines) + "\n")
        return
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        + PLY_XYZ.format(n=len(verts))
        + f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    rows = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    rows["n"], rows["i"] = 3, faces
    path.write_bytes(header.encode() + verts.tobytes() + rows.tobytes())


def fingerprint(verts) -> str:
    return hashlib.sha256(np.ascontiguousarray(verts).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, dict[str, str], dict[str, str]]:
    """``(root, {good rel path: verts fingerprint}, {broken rel path: reason pattern})``: 180
    good meshes and 20 broken files (2 of each of 10 kinds), mixed through sub-folders."""
    root = tmp_path_factory.mktemp("faulty")
    rng = np.random.default_rng(0)
    good, broken = {}, {}
    for i in range(N_GOOD):
        rel = f"d{i % 7}/good_{i:03d}.{'obj' if i % 2 else 'ply'}"
        (root / rel).parent.mkdir(exist_ok=True)
        verts, faces = mesh(rng)
        write_good(root / rel, verts, faces)
        good[rel] = fingerprint(verts)
    for k, (kind, (suffix, data, reason)) in enumerate(BROKEN.items()):
        for copy in range(2):
            rel = f"d{(k + copy) % 7}/bad_{kind.replace(' ', '_')}_{copy}{suffix}"
            (root / rel).write_bytes(data)
            broken[rel] = reason
    assert len(broken) * 10 == len(good) + len(broken)
    return root, good, broken


def epoch_of(loader: DataLoader) -> Counter:
    seen = Counter()
    for batch in loader:
        seen.update(fingerprint(v.numpy()) for v in batch.verts.unbind())
    return seen


def test_every_broken_file_really_is_one(folder):
    root, good, broken = folder
    for rel in broken:
        with pytest.raises(hio.ReadError):
            hio.load(root / rel)
    assert {fingerprint(hio.load(root / rel)["verts"]) for rel in good} == set(good.values())


def test_mesh_folder_skip_delivers_each_good_sample_once_per_epoch(folder):
    root, good, broken = folder
    ds = MeshFolder(root, on_error="skip", fields=["verts"], index=None, progress=False)
    # files the size scan cannot read are left out of the plan; those only a full load
    # notices stay in and come back as None, dropped by collate
    files = {p.relative_to(root).as_posix() for p in ds.files}
    assert good.keys() <= files and len(files - good.keys()) < len(broken)
    sampler = BucketBatchSampler(ds.sizes, max_tokens=4_000, seed=1)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=2)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        assert epoch_of(loader) == Counter(good.values()), f"epoch {epoch}"
    report = {Path(s.source).relative_to(root).as_posix(): s.reason for s in ds.report}
    assert report.keys() == broken.keys()
    for rel, reason in report.items():
        assert re.search(broken[rel], reason), f"{rel}: {reason}"


def test_check_command_lists_every_broken_file(folder, capsys):
    root, _, broken = folder
    assert main(["check", str(root)]) != 0
    out = capsys.readouterr().out
    for rel in broken:
        assert rel in out or Path(rel).name in out, rel


def test_preprocess_skip_then_shards_hold_each_good_sample_once(folder, tmp_path):
    root, good, broken = folder
    result = preprocess(
        root, tmp_path / "shards", max_count=10, on_error="skip", workers=2, progress=False
    )
    assert (result.samples, result.skipped) == (len(good), len(broken))
    errors = [json.loads(line) for line in (tmp_path / "shards" / "errors.jsonl").open()]
    assert {e["source"]: e["reason"] for e in errors}.keys() == broken.keys()
    for error in errors:
        assert re.search(broken[error["source"]], error["reason"]), error
    ds = ShardDataset(tmp_path / "shards", fields=["verts"])
    assert Counter(fingerprint(ds[i]["verts"]) for i in range(len(ds))) == Counter(good.values())


# ------------------------------------------------------------------ a truncated shard
@pytest.fixture(scope="module")
def truncated(folder, tmp_path_factory):
    """Shards of the good files with one shard cut in the middle of a sample: ``(dst, cut
    shard path, fingerprints that survive the cut, fingerprints lost with it)``."""
    root, good, _ = folder
    dst = tmp_path_factory.mktemp("truncated") / "shards"
    preprocess(root, dst, max_count=10, on_error="skip", progress=False)
    ds = ShardDataset(dst, fields=["verts"])
    shard = ds.index.shards[7]
    first = sum(s.nsamples for s in ds.index.shards[:7])
    lost = {fingerprint(ds[first + j]["verts"]) for j in range(4, shard.nsamples)}
    alive = Counter(fingerprint(ds[i]["verts"]) for i in range(len(ds)))
    for fp in lost:
        del alive[fp]
    cut = (shard.start[4] + shard.end[4]) // 2  # through the middle of its fifth sample
    path = Path(ds.index.shard_url(7))
    path.write_bytes(path.read_bytes()[:cut])
    assert len(lost) == 6 and sum(alive.values()) == len(good) - 6
    return dst, path, alive, lost


def test_truncated_shard_is_refused_up_front_under_raise(truncated):
    dst, path, _, _ = truncated
    with pytest.raises(ShardError, match=rf"{re.escape(path.name)}.*truncated"):
        ShardDataset(dst)


def test_shard_dataset_skip_serves_everything_that_survived_once_per_epoch(truncated):
    dst, path, alive, lost = truncated
    ds = ShardDataset(dst, fields=["verts"], on_error="skip")
    assert [s.source for s in ds.report] == [str(path)]
    assert "truncated" in ds.report[0].reason
    sampler = BucketBatchSampler(ds.sizes, max_tokens=4_000, seed=2)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=2)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        assert epoch_of(loader) == alive, f"epoch {epoch}"
    # the workers' skips reach this process's report (the policy is shared)
    from_workers = [s for s in ds.report[1:] if s.source.startswith(str(path))]
    assert len(from_workers) == len(lost)
    # in this process too, each sample lost with the cut is skipped with its reason
    first = sum(s.nsamples for s in ds.index.shards[:7])
    for i in range(first, first + ds.index.shards[7].nsamples):
        ds[i]
    lost_reports = [s for s in ds.report[1:] if s.source.startswith(str(path))]
    assert len(lost_reports) == len(lost)
    assert all("truncated" in s.reason for s in lost_reports)


def test_shard_stream_skip_serves_what_survived_and_names_the_shard(truncated):
    """A stream is padded back to its planned batch count (every rank must step equally), so
    a sample can come twice; none is lost beyond the cut, none of the lost ones appears, the
    loop ends, and the report names the shard."""
    dst, path, alive, lost = truncated
    stream = ShardStream(dst, batch_size=4, fields=["verts"], on_error="skip", seed=3)
    batches = list(stream)
    assert len(batches) == stream.plan(0, epoch=0).batches_per_rank()
    seen = Counter(fingerprint(v.numpy()) for b in batches for v in b.verts.unbind())
    assert seen.keys() == alive.keys() and not seen.keys() & lost
    assert any(s.source.startswith(str(path)) for s in stream.report)
