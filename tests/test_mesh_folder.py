"""MeshFolder: sizes from scan, the on-disk size index, on_error with a report across workers."""

from __future__ import annotations

import csv
import json
import os
import pickle
import struct
import tempfile

import numpy as np
import pytest
import torch
from test_io_real_files import EXPECTED_ERRORS

import hetload as hl
import hetload.data.mesh_folder as mesh_folder
from hetload.data import MeshFolder
from hetload.io import ReadError
from hetload.transforms import Compose, Jitter, RandomRotation


def write_obj(path, n_verts: int) -> None:
    verts = "".join(f"v {i} {i % 3} {i % 5}\n" for i in range(n_verts))
    faces = "".join(f"f {i + 1} {i + 2} {i + 3}\n" for i in range(n_verts - 2))
    path.write_text(verts + faces)


def write_ply(path, n_verts: int) -> None:
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {n_verts}\n"
        "property float x\nproperty float y\nproperty float z\n"
        f"element face {n_verts - 2}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    verts = b"".join(struct.pack("<3f", i, -i, 2 * i) for i in range(n_verts))
    faces = b"".join(struct.pack("<B3i", 3, i, i + 1, i + 2) for i in range(n_verts - 2))
    path.write_bytes(header.encode() + verts + faces)


@pytest.fixture
def folder(tmp_path):
    """Eight good meshes in two formats (one in a subfolder), two broken ones."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        write_obj(root / f"m{i}.obj", 3 + i)
        write_ply(root / ("sub" if i == 0 else ".") / f"p{i}.PLY", 10 + i)
    # scan notices this one (header declares more bytes than the file holds)
    ply = root / "truncated.ply"
    write_ply(ply, 50)
    ply.write_bytes(ply.read_bytes()[:-800])
    # only a full load notices this one (a face index out of range)
    (root / "bad_index.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    (root / "notes.txt").write_text("not a mesh")
    return root


BROKEN = {"truncated.ply", "bad_index.obj"}


def test_files_sizes_and_field_sizes(folder):
    ds = MeshFolder(folder, on_error="skip")
    names = [p.relative_to(folder).as_posix() for p in ds.files]
    assert names == sorted(names) and "notes.txt" not in names and "sub/p0.PLY" in names
    # the file the scan cannot read is left out (named in the report): no sampler plans it
    assert len(ds) == 9 and "truncated.ply" not in names
    assert [os.path.basename(s.source) for s in ds.report] == ["truncated.ply"]
    for i, path in enumerate(ds.files):
        sample = hl.io.load(path) if path.name != "bad_index.obj" else None
        expected = 3 if sample is None else len(sample["verts"])
        assert ds.sizes[i] == expected
        assert ds.field_sizes["verts"][i] == expected
    assert ds.sizes.dtype == np.int64 and ds.field_sizes["faces"].dtype == np.int64
    assert ds.field_sizes["faces"][names.index("m3.obj")] == 4


def test_raise_stops_at_the_first_bad_file(folder):
    with pytest.raises(ReadError, match="truncated"):
        MeshFolder(folder)
    (folder / "truncated.ply").unlink()
    ds = MeshFolder(folder)
    bad = next(i for i, p in enumerate(ds.files) if p.name == "bad_index.obj")
    with pytest.raises(ReadError, match="out of range"):
        ds[bad]


def test_skip_returns_none_records_and_collate_drops_it(folder):
    ds = MeshFolder(folder, on_error="skip", fields=("verts", "faces"))
    samples = [ds[i] for i in range(len(ds))]
    assert sum(s is None for s in samples) == 1  # bad_index.obj; truncated.ply is not in files
    assert {os.path.basename(s.source) for s in ds.report} == BROKEN
    batch = hl.collate(samples)
    assert len(batch) == 8
    good = [s for s in samples if s is not None]
    for i, sample in enumerate(good):
        np.testing.assert_array_equal(batch.sample(i)["faces"].numpy(), sample["faces"])


def test_warn_warns(folder):
    with pytest.warns(hl.errors.HetloadWarning) as record:
        ds = MeshFolder(folder, on_error="warn")
        assert [ds[i] is None for i in range(len(ds))].count(True) == 1
    assert {name for name in BROKEN if any(name in str(w.message) for w in record)} == BROKEN


def test_report_lists_every_broken_file_across_workers(folder):
    report = folder.parent / "report.jsonl"
    ds = MeshFolder(folder, on_error="skip", fields=("verts",), report_path=report)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=3, num_workers=2, collate_fn=hl.collate, multiprocessing_context="fork"
    )
    seen = sum(len(batch) for batch in loader)
    assert seen == 8
    assert {os.path.basename(s.source) for s in ds.report} == BROKEN
    pids = {json.loads(line)["pid"] for line in report.read_text().splitlines()}
    assert os.getpid() in pids and len(pids) >= 2  # the scan error here, the load error there
    reasons = " ".join(s.reason for s in ds.report)
    assert "out of range" in reasons and "truncated" in reasons


def test_default_report_file_is_removed_with_the_dataset(folder):
    ds = MeshFolder(folder, on_error="skip")
    path = ds.report_path
    assert path.exists()  # the scan error is in it
    del ds
    assert not path.exists()


def test_index_is_written_beside_the_data_and_reused(folder, monkeypatch):
    MeshFolder(folder, on_error="skip")
    index = json.loads((folder / mesh_folder.INDEX_NAME).read_text())
    assert len(index["files"]) == 10 and index["files"]["truncated.ply"][4]

    calls = []
    real_scan = mesh_folder.scan
    monkeypatch.setattr(mesh_folder, "scan", lambda p: calls.append(p) or real_scan(p))
    again = MeshFolder(folder, on_error="skip")
    assert calls == [] and len(again.report) == 1  # the cached scan error is still reported

    # a changed file (size and mtime) is rescanned, alone
    write_obj(folder / "m0.obj", 9)
    changed = MeshFolder(folder, on_error="skip")
    assert [p.name for p in calls] == ["m0.obj"]
    assert changed.sizes[[p.name for p in changed.files].index("m0.obj")] == 9


def test_read_only_folder_falls_back_to_the_cache_dir(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real_mkstemp = tempfile.mkstemp

    def refuse_in_data(*args, dir=None, **kwargs):
        if dir is not None and os.path.samefile(dir, folder):
            raise PermissionError(13, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(mesh_folder.tempfile, "mkstemp", refuse_in_data)
    ds = MeshFolder(folder, on_error="skip")
    assert not (folder / mesh_folder.INDEX_NAME).exists()
    cached = list((tmp_path / "cache" / "hetload").glob("index-*.json"))
    assert len(cached) == 1
    assert MeshFolder(folder, on_error="skip").sizes.tolist() == ds.sizes.tolist()


def test_unwritable_index_path_keeps_sizes_in_memory(folder, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    ds = MeshFolder(folder, on_error="skip", index=blocker / "index.json")
    assert len(ds.sizes) == 9 and not (folder / mesh_folder.INDEX_NAME).exists()
    assert not any(p.name.startswith("index.json.") for p in tmp_path.rglob("*"))


def test_missing_field_is_a_bad_file(folder):
    (folder / "cloud.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
        "property float z\nend_header\n0 0 0\n"
    )
    ds = MeshFolder(folder, on_error="skip", fields=("verts", "faces"))
    cloud = next(i for i, p in enumerate(ds.files) if p.name == "cloud.ply")
    assert ds[cloud] is None
    assert any("has no 'faces' field" in s.reason for s in ds.report)


def test_transforms_are_seeded_by_seed_epoch_index(folder):
    (folder / "truncated.ply").unlink()
    (folder / "bad_index.obj").unlink()
    aug = Compose([RandomRotation(), Jitter(0.1, 0.2)])
    ds = MeshFolder(folder, transform=aug, seed=3, fields=("verts",))
    first = [ds[i]["verts"] for i in range(len(ds))]
    again = [ds[i]["verts"] for i in range(len(ds))]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], hl.io.load(ds.files[0])["verts"])
    ds.set_epoch(1)
    assert not np.array_equal(ds[0]["verts"], first[0])
    other_seed = MeshFolder(folder, transform=aug, seed=4, fields=("verts",))
    assert not np.array_equal(other_seed[0]["verts"], first[0])

    # workers (forked, persistent across epochs) give the same samples as the main process
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=None,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context="fork",
    )
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        expected = [MeshFolder.__getitem__(ds, i)["verts"] for i in range(len(ds))]
        got = [s["verts"] for s in loader]
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_plain_callable_wrappers_still_get_the_sample_generator(folder):
    (folder / "truncated.ply").unlink()
    jitter = Jitter(0.1, 0.2)

    def chain(sample):  # what a config's step list does: no rng argument
        return jitter(sample)

    ds = MeshFolder(folder, transform=chain, seed=1, on_error="skip")
    good = [p.name for p in ds.files].index("m2.obj")
    first = ds[good]["verts"]
    np.testing.assert_array_equal(ds[good]["verts"], first)  # seeded, not fresh entropy
    ds.set_epoch(1)
    assert not np.array_equal(ds[good]["verts"], first)


def test_dataset_pickles(folder):
    ds = MeshFolder(folder, on_error="skip", transform=Jitter())
    back = pickle.loads(pickle.dumps(ds))
    assert back.files == ds.files and back.sizes.tolist() == ds.sizes.tolist()
    good = [p.name for p in ds.files].index("m2.obj")
    np.testing.assert_array_equal(back[good]["verts"], ds[good]["verts"])


def test_not_a_directory(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        MeshFolder(tmp_path / "missing")


def test_real_corpus_sizes_and_report(shared_meshes, tmp_path):
    with open(shared_meshes / "MANIFEST.tsv", newline="") as fh:
        manifest = {r["path"]: r for r in csv.DictReader(fh, delimiter="\t")}
    # the corpus folder is read-only: the index goes to an explicit file
    ds = MeshFolder(shared_meshes, on_error="skip", index=tmp_path / "idx.json", progress=False)
    # every format load reads: OBJ, PLY, OFF, STL here; a file the size scan refuses is left
    # out of the dataset and named in the report (the skip policy), never planned
    found = sum(r["format"] in ("obj", "ply", "off", "stl") for r in manifest.values())
    scan_refused = {s.source for s in ds.report}
    assert len(ds) == found - len(scan_refused)
    assert not scan_refused & {str(p) for p in ds.files}
    unreadable = {p.relative_to(shared_meshes).as_posix() for p in ds.unreadable}
    assert {"MANIFEST.tsv", "README.md"} <= unreadable  # listed, not loaded
    assert not any(name.endswith((".mtl", ".jpg", ".png")) for name in unreadable)
    for i, path in enumerate(ds.files):
        row = manifest[path.relative_to(shared_meshes).as_posix()]
        assert ds.sizes[i] == int(row["n_vertices"]), path
        # the faces budget counts triangles: (arity - 2) per polygon of the MANIFEST's arities
        pairs = [part.split(":") for part in row["face_arity"].split(",") if part]
        # (not for a file plyfile fails on, one with faces of < 3 corners that load refuses, nor
        # one whose '\\' continuations the MANIFEST's arities ignore: the load check covers them)
        plain = "continuation" not in row["edge_cases"]
        if plain and all(a.isdigit() and int(a) >= 3 for a, _ in pairs):
            triangles = sum((int(a) - 2) * int(n) for a, n in pairs)
            assert ds.field_sizes["faces"][i] == triangles, path
    loaded = [ds[i] for i in range(len(ds))]
    for i, sample in enumerate(loaded):
        if sample is not None:
            assert ds.field_sizes["faces"][i] == len(sample.get("faces", ())), ds.files[i]
    skipped = {s.source for s in ds.report} - scan_refused
    assert skipped == {str(p) for p, s in zip(ds.files, loaded) if s is None}
    # tests/test_io_real_files.py names each and why: refused at the scan or at the load
    refused = {str(shared_meshes / key) for key in EXPECTED_ERRORS}
    assert skipped | scan_refused == refused


def test_raise_inside_a_worker_reaches_the_main_process_as_read_error(folder):
    (folder / "truncated.ply").unlink()
    ds = MeshFolder(folder)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=1, collate_fn=hl.collate, multiprocessing_context="fork"
    )
    with pytest.raises(ReadError) as info:
        list(loader)
    assert info.value.path == str(folder / "bad_index.obj")
    assert info.value.where == "line 4" and "out of range" in info.value.reason


def test_a_folder_without_write_bits_is_left_alone_even_by_root(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder.chmod(0o555)
    try:
        MeshFolder(folder, on_error="skip")
    finally:
        folder.chmod(0o755)
    assert not (folder / mesh_folder.INDEX_NAME).exists()
    assert len(list((tmp_path / "cache" / "hetload").glob("index-*.json"))) == 1
