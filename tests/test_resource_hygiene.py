"""Resource hygiene: thousands of batches over ShardDataset with worker processes, epoch after
epoch, leave open file descriptors and resident memory where they were after warm-up, in the
main process and in every worker; streams, repeated preprocess runs and dataset handles leave
nothing open behind them.

Bounds (Linux ``/proc``): file descriptors exactly back to the warm-up count (a worker's open
shard handles at most ``max_open``), resident memory within ``RSS_SLACK`` of the warm-up value.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from hetload import collate
from hetload.data import ShardDataset, ShardStream
from hetload.samplers import BucketBatchSampler
from hetload.shards import write_shards
from hetload.shards.preprocess import preprocess

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")

RSS_SLACK = 24 * 2**20
MAX_OPEN = 4


def fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def settle_queues(timeout: float = 60.0) -> None:
    """Wait until every multiprocessing queue this process closed has released its pipe.

    ``DataLoader`` ends an epoch's workers with ``Queue.close()`` on each worker's index queue,
    which only hands a sentinel to the queue's feeder thread: that thread closes both ends of the
    queue's pipe a moment later, after the loop has already returned. Counting descriptors before
    it runs sees 2 per queue too many (a flaky ``[18, 18, 18, 18, 20, ...]`` on a loaded
    machine). A feeder thread that never finishes is a leak, and fails here.
    """
    for thread in threading.enumerate():
        if thread.name == "QueueFeederThread":
            thread.join(timeout)
            assert not thread.is_alive(), "a closed queue's feeder thread never finished"
    gc.collect()


def children() -> list[int]:
    """Live child processes of this one (DataLoader workers)."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == me and fields[0] != "Z":
                out.append(int(entry))
    return sorted(out)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """600 small samples in 60 shards: far more shards than a worker may keep open."""
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(600):
        n = int(rng.integers(8, 120))
        samples.append(
            {
                "verts": rng.standard_normal((n, 3)).astype(np.float32),
                "faces": rng.integers(0, n, size=(2 * n, 3)),
            }
        )
    dst = tmp_path_factory.mktemp("hygiene") / "shards"
    write_shards(samples, dst, max_count=10)
    return dst


def test_thousands_of_batches_with_persistent_workers(shards):
    ds = ShardDataset(shards, max_open=MAX_OPEN)
    sampler = BucketBatchSampler(ds.sizes, max_tokens=600, seed=0)
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=2,
        prefetch_factor=4,
        persistent_workers=True,
    )
    batches, epoch = 0, 0
    main_fds = main_rss = None
    worker_start: dict[int, tuple[int, int]] = {}
    while batches < 3000:
        sampler.set_epoch(epoch)
        for batch in loader:
            assert batch.verts.values.shape[1] == 3
            batches += 1
        epoch += 1
        if epoch == 2:  # warmed up: workers started, every shard seen, allocator settled
            gc.collect()
            main_fds, main_rss = fds(), rss()
            worker_start = {pid: (fds(pid), rss(pid)) for pid in children()}
            assert len(worker_start) == 2
    gc.collect()
    assert fds() == main_fds, "file descriptors grew in the main process"
    assert rss() - main_rss < RSS_SLACK, f"main RSS grew by {(rss() - main_rss) / 2**20:.1f} MiB"
    assert children() == sorted(worker_start), "the same two workers all along"
    for pid, (worker_fds, worker_rss) in worker_start.items():
        # a worker keeps at most MAX_OPEN shard handles, whatever it has read
        assert fds(pid) <= worker_fds and fds(pid) - MAX_OPEN < worker_fds
        assert rss(pid) - worker_rss < RSS_SLACK, f"worker RSS grew by {rss(pid) - worker_rss}"
    assert batches >= 3000 and epoch > 10
    del loader
    gc.collect()


def test_workers_started_every_epoch_leave_nothing_behind(shards):
    ds = ShardDataset(shards, max_open=MAX_OPEN)
    sampler = BucketBatchSampler(ds.sizes, max_tokens=2_000, seed=1)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=2)
    counts = []
    for epoch in range(8):
        sampler.set_epoch(epoch)
        assert sum(1 for _ in loader) == len(sampler)
        settle_queues()
        counts.append(fds())
        assert children() == [], "a worker outlived its epoch"
    assert len(set(counts[1:])) == 1, f"descriptors per epoch: {counts}"


def test_dataset_handles_are_bounded_and_closed(shards):
    before = fds()
    ds = ShardDataset(shards, max_open=MAX_OPEN)
    for i in np.random.default_rng(0).permutation(len(ds)):
        ds[int(i)]
        assert fds() <= before + MAX_OPEN
    ds.close()
    assert fds() == before
    ds[0]
    del ds
    gc.collect()
    assert fds() == before, "a dropped dataset keeps a handle open"


def test_stream_epochs_close_every_shard(shards):
    stream = ShardStream(shards, batch_size=8, seed=0)
    list(stream)
    gc.collect()
    before, memory = fds(), rss()
    for _ in range(10):
        expected = stream.num_batches()
        assert len(list(stream)) == expected
    gc.collect()
    assert fds() == before
    assert rss() - memory < RSS_SLACK


def test_repeated_preprocess_runs_with_a_pool(shards, tmp_path):
    """Pool processes and their pipes go away with each run."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"m{i}.obj").write_text(f"v 0 0 {i}\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    preprocess(src, tmp_path / "warm", workers=2, progress=False)
    gc.collect()
    before = fds()
    for run in range(4):
        preprocess(src, tmp_path / f"run{run}", workers=2, max_count=5, progress=False)
        gc.collect()
        assert fds() == before
        assert not multiprocessing.active_children() and children() == []
