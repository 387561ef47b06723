"""ThreadedLoader: the batches of DataLoader(num_workers=0), in order, from threads; errors in
the consumer; no thread left behind; the sampler's state."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch
from test_batch_read import assert_same_batch
from torch.utils.data import DataLoader

import hetload
from hetload.data import ShardDataset, ThreadedLoader
from hetload.samplers import BucketBatchSampler
from hetload.shards.format import ShardError
from hetload.shards.writer import write_shards


def readers() -> int:
    return sum(t.name.startswith("hetload-reader") for t in threading.enumerate())


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(3)
    data = []
    for i, n in enumerate(rng.integers(0, 400, size=60).tolist()):
        sample = {
            "verts": rng.standard_normal((n, 3)).astype(np.float32),
            "faces": rng.integers(0, max(n, 1), (n // 2, 3)).astype(np.int32),
            "label": i % 4,
        }
        if i % 3:
            sample["colors"] = rng.integers(0, 255, (n, 3)).astype(np.uint8)
        data.append(sample)
    write_shards(data, tmp_path, max_count=9)
    return tmp_path


def sampler(ds: ShardDataset, seed: int = 0) -> BucketBatchSampler:
    return BucketBatchSampler(ds.sizes, 1500, seed=seed, max_batch_size=8)


@pytest.mark.parametrize("threads", [1, 3])
def test_same_batches_in_the_same_order_as_dataloader(shards, threads):
    # max_open=1: every read evicts another shard's handle, while other threads read
    ds = ShardDataset(shards, max_open=1)
    want = list(DataLoader(ds, batch_sampler=sampler(ds), collate_fn=hetload.collate))
    loader = ThreadedLoader(ds, sampler(ds), threads=threads, prefetch=4)
    assert len(loader) == len(want)
    got = list(loader)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert_same_batch(a, b)
    assert readers() == 0


def test_leaving_the_loop_early_joins_the_threads(shards):
    ds = ShardDataset(shards)
    loader = ThreadedLoader(ds, sampler(ds), threads=2, prefetch=6)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    gc.collect()
    assert readers() == 0
    it = iter(loader)
    next(it)
    assert readers() > 0
    it.close()
    assert readers() == 0


def test_an_error_is_raised_in_the_loop_naming_the_sample(shards):
    ds = ShardDataset(shards, check=False)
    index = ds.index
    path = shards / index.shards[2].url
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # truncate the third shard
    batches = [[0, 1], [int(index.shards[0].nsamples) + int(index.shards[1].nsamples) + 7]]
    loader = ThreadedLoader(ds, batches, threads=2)
    it = iter(loader)
    assert len(next(it)) == 2
    with pytest.raises(ShardError, match=r"shard-000002\.tar.*truncated") as info:
        next(it)
    assert any("while loading the batch of samples" in note for note in info.value.__notes__)
    gc.collect()
    assert readers() == 0


def test_state_dict_counts_the_consumed_batches_not_the_prefetched(shards):
    ds = ShardDataset(shards)
    loader = ThreadedLoader(ds, sampler(ds, seed=5), threads=2, prefetch=6)
    loader.set_epoch(1)
    full = list(loader)
    loader.set_epoch(1)
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    assert state["consumed"] == 3
    it.close()
    resumed = ThreadedLoader(ds, sampler(ds, seed=5), threads=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    assert resumed.state_dict()["consumed"] == 3
    rest = list(resumed)
    assert len(rest) == len(full) - 3
    for a, b in zip(rest, full[3:], strict=True):
        assert_same_batch(a, b)
    assert resumed.state_dict()["consumed"] == len(full)


def test_arguments_and_pinning_without_cuda(shards):
    ds = ShardDataset(shards)
    with pytest.raises(ValueError, match="threads"):
        ThreadedLoader(ds, [[0]], threads=0)
    with pytest.raises(ValueError, match="prefetch"):
        ThreadedLoader(ds, [[0]], prefetch=0)
    if torch.cuda.is_available():
        loader = ThreadedLoader(ds, [[0, 1, 2]], pin_memory=True)
        batch = next(iter(loader))
        assert batch["verts"].values.is_pinned() and batch["faces"].values.is_pinned()
    else:
        with pytest.warns(UserWarning, match="no CUDA"):
            loader = ThreadedLoader(ds, [[0, 1, 2]], pin_memory=True)
        assert len(next(iter(loader))) == 3
    with pytest.raises(TypeError, match="keeps no state"):
        ThreadedLoader(ds, [[0]]).state_dict()


def test_skipped_samples_and_substitutes_as_in_dataloader(shards):
    path = sorted(shards.glob("shard-*.tar"))[1]
    path.write_bytes(path.read_bytes()[:4096])  # most of the second shard is lost
    ds = ShardDataset(shards, on_error="skip", check=False)
    want = list(DataLoader(ds, batch_sampler=sampler(ds), collate_fn=hetload.collate))
    reasons = {(e.source, e.reason) for e in ds.report}
    assert reasons
    threaded = ShardDataset(shards, on_error="skip", check=False)
    got = list(ThreadedLoader(threaded, sampler(threaded), threads=3))
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert_same_batch(a, b)
    assert {(e.source, e.reason) for e in threaded.report} == reasons


def test_marked_batches_keep_their_repeat_flag(shards):
    from hetload.samplers.repeats import MarkedIndices, MarkRepeats

    ds = MarkRepeats(ShardDataset(shards))
    batches = [MarkedIndices([0, 1], False), MarkedIndices([2, 3, 4], True)]
    got = list(ThreadedLoader(ds, batches, threads=2))
    want = list(DataLoader(ds, batch_sampler=batches, collate_fn=hetload.collate))
    assert [b["is_repeat"].tolist() for b in got] == [[False, False], [True, True, True]]
    for a, b in zip(got, want, strict=True):
        assert_same_batch(a, b)
