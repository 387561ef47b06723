"""Where the time of ``DataLoader(num_workers=2, collate_fn=hetload.collate)`` goes.

Two loaders over the data of ``scripts/bench_loader.py`` (OBJ meshes preprocessed into shards):
samples already decoded in memory (collate plus the worker-to-main handoff alone), and
ShardDataset. For each, one run of ``--epochs`` epochs is profiled:

- with py-spy (``--py-spy PATH``, or found on PATH; install it with ``pip install py-spy``):
  every process and thread, sampled, so the worker's queue feeder thread (where a batch is
  pickled) counts too; printed for the main process and the busiest worker;
- with cProfile, the main process's main thread (where batches are unpickled).

Each summary gives the top functions by own time and the share of samples whose stack is in
shared memory / descriptor passing, pickling, collate, reading, the loader's queues.

    python scripts/profile_loader.py --n 600 --seconds 6
    PYTHONPATH=/path/to/other/checkout python scripts/profile_loader.py   # the same, other code
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from bench_loader import BATCH, InMemory, write_dataset

import hetload
from hetload.data import ShardDataset
from hetload.shards.preprocess import preprocess

# a sample is put in the first category one of its frames (leaf first) matches
CATEGORIES = [
    (
        "shm / fd passing",
        (
            "_new_shared",
            "share_memory",
            "_share_fd",
            "memfd",
            "mmap",
            "frombuffer",
            "rebuild_storage",
            "resource_sharer",
            "DupFd",
            "detach",
            "recvfds",
            "sendfds",
            "recv_handle",
            "send_handle",
            "get_connection",
            "answer_challenge",
            "deliver_challenge",
            "handoff.py",
            "arena.py",
            "shm.py",
        ),
    ),
    ("pickle", ("dumps", "loads", "reduce", "__reduce_ex__", "pickling.py", "rebuild")),
    ("collate", ("collate", "rebase_index_", "torch.cat", "sample_values.py")),
    ("read / decode", ("shard", "pread", "readinto", "npy", "getitem", "__getitem__")),
    ("queues / waiting", ("queues.py", "connection.py", "select", "poll", "wait", "_recv")),
]


def data(n: int, root: Path) -> Path:
    src = root / f"obj-{n}-0"
    if not (src / "COMPLETE").exists():
        print(f"writing {n} OBJ meshes to {src} ...", flush=True)
        write_dataset(src, n, 0)
    dst = root / f"shards-{n}-0-16MB"
    preprocess(src, dst, workers=2, shard_size="16MB", progress=False)
    return dst


def workload(args: argparse.Namespace) -> None:
    """The profiled run: one warm-up epoch, then ``--epochs`` timed ones."""
    torch.set_num_threads(1)
    shards = ShardDataset(data(args.n, args.root))
    dataset = InMemory(shards) if args.dataset == "memory" else shards
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        num_workers=args.workers,
        persistent_workers=True,
        collate_fn=hetload.collate,
    )
    for _ in loader:  # warm-up: workers started, rings filled
        pass
    if args.pid_file:  # py-spy attaches now, to the steady state only
        args.pid_file.write_text(str(os.getpid()))
        time.sleep(1.0)
    profiler = cProfile.Profile() if args.cprofile else None
    start = time.perf_counter()
    samples = epochs = 0
    if profiler is not None:
        profiler.enable()
    while epochs < args.epochs or time.perf_counter() - start < args.seconds:
        for batch in loader:
            samples += len(batch)
        epochs += 1
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - start
    rate = samples / seconds
    print(f"{args.dataset}: {rate:,.0f} samples/s ({samples} samples, {seconds:.2f} s)")
    if profiler is not None:
        print_cprofile(profiler, seconds)


def print_cprofile(profiler: cProfile.Profile, seconds: float) -> None:
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tottime, cumtime, calls, f"{func} ({Path(file).name}:{line})"))
    rows.sort(reverse=True)
    print(f"cProfile, main thread, {seconds:.2f} s: top functions by own time")
    print(f"  {'own s':>7} {'own %':>6} {'cum s':>7} {'calls':>8}  function")
    for tottime, cumtime, calls, name in rows[:12]:
        print(f"  {tottime:7.3f} {100 * tottime / seconds:5.1f}% {cumtime:7.3f} {calls:8d}  {name}")


def category(frames: list[str]) -> str:
    for name, keys in CATEGORIES:
        for frame in reversed(frames):
            if any(k in frame for k in keys):
                return name
    return "other"


def summarize_pyspy(raw: Path, main_pid: int) -> None:
    per_process: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    leaves: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or not frames[0].startswith("process "):
            continue
        # a worker's stack starts with its parents: process <main>;process <worker>;thread ...
        procs = [f for f in frames if f.startswith("process ")]
        pid = int(procs[-1].split()[1].split(":")[0])
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        per_process[pid][category(frames)] += int(count)
        leaves[pid][frames[-1]] += int(count)
    workers = [pid for pid in per_process if pid != main_pid]
    busiest = max(workers, key=lambda p: sum(per_process[p].values()), default=None)
    for who, pid in (("main process", main_pid), ("busiest worker", busiest)):
        if pid is None or pid not in per_process:
            print(f"py-spy: no samples of the {who}")
            continue
        total = sum(per_process[pid].values())
        shares = ", ".join(
            f"{name} {100 * n / total:.0f}%" for name, n in per_process[pid].most_common()
        )
        print(f"py-spy, {who} (pid {pid}), {total} samples: {shares}")
        for frame, n in leaves[pid].most_common(8):
            print(f"  {100 * n / total:5.1f}%  {frame}")


def profile(args: argparse.Namespace) -> None:
    spy = args.py_spy or shutil.which("py-spy")
    print(
        f"hetload from {Path(hetload.__file__).parent}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; n={args.n}, "
        f"batch {BATCH}, {args.workers} workers, >= {args.seconds} s per profile"
    )
    data(args.n, args.root)  # built before any timing
    base = [sys.executable, __file__, "--run", "--n", str(args.n), "--root", str(args.root)]
    base += ["--epochs", str(args.epochs), "--workers", str(args.workers)]
    for dataset in ("memory", "shards"):
        print(f"\n== {dataset} ==", flush=True)
        cprof = [*base, "--dataset", dataset, "--cprofile", "--seconds", str(args.seconds)]
        subprocess.run(cprof, check=True)
        if not spy:
            print("py-spy not found: cProfile only (pip install py-spy)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            raw, pid_file = Path(tmp) / "raw.txt", Path(tmp) / "pid"
            run = [*base, "--dataset", dataset, "--pid-file", str(pid_file)]
            run += ["--seconds", str(args.seconds + 2)]
            work = subprocess.Popen(run, stdout=subprocess.DEVNULL)
            while not pid_file.exists() or not pid_file.read_text():
                if work.poll() is not None:
                    raise SystemExit("the profiled run ended before its warm-up did")
                time.sleep(0.1)
            pid = int(pid_file.read_text())
            cmd = [spy, "record", "--pid", str(pid), "--subprocesses", "--threads", "-r", "200"]
            cmd += ["-f", "raw", "-o", str(raw), "-d", str(args.seconds)]
            subprocess.run(cmd, check=True, capture_output=True)
            work.wait()
            summarize_pyspy(raw, pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=600, help="meshes (default 600)")
    parser.add_argument("--epochs", type=int, default=1, help="at least this many epochs")
    parser.add_argument("--seconds", type=int, default=6, help="and at least this long")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", type=Path, default=Path("/tmp/hetload-bench-loader"))
    parser.add_argument("--py-spy", help="path of the py-spy executable")
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default="memory", help=argparse.SUPPRESS)
    parser.add_argument("--cprofile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pid-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        workload(args)
    else:
        profile(args)


if __name__ == "__main__":
    main()
