"""Loader throughput: MeshFolder over OBJ files vs ShardDataset vs ShardStream, same data.

Also: ShardDataset's batch-level reads (the default) against its per-sample path (the path
before batch reads, kept for URLs) and ShardStream's batch reads against its sequential reads
(``reads="sequential"``) in the same run, the thread reader
(``hetload.data.ThreadedLoader``) against worker processes, every loader against the raw read,
and the host copies of the array bytes from the shard file to a pinned batch.

One run generates (or reuses) a dataset of OBJ meshes with log-normal vertex counts, preprocesses
it into shards with ``hetload preprocess``, then times each loader
(``DataLoader(num_workers=2, persistent_workers=True, collate_fn=hetload.collate)``, batches of
16 samples; and with the README's usage, ``BucketBatchSampler(sizes, max_tokens=262_144)``
batches of ~74 samples here, fresh every round) for ``--repeats`` rounds after one warm-up
epoch (in each round every loader runs one epoch in turn, so the load of a shared machine weighs
on all alike), and the raw sequential
read of the shard files in this process. Prints medians: samples/s, points/s (vertex rows), MB/s
(bytes of the files the loader reads), and the ratios the targets are about: shards vs
MeshFolder, and shard loaders vs the raw read.

    .venv/bin/python scripts/bench_loader.py --n 2000 --repeats 3

The files stay in the page cache between runs (24 GB RAM): the raw read is a warm-cache read, the
fastest a loader could consume these bytes on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import hetload
from hetload.cli._table import format_table
from hetload.data import ShardDataset, ShardStream, ThreadedLoader
from hetload.data.substitute import getitems
from hetload.packed import PackedSamples
from hetload.samplers import BucketBatchSampler
from hetload.shards.preprocess import preprocess

BATCH = 16
#: the README's usage: BucketBatchSampler(ds.sizes, max_tokens=262_144) (~74 samples a batch here)
BUDGET = 262_144


def write_dataset(root: Path, n: int, seed: int) -> None:
    """``n`` OBJ meshes, vertex counts log-normal (median 2,000, clipped to 50..100,000)."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.lognormal(np.log(2000), 1.0, size=n), 50, 100_000).astype(int)
    for i, nv in enumerate(sizes.tolist()):
        path = root / f"{i % 16:02d}" / f"mesh_{i:05d}.obj"
        path.parent.mkdir(parents=True, exist_ok=True)
        verts = rng.standard_normal((nv, 3)).astype(np.float32)
        faces = rng.integers(1, nv + 1, size=(2 * nv, 3))
        with open(path.with_suffix(".tmp"), "w") as f:
            np.savetxt(f, verts, fmt="v %.6f %.6f %.6f")
            np.savetxt(f, faces, fmt="f %d %d %d")
        os.replace(path.with_suffix(".tmp"), path)
    (root / "COMPLETE").write_text(f"{n} {seed}\n")


