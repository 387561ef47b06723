"""Where a ShardDataset batch read's time goes, per sample, in one process: the compiled kernel
(``read_members_``), the Python around it, and ``hetload.collate`` of the result; beside the
per-sample path (the peer: one read and decode per sample) on the same batches.

Batches of 16 in shuffled order over ``--repeats`` epochs after a warm-up epoch, the last 4
batches held as a training loop holds them (each read writes into fresh memory). Times are the
thread's CPU time (``time.thread_time``: a shared machine's waits are not counted), the median
over batches (bursts of other processes' work weigh less) and the mean.

Two datasets: ``bench``, the shards ``scripts/bench_loader.py`` writes (2,000 meshes: fewer
distinct array shapes than the read's former cache of 4,096 ``.npy`` headers held), and
``shapes``, written here: ``--shapes`` samples of two small 1-D fields whose lengths are all
distinct (twice that many distinct shapes), the case of a large real dataset.

    .venv/bin/python scripts/prof_batch_read.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import types
from pathlib import Path

import numpy as np
import torch

import hetload
import hetload.data.batch_read as batch_read
from hetload.cli._table import format_table
from hetload.data import ShardDataset
from hetload.data.substitute import getitems
from hetload.shards.writer import write_shards

BATCH = 16
HELD = 4


def shapes_dataset(root: Path, count: int) -> Path:
    """``count`` samples: ``points uint8 [n]`` and ``colors uint8 [m]``, every ``n`` and
    every ``m`` distinct (``0``..``count - 1``), and a label; written once."""
    done = root / f"shapes-{count}"
    if (done / "COMPLETE").exists():
        return done
    rng = np.random.default_rng(0)
    points_rows = rng.permutation(count).tolist()
    colors_rows = rng.permutation(count).tolist()
    samples = (
        {
            "points": rng.integers(0, 255, size=n, dtype=np.uint8),
            "colors": rng.integers(0, 255, size=m, dtype=np.uint8),
            "label": i % 10,
        }
        for i, (n, m) in enumerate(zip(points_rows, colors_rows, strict=True))
    )
    write_shards(samples, done, shard_size=16 * 10**6)
    (done / "COMPLETE").write_text(f"{count}\n")
    return done


def profile(ds: ShardDataset, repeats: int, seed: int) -> dict[str, tuple[float, float]]:
    """Per sample, CPU us, median and mean over the batches: the kernel, the read's Python,
    collate, and the per-sample path's read and collate."""
    order = list(range(len(ds)))
    rng = random.Random(seed)
    op = torch.ops.hetload.read_members_
    spent = [0.0]

    def kernel(*args):
        cpu = time.thread_time()
        out = op(*args)
        spent[0] += time.thread_time() - cpu
        return out

    # the read calls torch.ops.hetload.read_members_ through its module's `torch`
    ops = types.SimpleNamespace(hetload=types.SimpleNamespace(read_members_=kernel))
    real = batch_read.torch
    batch_read.torch = types.SimpleNamespace(**{**vars(torch), "ops": ops})  # type: ignore[assignment]
    times: dict[str, list[float]] = {}
    try:
        for epoch in range(repeats + 1):
            rng.shuffle(order)
            # each path a whole epoch in turn: neither runs in the other's cache state
            for name, read in (("batch", ds.__getitems__), ("per-sample", None)):
                held: list[object] = []
                for at in range(0, len(order), BATCH):
                    indices = order[at : at + BATCH]
                    spent[0] = 0.0
                    cpu = time.thread_time()
                    samples = read(indices) if read is not None else getitems(ds, indices)
                    cpu1 = time.thread_time()
                    batch = hetload.collate(samples)
                    cpu2 = time.thread_time()
                    held.append(batch)
                    if len(held) > HELD:
                        held.pop(0)
                    if epoch == 0:
                        continue  # the warm-up epoch
                    per = 1e6 / len(indices)
                    parts = {"read": cpu1 - cpu - spent[0], "collate": cpu2 - cpu1}
                    if read is not None:
                        parts["kernel"] = spent[0]
                    for part, seconds in parts.items():
                        times.setdefault(f"{name} {part}", []).append(seconds * per)
    finally:
        batch_read.torch = real  # type: ignore[assignment]
    return {name: (statistics.median(v), statistics.fmean(v)) for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench = Path("/tmp/hetload-bench-loader/shards-2000-0-16MB")
    parser.add_argument("--bench", type=Path, default=bench,
                        help="scripts/bench_loader.py's shards (skipped where absent)")  # fmt: skip
    parser.add_argument("--shapes", type=int, default=6000, help="samples of distinct shapes")
    parser.add_argument("--root", type=Path, default=Path("/tmp/hetload-prof-batch-read"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    datasets = {}
    if args.bench.exists():
        datasets["bench"] = ShardDataset(args.bench)
    datasets["shapes"] = ShardDataset(shapes_dataset(args.root, args.shapes))
    rows = []
    for name, ds in datasets.items():
        got = profile(ds, args.repeats, seed=0)
        batch = sum(got[f"batch {part}"][0] for part in ("kernel", "read", "collate"))
        plain = got["per-sample read"][0] + got["per-sample collate"][0]
        cells = [f"{got[k][0]:.1f} ({got[k][1]:.1f})" for k in
                 ("batch kernel", "batch read", "batch collate", "per-sample read")]  # fmt: skip
        rows.append([name, len(ds), *cells, f"{plain / batch:.2f}"])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"us per sample, CPU time, median (mean) over batches of {BATCH}, {HELD} held; "
          f"load average {load}")  # fmt: skip
    header = ["data", "samples", "kernel", "read's Python", "collate", "per-sample read",
              "per-sample / batch read+collate"]  # fmt: skip
    print(format_table(header, rows))


if __name__ == "__main__":
    main()
