"""The cost of ShardStream's epoch plan per rank at scale, by simulation (no shard is read).

Every rank computes the plan of the whole job (the batch counts of every rank's workers, to
even the steps) and keeps the sample numbers of its own batches. This script builds that plan
from synthetic sizes (log-normal points per sample, ``--samples`` over ``--shards`` shards) for
rank 0 of ``--ranks`` x ``--workers``, and reports its time and memory (tracemalloc peak: numpy
buffers included), the plan of a resume at another world size (all ranks materialized once to
find the consumed samples), and the index: bytes per sample of ``index.json`` and its load
time, measured on a real index of ``--index-samples`` samples and scaled linearly.

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
from hetload.data.stream_plan import plan_segment, shard_order, stream_seed


def synthetic(samples: int, shards: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.lognormal(np.log(2000), 1.0, samples), 16, 100_000).astype(np.int32)
    starts = np.linspace(0, samples, shards + 1).astype(np.int64)
    return sizes, starts


def plan(sizes, starts, *, ranks, workers, batcher, keep, segment=0, mask=None):
    def remaining(k: int) -> np.ndarray:
        ids = np.arange(starts[k], starts[k + 1], dtype=np.int64)
        return ids if mask is None else ids[mask[starts[k] : starts[k + 1]]]

    return plan_segment(
        order=shard_order(starts.shape[0] - 1, 0, 0, segment, True).tolist(),
        remaining=remaining,
        sizes=sizes,
        world=ranks,
        workers=workers,
        batcher=batcher,
        seed_of=lambda r, w: stream_seed(0, 0, r, w, segment),
        even="exact",
        segment=segment,
        keep=keep,
    )


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
    common = {"ranks": args.ranks, "workers": args.workers}
    for name, batcher in (
        ("fixed_batches(32)", fixed_batches(32)),
        (
            f"token_batches({args.max_tokens}, {args.buffer_size})",
            token_batches(args.max_tokens, args.buffer_size),
        ),
    ):
        p, seconds, peak = measure(
            lambda b=batcher: plan(sizes, starts, batcher=b, keep=frozenset([0]), **common)
        )
        print(
            f"plan per rank, {name}: {seconds:.2f} s, peak {peak:.0f} MiB "
            f"(sizes array {sizes.nbytes / 2**20:.0f} MiB not counted); "
            f"{p.batches_per_rank()} steps, {p.split} splits, {p.repeated} repeats"
        )
        # an elastic resume: the saved segment with every rank's batches, then the new one
        step = p.batches_per_rank() // 2

        def resume(b=batcher, step=step):
            old = plan(sizes, starts, batcher=b, keep=None, **common)
            left = ~old.consumed(step, sizes.shape[0])
            return plan(
                sizes,
                starts,
                batcher=b,
                keep=frozenset([0]),
                ranks=args.ranks // 2,
                workers=args.workers,
                segment=1,
                mask=left,
            )

        _, seconds, peak = measure(resume)
        print(
            f"  resume at {args.ranks // 2} ranks from step {step}: {seconds:.2f} s, "
            f"peak {peak:.0f} MiB"
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
