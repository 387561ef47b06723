"""The fixed CPU cost per batch of the worker-to-main handoff, worker side and main side apart.

Batches are tiny (``--batch`` samples of ``--points`` vertices and twice as many faces, a label),
so their bytes cost nothing and what is measured is the per-batch fixed cost: in the worker,
what it spends beyond ``__getitems__`` + collate (hetload's reducer, pickling, the ring, the
queue's feeder thread, torch's worker loop); in the main process, everything from the index
put to the batch in the user's hands (torch's loader loop, recv, unpickle, the rebuild of the
views, the slot release bookkeeping).

Measured with CPU time (not wall time, so the load of a shared machine weighs less): the main
process's ``time.process_time`` over the loop (all its threads), each worker's utime + stime from
``/proc/<pid>/stat`` over the same loop, divided by the batches. The work a worker would do in
any case (the samples' lookup and ``hetload.collate``) is timed in this process on the same
samples and subtracted to give the worker's handoff cost.

    python scripts/bench_handoff.py --batches 4000
    PYTHONPATH=/path/to/other/checkout python scripts/bench_handoff.py   # the same, other code

``--cprofile`` adds a cProfile of the main thread over the timed loop.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import hetload

_TICK = os.sysconf("SC_CLK_TCK")


class Tiny(Dataset):
    """``n`` samples of ``points`` vertices (float32 [P, 3]), faces int64 [2P, 3], a label."""

    def __init__(self, n: int, points: int) -> None:
        rng = np.random.default_rng(0)
        self.items = [
            {
                "verts": rng.standard_normal((points, 3)).astype(np.float32),
                "faces": rng.integers(0, points, size=(2 * points, 3)),
                "label": i % 10,
            }
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def count(samples: list) -> int:
    """A collate_fn that sends nothing but an int: torch's own per-batch loop, alone."""
    return len(samples)


def in_process_us(dataset: Tiny, batch: int, rounds: int, collate_fn) -> float:
    """CPU microseconds per batch of the work any worker does: the lookups and the collate."""
    n = len(dataset)
    start = time.process_time()
    for r in range(rounds):
        first = (r * batch) % (n - batch)
        samples = [dataset[i] for i in range(first, first + batch)]
        out = collate_fn(samples)
        del out
    return 1e6 * (time.process_time() - start) / rounds


def run(args: argparse.Namespace, dataset: Tiny, collate_fn) -> tuple[float, float, float]:
    """One timed run: (main us/batch, worker us/batch, wall us/batch)."""
    loader = DataLoader(
        dataset,
        batch_size=args.batch,
        num_workers=args.workers,
        persistent_workers=True,
        collate_fn=collate_fn,
    )
    for _ in loader:  # warm-up epoch: workers started, rings filled, segments mapped
        pass
    it = iter(loader)  # persistent: the same workers
    pids = [w.pid for w in it._workers]  # type: ignore[attr-defined]
    worker0 = [cpu_seconds(p) for p in pids]
    profiler = cProfile.Profile() if args.cprofile else None
    batches = 0
    wall0, main0 = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    while batches < args.batches:
        for batch in it:
            batches += 1
            del batch
        it = iter(loader)
    if profiler is not None:
        profiler.disable()
    main = time.process_time() - main0
    wall = time.perf_counter() - wall0
    worker = sum(cpu_seconds(p) for p in pids) - sum(worker0)
    del it, loader
    if profiler is not None:
        stats = pstats.Stats(profiler)
        rows = sorted(
            (
                (tt, calls, f"{func} ({os.path.basename(file)}:{line})")
                for (file, line, func), (_, calls, tt, _, _) in stats.stats.items()  # type: ignore[attr-defined]
            ),
            reverse=True,
        )
        print(f"cProfile of the main thread ({batches} batches): own us/batch, calls/batch")
        for tt, calls, name in rows[:25]:
            print(f"  {1e6 * tt / batches:8.1f} {calls / batches:6.1f}  {name}")
    return 1e6 * main / batches, 1e6 * worker / batches, 1e6 * wall / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4000, help="batches per timed run")
    parser.add_argument("--batch", type=int, default=16, help="samples per batch")
    parser.add_argument("--points", type=int, default=10, help="vertices per sample")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = Tiny(64 * args.batch, args.points)
    print(
        f"batches of {args.batch} x {args.points} points, {args.workers} workers, "
        f"median of {args.repeats} runs of {args.batches} batches, CPU us per batch "
        f"(hetload from {os.path.dirname(hetload.__file__)}, load {os.getloadavg()[0]:.1f})"
    )
    print(
        f"  {'collate_fn':<16} {'in-process':>10} {'worker':>8} {'w - in-proc':>11} "
        f"{'main':>8} {'wall':>8} {'batches/s':>9}"
    )
    for name, fn in (("hetload.collate", hetload.collate), ("int (torch only)", count)):
        # runs and in-process rounds interleaved, so a change of load weighs on both
        work, rows = [], []
        for _ in range(args.repeats):
            work.append(in_process_us(dataset, args.batch, 1000, fn))
            rows.append(run(args, dataset, fn))
        inproc = statistics.median(work)
        main_us, worker_us, wall_us = (statistics.median(r[k] for r in rows) for k in range(3))
        print(
            f"  {name:<16} {inproc:10.1f} {worker_us:8.1f} {worker_us - inproc:11.1f} "
            f"{main_us:8.1f} {wall_us:8.1f} {1e6 / wall_us:9,.0f}"
        )
    print(
        "  in-process: lookups + collate_fn in this process; worker: all workers' CPU; "
        "w - in-proc: what a worker spends beyond them (the handoff); main: this process's CPU"
    )


if __name__ == "__main__":
    main()
