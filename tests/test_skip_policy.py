"""The skip policy never yields an empty batch and never makes ranks step unequally.

Regression: under ``on_error="skip"`` files that failed to scan got size 0, so the sampler
grouped the broken files together; a batch whose every sample was skipped came back without
fields (``AttributeError: the batch has no field 'verts'``), and ``device.pad`` raised in the
middle of an epoch. Now files the scan cannot read are left out of the plan (and reported), and a
batch whose every sample fails at load time gets one substitute (reported)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

import hetload as hl
from hetload.data import MeshFolder, ShardDataset
from hetload.data.substitute import SizeOrder, get_batch
from hetload.errors import ErrorPolicy
from hetload.samplers import BucketBatchSampler
from hetload.shards.writer import write_shards


def _obj(n: int, bad_face: bool = False) -> str:
    """An OBJ of ``n`` vertices; with ``bad_face`` a face points past them (only a full load
    notices: the size scan counts lines)."""
    lines = [f"v {i} {i % 3} {i % 5}" for i in range(n)]
    lines.append(f"f 1 2 {n + 5 if bad_face else 3}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def folder(tmp_path) -> Path:
    """12 good meshes (10-43 vertices), 4 that fail at load time (50 vertices, the largest: any
    batching in size order puts some of them in a batch of their own), 4 that fail the scan
    (empty files)."""
    root = tmp_path / "meshes"
    root.mkdir()
    for i in range(12):
        (root / f"good_{i:02d}.obj").write_text(_obj(10 + 3 * i))
    for i in range(4):
        (root / f"late_{i}.obj").write_text(_obj(50, bad_face=True))
        (root / f"empty_{i}.obj").write_text("")
    return root


def test_scan_failures_are_left_out_of_the_plan_and_reported(folder):
    ds = MeshFolder(folder, on_error="skip", index=None, progress=False)
    names = [p.name for p in ds.files]
    assert not [n for n in names if n.startswith("empty")]
    assert len(ds) == len(ds.sizes) == 16 and (ds.sizes > 0).all()
    reported = {Path(s.source).name for s in ds.report}
    assert reported == {f"empty_{i}.obj" for i in range(4)}


def test_a_batch_of_only_failing_samples_gets_a_reported_substitute(folder):
    ds = MeshFolder(folder, on_error="skip", fields=["verts"], index=None, progress=False)
    late = [i for i, p in enumerate(ds.files) if p.name.startswith("late")]
    samples = ds.__getitems__(late)
    assert len(samples) == 1 and samples[0] is not None
    # the substitute: the readable sample nearest below them in (size, index) order, so the
    # batch's budget holds
    assert len(samples[0]["verts"]) == 43
    notes = [s for s in ds.report if "served in their place" in s.reason]
    assert len(notes) == 1 and "good_11.obj" in notes[0].reason
    batch = hl.collate(samples)
    assert len(batch) == 1 and batch.verts.values.shape == (43, 3)
    # a mixed batch only drops its failures: nothing is added
    mixed = ds.__getitems__([late[0], 0, 1])
    assert mixed[0] is None and len(hl.collate(mixed)) == 2


@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_batch_non_empty_and_ranks_step_equally(folder, num_workers):
    """Two ranks over the same folder: the batch count is the sampler's on both, every batch
    has samples, every good sample comes, and every skip is in the report."""
    steps, reasons = [], []
    for rank in range(2):
        ds = MeshFolder(folder, on_error="skip", fields=["verts"], index=None, progress=False)
        sampler = BucketBatchSampler(
            ds.sizes, max_tokens=160, seed=3, num_replicas=2, rank=rank, shuffle=False
        )
        loader = DataLoader(
            ds, batch_sampler=sampler, collate_fn=hl.collate, num_workers=num_workers
        )
        batches = list(loader)
        assert len(batches) == len(sampler)
        assert all(len(batch) > 0 and batch.verts.values.shape[0] > 0 for batch in batches)
        for batch in batches:
            assert len(batch) * int(batch.verts.lengths.max()) <= 160  # the budget held
        steps.append(len(batches))
        reasons += [s.reason for s in ds.report]
    assert steps[0] == steps[1]
    assert any("out of range" in r for r in reasons)  # each load failure is reported
    assert any("served in their place" in r for r in reasons)  # and so is the substitute


def test_build_loader_with_device_pad_runs_a_whole_epoch_under_skip(folder, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"dataset:\n  type: MeshFolder\n  root: {folder}\n  fields: [verts]\n  on_error: skip\n"
        "  options: {progress: false}\n"
        "sampler:\n  max_tokens: 200\n  shuffle: false\n"
        "device:\n  type: cpu\n  pad: [verts]\n"
    )
    for timed in (False, True):
        loader = hl.build_loader(config, timed=timed)
        loader.set_epoch(0)
        batches = list(loader)
        assert len(batches) == len(loader)
        assert all(len(b) > 0 and b.verts.padded().shape[0] == len(b) for b in batches)
        report = loader.dataset.report
        assert any("served in their place" in s.reason for s in report)


def test_shard_dataset_batch_of_unreadable_samples_gets_a_substitute(tmp_path):
    samples = [
        {"verts": np.ones((n, 3), np.float32), "label": i} for i, n in enumerate(range(1, 9))
    ]
    write_shards(samples, tmp_path, max_count=4)
    path = tmp_path / "shard-000001.tar"
    path.write_bytes(path.read_bytes()[:1024])  # samples 4..7 unreadable
    ds = ShardDataset(tmp_path, on_error="skip")
    got = ds.__getitems__([5, 6, 7])
    assert len(got) == 1 and int(got[0]["label"]) == 3  # the next readable below in size
    assert any("served in their place" in s.reason for s in ds.report)
    sampler = BucketBatchSampler(ds.sizes, max_tokens=16, shuffle=False)
    batches = list(DataLoader(ds, batch_sampler=sampler, collate_fn=hl.collate))
    assert len(batches) == len(sampler) and all(len(b) > 0 for b in batches)


def test_size_order_and_get_batch_reference():
    """A plain reference: the substitute is the nearest sample below in (size, index) order,
    then above; when nothing can be read the error says so."""
    sizes = np.array([5, 3, 9, 3, 7])
    order = SizeOrder(sizes)
    assert list(order.candidates(4)) == [0, 3, 1, 2]  # below 7: 5, 3 (index 3), 3 (index 1)
    assert list(order.candidates(1)) == [3, 0, 4, 2]  # nothing below: upwards
    readable = {2: "c", 3: "d"}
    policy = ErrorPolicy("skip")
    got = get_batch([4, 0], readable.get, order, policy, str)
    assert got == ["d"] and "sample 3 (3) was served" in policy.report[-1].reason
    with pytest.raises(ValueError, match="no sample can be read"):
        get_batch([0, 1], {}.get, order, policy, str)
    assert get_batch([2, 4], readable.get, order, policy, str) == ["c", None]


def test_a_systematic_failure_stops_after_a_bounded_search(folder):
    """A field no sample has makes every sample fail: the substitute search gives up with an
    error saying so, after at most MAX_TRIES reads, instead of reading the whole dataset for
    every batch."""
    from hetload.data.substitute import MAX_TRIES

    reads: list[int] = []
    order = SizeOrder(np.arange(1000))
    with pytest.raises(ValueError, match="nearest to them in size were all skipped"):
        get_batch([500, 501], lambda i: reads.append(i), order, ErrorPolicy("skip"), str)
    assert len(reads) == 2 + MAX_TRIES
    ds = MeshFolder(folder, on_error="skip", fields=["normals"], index=None, progress=False)
    with pytest.raises(ValueError, match="no sample can be read"):
        ds.__getitems__([0, 1])


def test_mesh_folder_counts_are_unchanged_for_clean_data(folder):
    """No substitute is ever served when nothing fails: each sample exactly once."""
    for path in folder.glob("late_*"):
        path.unlink()
    ds = MeshFolder(folder, on_error="skip", fields=["verts"], index=None, progress=False)
    sampler = BucketBatchSampler(ds.sizes, max_tokens=160, seed=1)
    seen = Counter()
    for batch in DataLoader(ds, batch_sampler=sampler, collate_fn=hl.collate):
        seen.update(int(n) for n in batch.verts.lengths)
    assert seen == Counter(int(n) for n in ds.sizes)
