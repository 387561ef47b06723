"""The cost of ShardStream's epoch plan per rank at scale, by simulation (no shard is read).

Each rank dry-runs the batcher on its own workers' streams and learns the other ranks' batch
counts by one all-gather (``ShardStream.share_plan``); here the gathered counts are computed
beforehand (what the other 63 ranks would send) and the per-rank work is timed alone: rank 0's
draft and evening. Also timed: the dry run of every rank (the plan without a process group),
an elastic resume at half and at twice the world size from mid-epoch (the new rank 0 dry-runs
the old ranks it takes over, then its own streams), and the index: bytes per sample of
``index.json`` and its load time, measured on a real index of ``--index-samples`` samples and
scaled linearly.

    python scripts/bench_scale.py --samples 10_000_000 --shards 100_000 --ranks 64 --workers 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from hetload.data.shard_stream import ShardStream, fixed_batches, token_batches
from hetload.data.stream_segments import EpochPlanner


def synthetic(samples: int, shards: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.lognormal(np.log(2000), 1.0, samples), 16, 100_000).astype(np.int32)
    starts = np.linspace(0, samples, shards + 1).astype(np.int64)
    return sizes, starts


def planner(sizes, starts, batcher, history=()) -> EpochPlanner:
    return EpochPlanner(
        starts=starts,
        sizes=sizes,
        batcher=batcher,
        seed=0,
        epoch=0,
        shuffle=True,
        even="exact",
        history=list(history),
    )


def rank_plan(sizes, starts, batcher, world, workers, steps, history=()):
    """Rank 0's evened plan of the segment after ``history``, given the gathered ``steps``."""
    p = planner(sizes, starts, batcher, history)
    draft = p.draft(len(history), world, workers, 0, keep=True)
    return p.evened(draft, steps)


def measure(fn):
    """Seconds of one run, then the peak of another under tracemalloc (which slows numpy's
    allocations, so it is not timed)."""
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def index_cost(n: int) -> tuple[float, float, float]:
    """Bytes per sample of index.json, seconds per sample to load it (ShardIndex.load), and
    the seconds from ``ShardStream(...)`` to its first batch on that data."""
    from hetload.shards.index import ShardIndex
    from hetload.shards.writer import write_shards

    rng = np.random.default_rng(1)
    samples = (
        {
            "verts": np.zeros((int(rng.integers(4, 40)), 3), np.float32),
            "faces": np.zeros((int(rng.integers(2, 20)), 3), np.int64),
        }
        for _ in range(n)
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(samples, tmp, max_count=100)
        path = Path(tmp) / "index.json"
        size = path.stat().st_size
        start = time.perf_counter()
        ShardIndex.load(path)
        load = time.perf_counter() - start
        start = time.perf_counter()
        next(iter(ShardStream(tmp, max_tokens=4096, buffer_size=256)))
        first = time.perf_counter() - start
    return size / n, load / n, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=10_000)
    parser.add_argument("--ranks", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=262_144)
    parser.add_argument("--buffer-size", type=int, default=1024)
    parser.add_argument("--index-samples", type=int, default=20_000)
    args = parser.parse_args()
    sizes, starts = synthetic(args.samples, args.shards)
    print(
        f"{args.samples:,} samples, {args.shards:,} shards, {args.ranks} ranks x "
        f"{args.workers} workers; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    world, workers = args.ranks, args.workers
    for name, batcher in (
        ("fixed_batches(32)", fixed_batches(32)),
        (
            f"token_batches({args.max_tokens}, {args.buffer_size})",
            token_batches(args.max_tokens, args.buffer_size),
        ),
    ):
        # every rank dry-run: the plan without a process group (and the gathered counts)
        (totals, _), every_s, every_mib = measure(
            lambda b=batcher: planner(sizes, starts, b).totals(world, workers, frozenset())
        )
        mine, seconds, peak = measure(
            lambda b=batcher, t=totals: rank_plan(sizes, starts, b, world, workers, t.steps)
        )
        assert sum(mine.quota) == totals.steps
        print(
            f"plan per rank, {name}: {seconds:.3f} s, peak {peak:.0f} MiB (own {workers} "
            f"workers + the gathered counts; sizes array {sizes.nbytes / 2**20:.0f} MiB not "
            f"counted); every rank dry-run (no process group): {every_s:.3f} s, peak "
            f"{every_mib:.0f} MiB, {every_s / seconds:.0f}x; {totals.steps} steps, "
            f"{totals.split} splits, {totals.repeated} repeats"
        )
        step = totals.steps // 2
        history = [[world, workers, step, totals.steps]]
        for new_world in (world // 2, world * 2):
            # the new segment's gathered counts, computed beforehand (every new rank's)
            resumed, _ = planner(sizes, starts, batcher, history).totals(
                new_world, workers, frozenset()
            )
            got, seconds, peak = measure(
                lambda b=batcher, w=new_world, t=resumed, h=history: rank_plan(
                    sizes, starts, b, w, workers, t.steps, h
                )
            )
            assert sum(got.quota) == resumed.steps
            print(
                f"  resume at {new_world} ranks from step {step}: {seconds:.2f} s, peak "
                f"{peak:.0f} MiB ({resumed.samples:,} samples left, {resumed.steps} steps, "
                f"{resumed.split} splits, {resumed.repeated} repeats)"
            )
    per_sample, load, first = index_cost(args.index_samples)
    print(
        f"index.json: {per_sample:.0f} B/sample, load {load * 1e6:.1f} us/sample -> at "
        f"{args.samples:,}: {per_sample * args.samples / 2**20:.0f} MiB, "
        f"{load * args.samples:.1f} s"
    )
    print(f"first batch of a {args.index_samples:,}-sample ShardStream: {first:.2f} s")


if __name__ == "__main__":
    main()
