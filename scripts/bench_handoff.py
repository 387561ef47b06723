"""The fixed CPU cost per batch of the worker-to-main handoff, worker side and main side apart.

Batches are tiny (``--batch`` samples of ``--points`` vertices and twice as many faces, a label),
so their bytes cost nothing and what is measured is the per-batch fixed cost. Three collate_fns
through the same ``DataLoader(num_workers=2, persistent_workers=True)``:

- ``hetload.collate``: the whole path (collate in the worker, the batch sent to the main process);
- ``collate, dropped``: the same collate in the worker, but only an int is sent: the worker's
  collate in a loaded worker process, without the handoff;
- ``int (torch only)``: no collate, an int sent: torch's own per-batch loop (index queues,
  worker loop, result queue and its feeder thread, ``record_function``, pin-less ``__next__``).

So the handoff (hetload's reducer and pickling, the ring, the queue's feeder thread carrying a
batch, unpickling, the rebuild of the views, the slot release) is the first row minus the
second, on each side; torch's loop is the third row.

Measured with CPU time (not wall time, so the load of a shared machine weighs less): the main
process's ``time.process_time`` over the loop (all its threads), each worker's utime + stime from
``/proc/<pid>/stat`` over the same loop, divided by the batches. "in-process" is the lookups and
the collate_fn timed in this process on the same samples (a worker pays more for the same
collate: two workers and the main process share the cores and their caches).

    python scripts/bench_handoff.py --batches 4000
    PYTHONPATH=/path/to/other/checkout python scripts/bench_handoff.py   # the same, other code

``--cprofile`` adds a cProfile of the main thread over each timed loop; ``--parts`` times
each step of the handoff alone instead (one process, warm caches, fastest of 7 repeats).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pickle
import pstats
import statistics
import time
import timeit
from multiprocessing.reduction import ForkingPickler

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils.data import DataLoader, Dataset

import hetload
from hetload import handoff

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


def dropped(samples: list) -> int:
    """``hetload.collate`` in the worker, the batch dropped there: only an int is sent."""
    return len(hetload.collate(samples))


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


def handoff_in_process_us(dataset: Tiny, batch: int, chunks: int = 40) -> tuple[float, float]:
    """The handoff's own work with no second process, no queue and no other load: (worker
    side: pickling a collated batch the way the result queue does, main side: unpickling it,
    giving back the last slot, dropping the batch), microseconds per batch, the fastest of
    ``chunks`` chunks of 100 (the least disturbed by the machine's other work).

    This process plays both sides: torch's worker info is set while it collates and pickles
    (a private torch variable, so that hetload takes its worker path: ring slot, slot form)."""
    from torch.utils.data._utils import worker as torch_worker

    info = torch_worker.WorkerInfo(id=0, num_workers=1, seed=0, dataset=dataset)
    samples = [dataset[i] for i in range(batch)]
    best_w = best_m = float("inf")
    try:
        for _ in range(chunks):
            tw = tm = 0.0
            for _ in range(100):
                torch_worker._worker_info = info
                out = hetload.collate(samples)
                t0 = time.perf_counter()
                data = ForkingPickler.dumps(out)
                t1 = time.perf_counter()
                del out
                torch_worker._worker_info = None
                back = pickle.loads(data)
                handoff.poll()
                del back
                tw += t1 - t0
                tm += time.perf_counter() - t1
            best_w, best_m = min(best_w, tw / 100), min(best_m, tm / 100)
    finally:
        torch_worker._worker_info = None
    return 1e6 * best_w, 1e6 * best_m


def parts(dataset: Tiny, batch: int) -> None:
    """Each step of the handoff, timed alone in this process (playing the worker, then the
    main process, as :func:`handoff_in_process_us` does): microseconds per call."""
    from torch.utils.data._utils import worker as torch_worker

    from hetload import arena
    from hetload.pickling import decode_fields, views

    def timed(name: str, fn, n: int = 3000) -> None:
        us = min(timeit.repeat(fn, number=n, repeat=7)) / n * 1e6
        print(f"  {name:<46} {us:6.2f} us")

    samples = [dataset[i] for i in range(batch)]
    torch_worker._worker_info = torch_worker.WorkerInfo(id=0, num_workers=1, seed=0, dataset=None)
    try:
        out = hetload.collate(samples)
        pickle.loads(ForkingPickler.dumps(out))  # the main side maps the slot's segment
        handoff.poll()
        ring = arena.current_ring()
        nbytes = out.verts.values.untyped_storage().nbytes()

        def reduce() -> tuple:
            for slot in ring.slots:  # type: ignore[union-attr]
                slot.sent = False  # as if this batch were new
            return out.__reduce_ex__(5)

        print("worker side (after collate, in the result queue's feeder thread):")
        timed("ring lend (batch_buffer, inside collate)", lambda: arena.batch_buffer(nbytes))
        timed("HeteroBatch.__reduce_ex__ (the slot form)", reduce)
        form = reduce()
        timed("pickling the slot form", lambda: pickle.dumps(form, 5))
        timed("ForkingPickler.dumps of an int (its own cost)", lambda: ForkingPickler.dumps(3))
    finally:
        torch_worker._worker_info = None
    rebuild, (_, owner, _, layout) = form
    nbytes, size, table, encoded, _, _ = layout
    payload = pickle.dumps(form[1], 5)
    mapping = handoff._receiver.mapping(None, owner)
    segment, header = mapping.map.buffer, arena.HEADER
    buffer = torch.frombuffer(segment, dtype=torch.uint8, count=nbytes, offset=header)
    storage = buffer.untyped_storage()
    tensors = views([storage], table, [buffer])
    fields, present = decode_fields(encoded, tensors, trusted=True)

    def whole() -> None:
        back = rebuild(*form[1])
        del back
        handoff.poll()

    print("main side (inside the result queue's get):")
    timed("unpickling the layout", lambda: pickle.loads(payload))
    timed(
        "mapping lookup (and the poll of releases)", lambda: handoff._receiver.mapping(None, owner)
    )
    timed(
        "frombuffer of the segment",
        lambda: torch.frombuffer(segment, dtype=torch.uint8, count=nbytes, offset=header),
    )
    timed(f"views ({len(table)} tensors)", lambda: views([storage], table, [buffer]))
    timed("Ragged fields (decode_fields)", lambda: decode_fields(encoded, tensors, trusted=True))
    timed("HeteroBatch", lambda: hetload.HeteroBatch._trusted(fields, size, present))
    timed("release tracking (a StorageWeakRef)", lambda: StorageWeakRef(storage))
    timed("all of it: rebuild, drop, release", whole)


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
    parser.add_argument("--parts", action="store_true", help="time each step alone instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = Tiny(64 * args.batch, args.points)
    if args.parts:
        parts(dataset, args.batch)
        return
    print(
        f"batches of {args.batch} x {args.points} points, {args.workers} workers, "
        f"median of {args.repeats} runs of {args.batches} batches, CPU us per batch "
        f"(hetload from {os.path.dirname(hetload.__file__)}, load {os.getloadavg()[0]:.1f})"
    )
    print(
        f"  {'collate_fn':<17} {'in-process':>10} {'worker':>8} {'main':>8} {'wall':>8} "
        f"{'batches/s':>9}"
    )
    rows: dict[str, tuple[float, float, float, float]] = {}
    fns = (("hetload.collate", hetload.collate), ("collate, dropped", dropped), ("int", count))
    for name, fn in fns:
        # runs and in-process rounds interleaved, so a change of load weighs on both
        work, runs = [], []
        for _ in range(args.repeats):
            work.append(in_process_us(dataset, args.batch, 1000, fn))
            runs.append(run(args, dataset, fn))
        inproc = statistics.median(work)
        main_us, worker_us, wall_us = (statistics.median(r[k] for r in runs) for k in range(3))
        rows[name] = (inproc, worker_us, main_us, wall_us)
        print(
            f"  {name:<17} {inproc:10.1f} {worker_us:8.1f} {main_us:8.1f} {wall_us:8.1f} "
            f"{1e6 / wall_us:9,.0f}"
        )
    full, drop, torch_only = rows["hetload.collate"], rows["collate, dropped"], rows["int"]
    print(
        "  worker: all workers' CPU; main: this process's CPU (all threads); in-process: the "
        "lookups and collate_fn in this process"
    )
    print(
        f"handoff per batch (hetload.collate - collate, dropped): worker {full[1] - drop[1]:.1f} "
        f"us, main {full[2] - drop[2]:.1f} us"
    )
    print(
        f"torch's loop per batch (int): worker {torch_only[1]:.1f} us, main {torch_only[2]:.1f} us"
    )
    print(
        f"collate in a worker, beyond torch's loop: {drop[1] - torch_only[1]:.1f} us "
        f"(in this process: {drop[0]:.1f} us)"
    )
    own_w, own_m = handoff_in_process_us(dataset, args.batch)
    print(
        f"the handoff's own work, one process, no load (fastest of 40 x 100): worker {own_w:.1f} "
        f"us (pickling, as the result queue does), main {own_m:.1f} us (unpickle, rebuild, "
        "release, drop)"
    )


if __name__ == "__main__":
    main()