class FilesDataset(Dataset):
    """The files read one by one with ``hetload.io.load`` (MeshFolder's work, when the real
    MeshFolder is not installed)."""

    def __init__(self, root: Path) -> None:
        self.paths = sorted(root.rglob("*.obj"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        return hetload.io.load(self.paths[i])


class InMemory(Dataset):
    """Every sample decoded once and held in memory: what is left is collate and the
    DataLoader's transfer from its workers, the ceiling of any map-style dataset here."""

    def __init__(self, source: Dataset) -> None:
        self.items = [source[i] for i in range(len(source))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class PerSample(ShardDataset):
    """ShardDataset read sample by sample (its path before batch reads): one ``pread`` per
    sample into a fresh array, then ``collate`` copies each array into the batch."""

    def __getitems__(self, indices):
        return getitems(self, indices)


def copies_after_read(dataset: ShardDataset, indices: list[int], pinned_read: bool) -> int:
    """Host copies of the batch's array bytes after the read, up to a pinned batch: 0 when
    the batch's ``verts`` values are the buffer the read wrote (one allocation), 1 per copy
    into a new tensor (collate's), plus 1 for DataLoader's pin_memory thread unless the read
    went into pinned memory. The collate copy is measured (memory shared with the read or
    not); the pinning copy follows from the path (DataLoader's pin thread copies every tensor,
    ThreadedLoader(pin_memory=True) reads into page-locked memory: tests/test_threaded_loader.py
    checks it where CUDA is present)."""
    samples = dataset.__getitems__(indices)
    batch = hetload.collate(samples)
    values = batch["verts"].values.numpy()
    if isinstance(samples, PackedSamples):
        read_into = [samples.buffer.numpy()]  # the buffer the preadv calls wrote
    else:
        read_into = [s["verts"] for s in samples]  # views of each sample's read buffer
    copies = int(not any(np.shares_memory(values, r) for r in read_into))
    return copies + (0 if pinned_read else 1)


def stream_copies_after_read(root: Path, reads: str) -> int:
    """:func:`copies_after_read` for ``ShardStream(reads=...)``: its collate's input is
    recorded (a batch read hands it the buffer the reads filled; the sequential read, views of
    the chunks it read), then DataLoader's pin thread copies once more."""
    seen: dict[str, object] = {}

    def recording(samples):
        seen["samples"] = samples
        return hetload.collate(samples)

    stream = ShardStream(root, batch_size=BATCH, seed=0, reads=reads, collate_fn=recording)
    batch = next(iter(stream))
    samples = seen["samples"]
    values = batch["verts"].values.numpy()
    if isinstance(samples, PackedSamples):
        read_into = [samples.buffer.numpy()]
    else:
        read_into = [s["verts"] for s in samples]
    return int(not any(np.shares_memory(values, r) for r in read_into)) + 1


def mesh_folder(root: Path) -> tuple[Dataset, str]:
    try:
        from hetload.data import MeshFolder
    except ImportError:
        return FilesDataset(root), "io.load per file (MeshFolder missing)"
    return MeshFolder(root), "MeshFolder (OBJ)"


def epoch(loader) -> tuple[float, int, int]:
    """Seconds, samples and vertex rows of one pass over ``loader``."""
    start = time.perf_counter()
    samples = points = 0
    for batch in loader:
        samples += len(batch)
        points += int(batch["verts"].values.shape[0])
    return time.perf_counter() - start, samples, points


def raw_read(paths: list[Path]) -> float:
    """Seconds to read every file sequentially into one reused buffer."""
    buffer = bytearray(1 << 24)
    view = memoryview(buffer)
    start = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="meshes (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per loader")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument(
        "--root", type=Path, default=Path("/tmp/hetload-bench-loader"), help="data folder"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    src = args.root / f"obj-{args.n}-{args.seed}"
    if not (src / "COMPLETE").exists():
        print(f"writing {args.n} OBJ meshes to {src} ...")
        write_dataset(src, args.n, args.seed)
    obj_paths = sorted(src.rglob("*.obj"))
    obj_bytes = sum(p.stat().st_size for p in obj_paths)
    dst = args.root / f"shards-{args.n}-{args.seed}-16MB"
    result = preprocess(src, dst, workers=args.workers, shard_size="16MB", progress=False)
    print(result)
    shard_paths = sorted(dst.glob("shard-*.tar"))
    shard_bytes = sum(p.stat().st_size for p in shard_paths)

    folder, folder_name = mesh_folder(src)
    shards = ShardDataset(dst)
    per_sample = PerSample(dst)
    memory = InMemory(shards)

    samplers: list[BucketBatchSampler] = []  # set to each round's epoch: fresh batches

    def batches(dataset: Dataset, bucketed: bool):
        """Fixed batches of BATCH shuffled samples, or the README's bucket batches."""
        if not bucketed:
            return torch.utils.data.BatchSampler(
                torch.utils.data.RandomSampler(dataset), BATCH, drop_last=False
            )
        sampler = BucketBatchSampler(dataset.sizes, max_tokens=BUDGET, seed=0)
        samplers.append(sampler)
        return sampler

    def map_style(dataset: Dataset, workers: int, bucketed: bool = False) -> DataLoader:
        # persistent workers and an untimed warm-up epoch: a long training run's steady state
        return DataLoader(
            dataset,
            batch_sampler=batches(dataset, bucketed),
            collate_fn=hetload.collate,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def threaded(dataset: Dataset, threads: int, bucketed: bool = False) -> ThreadedLoader:
        # the same batches as map_style, read by threads of this process
        return ThreadedLoader(dataset, batches(dataset, bucketed), threads=threads)

    def stream(workers: int, reads: str = "batch", bucketed: bool = False) -> DataLoader:
        batching = {"max_tokens": BUDGET} if bucketed else {"batch_size": BATCH}
        return DataLoader(
            ShardStream(dst, seed=0, reads=reads, **batching),
            None,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    w = args.workers
    names = {
        "ds_w": f"ShardDataset, {w} workers",
        "ds_0": "ShardDataset, in the main process",
        "ps_w": f"ShardDataset per-sample path (before), {w} workers",
        "ps_0": "ShardDataset per-sample path (before), in the main process",
        "thr": f"ShardDataset, ThreadedLoader({w} threads)",
        "st_w": f"ShardStream, {w} workers",
        "st_0": "ShardStream, in the main process",
        "sq_w": f"ShardStream reads='sequential' (before), {w} workers",
        "folder": f"{folder_name}, {w} workers",
        "memory": f"in-memory samples, {w} workers (the collate+IPC ceiling)",
        "r_ds_w": f"README usage (bucket batches): ShardDataset, {w} workers",
        "r_ds_0": "README usage (bucket batches): ShardDataset, in the main process",
        "r_thr": f"README usage (bucket batches): ShardDataset, ThreadedLoader({w} threads)",
        "r_st_w": f"README usage (bucket batches): ShardStream(max_tokens), {w} workers",
        "r_folder": f"README usage (bucket batches): {folder_name}, {w} workers",
    }
    loaders = {
        names["memory"]: (map_style(memory, w), 0),
        names["folder"]: (map_style(folder, w), obj_bytes),
        names["ds_w"]: (map_style(shards, w), shard_bytes),
        names["ps_w"]: (map_style(per_sample, w), shard_bytes),
        names["thr"]: (threaded(shards, w), shard_bytes),
        names["st_w"]: (stream(w), shard_bytes),
        names["ds_0"]: (map_style(shards, 0), shard_bytes),
        names["ps_0"]: (map_style(per_sample, 0), shard_bytes),
        names["st_0"]: (stream(0), shard_bytes),
        names["sq_w"]: (stream(w, "sequential"), shard_bytes),
        names["r_folder"]: (map_style(folder, w, bucketed=True), obj_bytes),
        names["r_ds_w"]: (map_style(shards, w, bucketed=True), shard_bytes),
        names["r_thr"]: (threaded(shards, w, bucketed=True), shard_bytes),
        names["r_st_w"]: (stream(w, bucketed=True), shard_bytes),
        names["r_ds_0"]: (map_style(shards, 0, bucketed=True), shard_bytes),
    }
    # round robin: every loader's epochs spread over the same stretch of time, so the load of
    # this shared machine weighs on all of them alike (one warm-up epoch each first)
    raw_read(shard_paths)  # warm the cache like the loaders' first pass would
    for loader, _ in tqdm(loaders.values(), desc="warm-up", leave=False):
        epoch(loader)
    runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name in loaders}
    raw_runs = []
    for r in tqdm(range(args.repeats), desc="rounds", leave=False):
        raw_runs.append(raw_read(shard_paths))
        for sampler in samplers:
            sampler.set_epoch(r + 1)  # (the warm-up ran epoch 0)
        for name, (loader, _) in loaders.items():
            runs[name].append(epoch(loader))
    raw = statistics.median(raw_runs)
    total_points = int(shards.sizes.sum())
    rows = [
        [
            "raw read of the shard files (1 process)",
            result.samples / raw,
            total_points / raw / 1e6,
            shard_bytes / 1e6 / raw,
            1.0,
        ]
    ]
    seconds: dict[str, float] = {}
    for name, (_, nbytes) in loaders.items():
        seconds[name] = statistics.median(r[0] for r in runs[name])
        samples, points = runs[name][0][1], runs[name][0][2]
        mbps = nbytes / 1e6 / seconds[name] if nbytes else float("nan")
        of_raw = raw / seconds[name] if nbytes == shard_bytes else float("nan")
        rows.append([name, samples / seconds[name], points / seconds[name] / 1e6, mbps, of_raw])
    print()
    print(
        f"{args.n} meshes, {obj_bytes / 1e6:.0f} MB of OBJ -> {len(shard_paths)} shards, "
        f"{shard_bytes / 1e6:.0f} MB; batches of {BATCH}; median of {args.repeats} epochs after "
        "a warm-up epoch, loaders taking turns; MB/s = bytes of the files each loader "
        "reads; load average "
        f"{os.getloadavg()[0]:.1f} (other processes share this machine)"
    )
    print(format_table(["loader", "samples/s", "Mpoints/s", "MB/s", "x raw read"], rows))

    def rate(key: str) -> float:
        return 1.0 / seconds[names[key]]

    # the targets, side by side
    def targets(label: str, ds_w: str, ds_0: str, folder: str, st_w: str) -> list[list]:
        """The issue's four loader targets for one way of batching."""
        return [
            [f"{label}ShardDataset 2 workers / its own in-process rate",
             rate(ds_w) / rate(ds_0), ">= 1.5"],
            [f"{label}ShardDataset 2 workers / raw read MB/s", raw * rate(ds_w), ">= 0.5"],
            [f"{label}ShardDataset 2 workers x MeshFolder 2 workers",
             rate(ds_w) / rate(folder), ">= 20"],
            [f"{label}ShardStream 2 workers / ShardDataset 2 workers",
             rate(st_w) / rate(ds_w), ">= 0.8"],
        ]  # fmt: skip

    ratios = [
        *targets("", "ds_w", "ds_0", "folder", "st_w"),
        ["ShardStream in-process / ShardDataset in-process", rate("st_0") / rate("ds_0"), ">= 0.8"],
        ["ShardStream batch reads / sequential reads, 2 workers (after/before)",
         rate("st_w") / rate("sq_w"), "-"],
        ["ThreadedLoader / ShardDataset 2 workers", rate("thr") / rate("ds_w"), "-"],
        ["ThreadedLoader / raw read MB/s", raw * rate("thr"), ">= 0.5"],
        ["ThreadedLoader x MeshFolder 2 workers", rate("thr") / rate("folder"), ">= 20"],
        ["batch reads / per-sample path, 2 workers (after/before)",
         rate("ds_w") / rate("ps_w"), "-"],
        ["batch reads / per-sample path, in-process (after/before)",
         rate("ds_0") / rate("ps_0"), "-"],
        ["ShardDataset in-process / raw read MB/s", raw * rate("ds_0"), "-"],
        # the same targets with the README's usage (BucketBatchSampler, max_tokens=262,144)
        *targets("README usage: ", "r_ds_w", "r_ds_0", "r_folder", "r_st_w"),
        ["README usage: ThreadedLoader / raw read MB/s", raw * rate("r_thr"), "-"],
    ]  # fmt: skip
    print()
    print(format_table(["ratio", "value", "target"], ratios))
    indices = list(range(min(BATCH, len(shards))))
    copies = [
        ["ShardDataset batch read + DataLoader(pin_memory=True)",
         copies_after_read(shards, indices, pinned_read=False), "<= 1"],
        ["ShardDataset batch read + ThreadedLoader(pin_memory=True)",
         copies_after_read(shards, indices, pinned_read=True), "<= 1"],
        ["ShardDataset per-sample path (before) + DataLoader(pin_memory=True)",
         copies_after_read(per_sample, indices, pinned_read=False), "<= 1"],
        ["ShardStream batch reads + DataLoader(pin_memory=True)",
         stream_copies_after_read(dst, "batch"), "<= 1"],
        ["ShardStream reads='sequential' (before) + DataLoader(pin_memory=True)",
         stream_copies_after_read(dst, "sequential"), "<= 1"],
    ]  # fmt: skip
    print()
    print(
        format_table(["shard file -> pinned batch", "host copies after the read", "target"], copies)
    )


if __name__ == "__main__":
    main()
