"""The process's pool of reused batch buffers (``hetload.local_pool``): a mapping is lent again
only when no tensor of its previous batch is alive, so a held batch, or any view of it, keeps
its bytes whatever is batched after it."""

from __future__ import annotations

import itertools
import os
import pickle
import threading
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch
import torch.multiprocessing  # registers torch's reductions with ForkingPickler
from threads import run_threads

import hetload as hl
from hetload import local_pool

ROWS = 40_000  # verts f32 [N, 3] + faces i64 [2N, 3], N in [ROWS / 2, ROWS): ~7 MB for 4 meshes


def meshes(seed: int, rows: int = ROWS, count: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(rows // 2, rows))
        out.append(
            {
                "verts": rng.standard_normal((n, 3)).astype(np.float32),
                "faces": rng.integers(0, n, size=(2 * n, 3)),
            }
        )
    return out


def expected(samples: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """A plain reference: rows stacked, faces shifted by the rows before them."""
    verts = np.concatenate([s["verts"] for s in samples])
    starts = np.cumsum([0] + [len(s["verts"]) for s in samples])[:-1]
    faces = np.concatenate([s["faces"] + b for s, b in zip(samples, starts)])
    return verts, faces


def assert_batch(batch: hl.HeteroBatch, samples: list[dict[str, np.ndarray]]) -> None:
    verts, faces = expected(samples)
    np.testing.assert_array_equal(batch["verts"].values.numpy(), verts)
    np.testing.assert_array_equal(batch["faces"].values.numpy(), faces)


@pytest.fixture
def fresh_pool(monkeypatch):
    """A pool of this process made anew for the test (and dropped after it)."""
    monkeypatch.setattr(local_pool, "_state", local_pool._State())
    monkeypatch.delenv("HETLOAD_POOL", raising=False)
    monkeypatch.delenv("HETLOAD_POOL_SLOTS", raising=False)
    yield
    local_pool.release()


def pooled(batch: hl.HeteroBatch) -> bool:
    return local_pool.holds(batch["verts"].values.untyped_storage())


def test_steady_state_reuses_one_mapping(fresh_pool):
    data = meshes(0)
    for _ in range(6):
        batch = hl.collate(data)
        assert pooled(batch)
        assert_batch(batch, data)
        del batch
    stats = local_pool.pool_stats()
    assert stats["lends"] == 6 and stats["created"] == 1 and stats["slots"] == 1
    assert stats["fallbacks"] == 0


def test_held_batches_and_views_keep_their_bytes(fresh_pool):
    sets = [meshes(seed) for seed in range(5)]
    held = hl.collate(sets[0])
    view = hl.collate(sets[1])["faces"].values[5:50]  # only a view of batch 1 survives
    array = hl.collate(sets[2])["verts"].values.numpy()  # only a numpy array of batch 2
    want_view = expected(sets[1])[1][5:50]
    for samples in sets[3:] * 3:  # batches made and dropped while those live
        assert_batch(hl.collate(samples), samples)
    assert_batch(held, sets[0])
    np.testing.assert_array_equal(view.numpy(), want_view)
    np.testing.assert_array_equal(array, expected(sets[2])[0])
    assert local_pool.pool_stats()["slots"] == 4  # three held, one cycling (regrown)


def test_every_slot_busy_falls_back_to_plain_memory(fresh_pool, monkeypatch):
    monkeypatch.setenv("HETLOAD_POOL_SLOTS", "2")
    data = meshes(1)
    batches = [hl.collate(data) for _ in range(4)]
    assert [pooled(b) for b in batches] == [True, True, False, False]
    for batch in batches:
        assert_batch(batch, data)
    assert local_pool.pool_stats()["fallbacks"] == 2


def test_a_larger_batch_regrows_a_free_slot_and_small_requests_stay_plain(fresh_pool):
    small, large = meshes(2, rows=20_000), meshes(3, rows=60_000)
    batch = hl.collate(small)
    first = local_pool.pool_stats()["bytes"]
    del batch
    batch = hl.collate(large)
    assert_batch(batch, large)
    stats = local_pool.pool_stats()
    assert stats["slots"] == 1 and stats["bytes"] >= 1.25 * first and stats["created"] == 2
    tiny = hl.collate(meshes(4, rows=100))
    assert not pooled(tiny)  # under POOL_MIN: the heap serves it


def test_release_unmaps_only_free_slots(fresh_pool):
    held = hl.collate(meshes(5))
    hl.collate(meshes(6))  # dropped at once: its slot is free
    assert local_pool.pool_stats()["slots"] == 2
    assert local_pool.release() > 0
    assert local_pool.pool_stats()["slots"] == 1
    assert_batch(held, meshes(5))


def test_pool_off_by_environment(fresh_pool, monkeypatch):
    monkeypatch.setenv("HETLOAD_POOL", "0")
    batch = hl.collate(meshes(7))
    assert not pooled(batch)
    assert local_pool.pool_stats()["lends"] == 0


def test_a_bad_slot_count_is_refused_by_name(fresh_pool, monkeypatch):
    monkeypatch.setenv("HETLOAD_POOL_SLOTS", "eight")
    with pytest.raises(ValueError, match="HETLOAD_POOL_SLOTS must be an integer"):
        hl.collate(meshes(8))


def test_pickled_and_shared_batches_stay_correct(fresh_pool):
    data = meshes(10)
    batch = hl.collate(data)
    copy = pickle.loads(pickle.dumps(batch))
    # what torch.multiprocessing queues do: the storage moves into shared memory
    shared = ForkingPickler.loads(ForkingPickler.dumps(batch))
    for b in (batch, copy, shared):
        assert_batch(b, data)
    other = meshes(11)
    for _ in range(3):
        hl.collate(other)
    for b in (batch, copy, shared):
        assert_batch(b, data)


def test_threads_never_share_a_live_mapping(fresh_pool):
    """Four threads collate and hold batches: live batches never overlap in memory and each
    keeps its bytes (the pool's lock and weak references)."""
    live: list[tuple[int, int]] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        kept = []
        for k in range(6):
            samples = meshes(100 * seed + k, rows=10_000)
            batch = hl.collate(samples)
            storage = batch["verts"].values.untyped_storage()
            span = (storage.data_ptr(), storage.data_ptr() + storage.nbytes())
            with lock:
                live.append(span)
            kept.append((batch, samples, span))
            if len(kept) > 2:
                old, old_samples, old_span = kept.pop(0)
                assert_batch(old, old_samples)
                with lock:
                    live.remove(old_span)
            with lock:
                spans = sorted(live)
                assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
        for batch, samples, span in kept:
            assert_batch(batch, samples)
            with lock:  # before the batch is dropped: its memory may be lent again
                live.remove(span)
        kept.clear()

    run_threads(work, [(seed,) for seed in range(4)])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_starts_an_empty_pool_and_cannot_touch_the_parents(fresh_pool):
    data = meshes(12)
    held = hl.collate(data)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own pool; writing its batches leaves the parent's alone
        try:
            torch.set_num_threads(1)  # the parent's OpenMP threads do not exist here
            empty = local_pool.pool_stats()["slots"] == 0
            for _ in range(3):
                hl.collate(meshes(13))
            held["verts"].values.fill_(0)  # a private copy: the parent never sees this
            os.write(write, b"1" if empty else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert_batch(held, data)


def test_threaded_batch_reads_of_large_batches_all_held(fresh_pool, tmp_path):
    """The shard batch read takes its buffer from the pool too: four threads read batches of
    ~3 MB, every batch held to the end (slots run out, later ones fall back), each equal to
    the plain collate of the per-sample reads."""
    from hetload.data import ShardDataset, ThreadedLoader
    from hetload.data.substitute import getitems
    from hetload.shards.writer import write_shards

    write_shards(meshes(20, rows=6_000, count=48), tmp_path, max_count=12)
    ds = ShardDataset(tmp_path)
    batches = [list(range(i, 48, 4)) for i in range(4)] * 3  # 12 samples (~3 MB) each
    got = list(ThreadedLoader(ds, batches, threads=4, prefetch=8))
    assert local_pool.pool_stats()["lends"] >= 8  # the batch reads went through the pool
    reference = ShardDataset(tmp_path)
    for indices, batch in zip(batches, got, strict=True):
        want = hl.collate(getitems(reference, indices))
        for name in ("verts", "faces"):
            assert torch.equal(batch[name].values, want[name].values), name
            assert torch.equal(batch[name].offsets, want[name].offsets), name
