"""collate's copy of an index field (faces), alone: hetload's fused kernel against the
alternatives and the plain copy of the same bytes, in one run.

B meshes as in ``scripts/bench_collate.py`` (log-normal vertex counts, median 10k, about 2x as
many triangles), faces ``[F_i, 3]`` as int64 and int32; ``torch.set_num_threads(1)`` as inside
DataLoader workers. Every contender writes the packed faces of the whole batch:

- ``hetload compiled``: ``torch.ops.hetload.rebase_index_`` (``cuda/index_cpu.cpp``): copy,
  re-base and range check in one pass;
- ``hetload fallback``: the same op's numpy implementation (``hetload.ops.index_impl``, what
  serves without the compiled module): add, then min/max per sample;
- ``PyG-style``: ``torch.cat([faces_i + base_i])`` (a temporary per sample, no range check);
- ``copy (no re-base)``: ``torch.cat(faces, out=)``, one ``memcpy`` per sample of the same
  sources into the same output: the floor, since it moves the same bytes with no arithmetic.

hetload's contenders and the copy write into one reused output (PyG's ``cat`` allocates its own),
so the table compares passes over memory, not the allocator (fresh large buffers cost page
faults that depend on what the allocator did just before). A copy between two other buffers is
not the floor here: the faces and the output stay in the last-level cache that every contender
shares, other buffers are evicted by them.

Times are medians of ``--repeats`` rounds; the contenders alternate within each round, in a
shuffled order, so that other load on the machine and each other's cache traces hit them
alike. The outputs are checked equal first.

A second table checks the floor of ``scripts/bench_collate.py`` (one copy of the batch's bytes,
verts f32 + faces int64, into a fresh buffer, from ``torch.empty``): a source that was never
written reads the kernel's shared zero page, so that copy costs about the writes alone; the
same copy from a written source is the floor for real data.

    python scripts/bench_index_rebase.py
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import numpy as np
import torch

import hetload as hl
from hetload.ops import index_impl, library


def make_faces(batch: int, median: int, seed: int, dtype: torch.dtype):
    """Per mesh: faces ``[2 n, 3]`` of ``dtype`` indexing its ``n`` vertices; and the counts."""
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.lognormal(np.log(median), 0.8, size=batch), 100, 200_000).astype(int)
    faces = [torch.from_numpy(rng.integers(0, n, size=(2 * n, 3))).to(dtype) for n in counts]
    return faces, counts.tolist()


def contenders(faces, counts):
    bases = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
    rows, width = sum(len(f) for f in faces), faces[0].shape[1]
    dtype = faces[0].dtype
    nbytes = sum(f.nbytes for f in faces)
    out = torch.empty(rows, width, dtype=dtype)

    def compiled():
        return out, torch.ops.hetload.rebase_index_(faces, out, bases, counts)

    def fallback():
        return out, index_impl.rebase_index_(faces, out, bases, counts)

    result = {
        "copy (no re-base), torch.cat": lambda: torch.cat(faces, out=out),
        "hetload fallback (numpy)": fallback,
        "PyG-style cat(f + base)": lambda: torch.cat([f + b for f, b in zip(faces, bases)]),
    }
    checked = [fallback]
    if library.has_kernel("rebase_index_", "CPU"):
        result["hetload compiled"] = compiled
        checked.append(compiled)
    expected = result["PyG-style cat(f + base)"]()
    for fn in checked:
        got, bad = fn()
        if bad != -1 or not torch.equal(got, expected):
            raise SystemExit(f"{fn.__name__} disagrees with torch.cat([f + base])")
    return result, nbytes


def time_round_robin(fns: dict, repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    order = random.Random(0)
    for _ in range(repeats):
        # a fresh order each round, so none always runs after the same one (a rotation would
        # keep the cyclic order: the contender after PyG-style's fresh 16 MB output always paid
        # for its cache traces, 1.36x instead of 1.04x for the compiled op)
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--median", type=int, default=10_000, help="median vertices per mesh")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"hetload {hl.__version__}, torch {torch.__version__}, {platform.machine()}, threads=1, "
        f"B={args.batch}, median {args.median:,} vertices/mesh, faces [2n, 3], "
        f"median of {args.repeats}; compiled op loaded: "
        f"{library.has_kernel('rebase_index_', 'CPU')}"
    )
    print(
        f"| {'dtype':<11} | {'MB':>5} | {'method':<30} | {'median ms':>9} | {'GB/s':>6} "
        f"| {'/ copy':>6} | {'/ hetload':>9} |"
    )
    print(f"|{'-' * 13}|{'-' * 7}|{'-' * 32}|{'-' * 11}|{'-' * 8}|{'-' * 8}|{'-' * 11}|")
    for dtype in (torch.int64, torch.int32):
        faces, counts = make_faces(args.batch, args.median, args.seed, dtype)
        fns, nbytes = contenders(faces, counts)
        times = time_round_robin(fns, args.repeats)
        floor = times["copy (no re-base), torch.cat"]
        ours = times.get("hetload compiled", times["hetload fallback (numpy)"])
        for name, t in times.items():
            print(
                f"| {dtype!s:<11} | {nbytes / 1e6:>5.1f} | {name:<30} | {t * 1e3:>9.3f} "
                f"| {nbytes / t / 1e9:>6.2f} | {t / floor:>6.2f} | {t / ours:>9.2f} |"
            )

    _, counts = make_faces(args.batch, args.median, args.seed, torch.int64)
    nbytes = sum(counts) * (3 * 4 + 2 * 3 * 8)  # verts f32 [n, 3] + faces int64 [2n, 3]
    never = torch.empty(nbytes, dtype=torch.uint8)
    written = torch.empty(nbytes, dtype=torch.uint8).fill_(1)
    times = time_round_robin(
        {
            "never written (bench_collate's floor)": lambda: torch.empty_like(never).copy_(never),
            "written": lambda: torch.empty_like(written).copy_(written),
        },
        args.repeats,
    )
    print(f"\none copy of the collate batch's {nbytes / 1e6:.1f} MB into a fresh buffer")
    print(f"| {'source':<38} | {'median ms':>9} | {'GB/s':>6} |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 8}|")
    for name, t in times.items():
        print(f"| {name:<38} | {t * 1e3:>9.3f} | {nbytes / t / 1e9:>6.2f} |")


if __name__ == "__main__":
    main()
