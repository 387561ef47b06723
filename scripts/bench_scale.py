"""The cost of ShardStream's epoch plan per rank at scale, by simulation (no shard is read).

Each rank dry-runs the batcher on its own workers' streams and learns the other ranks' batch
counts by one all-gather (``ShardStream.share_plan``); here the gathered counts are computed
beforehand (what the other 63 ranks would send) and the per-rank work is timed alone: rank 0's
draft and evening. Also timed: the dry run of every rank (the plan without a process group),
an elastic resume at half and at twice the world size from mid-epoch (the new rank 0 dry-runs
the old ranks it takes over, then its own streams), and the index: a synthetic columnar sidecar
at full scale (its size, ``ShardIndex.load`` time and memory, and rank 0's setup up to its
plan), against ``index.json`` with per-sample lists, measured on a real index of
``--index-samples`` samples and scaled linearly.

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


def rss_mib() -> float:
    """This process's resident memory (Linux), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def synthetic_index(sizes: np.ndarray, starts: np.ndarray, folder: Path) -> None:
    """An index of ``sizes`` (verts rows) with faces, in ``folder``: the per-sample columns a
    real run would write (tar layout: 512-byte headers, data padded to 512), as a sidecar."""
    from hetload.shards.columns import ColumnShards, IndexColumns
    from hetload.shards.index import ShardIndex

    n = sizes.shape[0]
    counts = np.diff(starts)
    verts = sizes.astype(np.int64)
    faces = verts * 2
    member = {
        "json": np.full(n, 80, np.int64),
        "verts.npy": 128 + verts * 12,
        "faces.npy": 128 + faces * 24,
    }
    padded = {s: (v + 511) // 512 * 512 for s, v in member.items()}
    span = sum(512 + p for p in padded.values())
    shard_of = np.repeat(np.arange(counts.shape[0]), counts)
    cum = np.cumsum(span) - span  # global byte position; each shard restarts at 0
    start = cum - cum[starts[:-1]][shard_of]
    end = start + span
    offset, at = {}, start.copy()
    for s in ("json", "verts.npy", "faces.npy"):
        offset[s] = at + 512
        at = at + 512 + padded[s]
    keys = np.char.zfill(np.arange(n).astype("U9"), 9).astype("S9")
    columns = IndexColumns(
        counts=counts.astype(np.int64),
        start=start,
        end=end,
        offset=offset,
        size=member,
        rows={"verts": verts, "faces": faces},
        key_offsets=np.arange(n + 1, dtype=np.int64) * 9,
        key_blob=np.frombuffer(keys.tobytes(), dtype=np.uint8),
    )
    last = end[np.maximum(starts[1:] - 1, 0)]
    heads = [(f"shard-{k:06d}.tar", int(c), int(last[k]) + 1024, "") for k, c in enumerate(counts)]
    index = ShardIndex(ColumnShards(columns, heads), root=str(folder), name="synthetic")
    index._columns = columns
    index.write(folder / "index.json", lists=False)


def sidecar_cost(sizes, starts, args, totals) -> None:
    """Write a synthetic sidecar index at full scale; time ``ShardIndex.load`` (memory: the
    tracemalloc peak and the growth of resident memory, the mapped columns counted as they are
    touched) and the setup of rank 0's ``ShardStream`` up to its plan (the gathered counts
    injected as ``share_plan`` would leave them)."""
    from hetload.shards.index import ShardIndex

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        synthetic_index(sizes, starts, folder)
        written = time.perf_counter() - start
        on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        json_bytes = (folder / "index.json").stat().st_size
        before = rss_mib()
        start = time.perf_counter()
        index = ShardIndex.load(folder)
        load = time.perf_counter() - start
        grown = rss_mib() - before
        _, _, peak = measure(lambda: ShardIndex.load(folder))
        n = sizes.shape[0]
        print(
            f"sidecar index at {n:,}: {on_disk / n:.0f} B/sample on disk (index.json "
            f"{json_bytes / 2**20:.1f} MiB, per shard), written in {written:.1f} s; "
            f"ShardIndex.load {load:.2f} s (columns checked), RSS +{grown:.0f} MiB, "
            f"tracemalloc peak {peak:.0f} MiB"
        )
        start = time.perf_counter()
        stream = ShardStream(
            index,
            rank=0,
            world_size=args.ranks,
            max_tokens=args.max_tokens,
            buffer_size=args.buffer_size,
        )
        built = time.perf_counter() - start
        stream.__dict__["_shared"] = {(0, (), args.ranks, args.workers): totals}
        start = time.perf_counter()
        steps = stream.num_batches(args.workers)
        planned = time.perf_counter() - start
        assert steps == totals.steps
        print(
            f"  rank 0 of {args.ranks} ready to read: load {load:.2f} s + ShardStream "
            f"{built:.2f} s + its plan {planned:.2f} s = {load + built + planned:.2f} s "
            "(then its first shard's read)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=10_000)
    parser.add_argument("--ranks", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=262_144)
    parser.add_argument("--buffer-size", type=int, default=1024)
    parser.add_argument("--index-samples", type=int, default=20_000)
    parser.add_argument(
        "--index-only", action="store_true", help="only the index (no plan of fixed batches)"
    )
    args = parser.parse_args()
    sizes, starts = synthetic(args.samples, args.shards)
    print(
        f"{args.samples:,} samples, {args.shards:,} shards, {args.ranks} ranks x "
        f"{args.workers} workers; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    world, workers = args.ranks, args.workers
    tokens = token_batches(args.max_tokens, args.buffer_size)
    if args.index_only:  # (the gathered counts only, for the stream's setup)
        totals, _ = planner(sizes, starts, tokens).totals(world, workers, frozenset())
    for name, batcher in (
        ("fixed_batches(32)", fixed_batches(32)),
        (f"token_batches({args.max_tokens}, {args.buffer_size})", tokens),
    ):
        if args.index_only:
            break
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
    sidecar_cost(sizes, starts, args, totals)  # (totals: the token batcher's, above)
    per_sample, load, first = index_cost(args.index_samples)
    print(
        f"index.json: {per_sample:.0f} B/sample, load {load * 1e6:.1f} us/sample -> at "
        f"{args.samples:,}: {per_sample * args.samples / 2**20:.0f} MiB, "
        f"{load * args.samples:.1f} s"
    )
    print(f"first batch of a {args.index_samples:,}-sample ShardStream: {first:.2f} s")


if __name__ == "__main__":
    main()
