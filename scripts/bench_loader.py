"""Loader throughput: MeshFolder over OBJ files vs ShardDataset vs ShardStream, same data.

One run generates (or reuses) a dataset of OBJ meshes with log-normal vertex counts, preprocesses
it into shards with ``hetload preprocess``, then times each loader
(``DataLoader(num_workers=2, persistent_workers=True, collate_fn=hetload.collate)``, batches of
16 samples) for ``--repeats`` epochs after one warm-up epoch, and the raw sequential read of the
shard files in this process. Prints medians: samples/s, points/s (vertex rows), MB/s (bytes of
the files the loader reads), and the ratios the targets are about: shards vs MeshFolder, and
shard loaders vs the raw read.

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
from hetload.data import ShardDataset, ShardStream
from hetload.shards.preprocess import preprocess

BATCH = 16


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
    memory = InMemory(shards)

    def map_style(dataset: Dataset, workers: int) -> DataLoader:
        # persistent workers and an untimed warm-up epoch: a long training run's steady state
        return DataLoader(
            dataset,
            BATCH,
            shuffle=True,
            collate_fn=hetload.collate,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def stream(workers: int) -> DataLoader:
        return DataLoader(
            ShardStream(dst, batch_size=BATCH, seed=0),
            None,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    w = args.workers
    loaders = {
        f"in-memory samples, {w} workers (the collate+IPC ceiling)": (map_style(memory, w), 0),
        f"{folder_name}, {w} workers": (map_style(folder, w), obj_bytes),
        f"ShardDataset, {w} workers": (map_style(shards, w), shard_bytes),
        f"ShardStream, {w} workers": (stream(w), shard_bytes),
        "ShardDataset, in the main process": (map_style(shards, 0), shard_bytes),
        "ShardStream, in the main process": (stream(0), shard_bytes),
    }
    raw_read(shard_paths)  # warm the cache like the loaders' first pass would
    raw = statistics.median(raw_read(shard_paths) for _ in range(args.repeats))
    total_points = int(shards.sizes.sum())
    rows = [
        [
            "raw read of the shard files (1 process)",
            result.samples / raw,
            total_points / raw / 1e6,
            shard_bytes / 1e6 / raw,
        ]
    ]
    seconds: dict[str, float] = {}
    for name, (loader, nbytes) in tqdm(loaders.items(), desc="loaders", leave=False):
        epoch(loader)
        runs = [epoch(loader) for _ in range(args.repeats)]
        seconds[name] = statistics.median(r[0] for r in runs)
        samples, points = runs[0][1], runs[0][2]
        mbps = nbytes / 1e6 / seconds[name] if nbytes else float("nan")
        rows.append([name, samples / seconds[name], points / seconds[name] / 1e6, mbps])
    print()
    print(
        f"{args.n} meshes, {obj_bytes / 1e6:.0f} MB of OBJ -> {len(shard_paths)} shards, "
        f"{shard_bytes / 1e6:.0f} MB; batches of {BATCH}; median of {args.repeats} epochs after "
        "a warm-up epoch; MB/s = bytes of the files each loader reads"
    )
    print(format_table(["loader", "samples/s", "Mpoints/s", "MB/s"], rows))
    base = seconds[f"{folder_name}, {w} workers"]
    ceiling = seconds[f"in-memory samples, {w} workers (the collate+IPC ceiling)"]
    ratios = []
    for name in (f"ShardDataset, {w} workers", f"ShardStream, {w} workers"):
        ratios.append([f"{name}: x {folder_name}", base / seconds[name], ">= 20"])
        ratios.append([f"{name}: / raw read MB/s", raw / seconds[name], ">= 0.5"])
        ratios.append([f"{name}: / in-memory ceiling", ceiling / seconds[name], ""])
    for name in ("ShardDataset, in the main process", "ShardStream, in the main process"):
        ratios.append([f"{name}: x {folder_name}, {w} workers", base / seconds[name], ">= 20"])
        ratios.append([f"{name}: / raw read MB/s", raw / seconds[name], ">= 0.5"])
    print()
    print(format_table(["ratio", "value", "target"], ratios))


if __name__ == "__main__":
    main()
