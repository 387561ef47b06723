"""Collate and packed->padded, hetload vs the alternatives, in one run.

Setting: ``torch.set_num_threads(1)`` (as inside DataLoader workers); B meshes with log-normal
vertex counts (median 10k) and about 2x as many triangles. Each contender builds the same batch;
every time is the median (and the minimum: on a loaded machine the better estimate of the
unloaded time) of ``--repeats`` runs after a warm-up, and is compared with the floor of one
``memcpy`` of the same bytes (into a reused buffer, and into a freshly allocated one, since a
collate must hand out new memory).

    python scripts/bench_collate.py            # the BENCHMARKS.md table
    python scripts/bench_collate.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from collections.abc import Callable
from operator import attrgetter

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

import hetload as hl

try:
    from torch_geometric.data import Batch, Data
    from torch_geometric.utils import to_dense_batch
except ImportError:  # the peer is optional; its rows say so
    Batch = Data = to_dense_batch = None


def make_meshes(batch: int, median: int, seed: int) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.lognormal(np.log(median), 0.8, size=batch), 100, 200_000).astype(int)
    meshes = []
    for n in counts:
        meshes.append(
            {
                "verts": torch.from_numpy(rng.standard_normal((n, 3)).astype(np.float32)),
                "faces": torch.from_numpy(rng.integers(0, n, size=(2 * n, 3))),
            }
        )
    return meshes


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    return timings(fn, repeats)[0]


def timings(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """``(median, min)`` seconds of ``repeats`` runs after a warm-up. On a loaded machine the
    minimum is the better estimate of the unloaded time (load only adds)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


# ---------------------------------------------------------------------------- collate contenders
def collate_hetload(meshes):
    return hl.collate(meshes)


def copies_only(meshes):
    """The two copies hl.collate makes, and nothing else: verts by ``torch.cat(out=)``, faces by
    the compiled ``rebase_index_``; no checks, no offsets, no batch object."""
    verts = [m["verts"] for m in meshes]
    faces = [m["faces"] for m in meshes]
    counts = [len(v) for v in verts]
    bases = [0, *itertools.accumulate(counts)][:-1]

    def run():
        out_v = torch.empty((sum(counts), 3), dtype=verts[0].dtype)
        torch.cat(verts, out=out_v)
        out_f = torch.empty((sum(len(f) for f in faces), 3), dtype=faces[0].dtype)
        hl.ops.rebase_index_(faces, out_f, bases, counts)
        return out_v, out_f

    return run


def fused_unchecked(meshes):
    """The least Python a packed collate of exactly these two fields can run, with none of
    ``hl.collate``'s checks (dtype, device, layout, grad, trailing shape, index range named per
    sample): shapes, one buffer, three views, the offsets, the two copies. Not a usable collate;
    the bound any checked Python collate sits above (issue 14's 1.2x analysis)."""
    rebase = torch.ops.hetload.rebase_index_.default
    shape = attrgetter("shape")

    def run():
        verts = [m["verts"] for m in meshes]
        faces = [m["faces"] for m in meshes]
        nv = [s[0] for s in map(shape, verts)]
        nf = [s[0] for s in map(shape, faces)]
        bv, bf = [0, *itertools.accumulate(nv)], [0, *itertools.accumulate(nf)]
        faces_at = -(-bv[-1] * 12 // 4096) * 4096
        offsets_at = faces_at + bf[-1] * 24
        buffer = torch.empty(offsets_at + 2 * (len(meshes) + 1) * 8, dtype=torch.uint8)
        storage = buffer.untyped_storage()
        v = buffer.new_empty(0, dtype=torch.float32).set_(storage, 0, (bv[-1], 3))
        f = buffer.new_empty(0, dtype=torch.int64).set_(storage, faces_at // 8, (bf[-1], 3))
        o = buffer.new_empty(0, dtype=torch.int64).set_(
            storage, offsets_at // 8, (2, len(meshes) + 1)
        )
        o.numpy()[:] = (bv, bf)
        torch.cat(verts, out=v)
        rebase(faces, f, bv[:-1], nv)
        return v, f, o

    return run


def collate_handwritten(meshes):
    """What users write today: cat, shift faces with temporaries, cumsum offsets."""
    verts = torch.cat([m["verts"] for m in meshes])
    counts = torch.tensor([len(m["verts"]) for m in meshes])
    starts = torch.cumsum(counts, 0) - counts
    faces = torch.cat([m["faces"] + s for m, s in zip(meshes, starts.tolist())])
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
    return verts, faces, offsets


def collate_padded(meshes):
    """PyTorch3D's list_to_padded style: a dense [B, max, 3] per field, -1 padded faces."""
    batch = len(meshes)
    max_v = max(len(m["verts"]) for m in meshes)
    max_f = max(len(m["faces"]) for m in meshes)
    verts = torch.zeros(batch, max_v, 3)
    faces = torch.full((batch, max_f, 3), -1, dtype=torch.int64)
    for i, m in enumerate(meshes):
        verts[i, : len(m["verts"])] = m["verts"]
        faces[i, : len(m["faces"])] = m["faces"]
    return verts, faces


def pyg_inputs(meshes):
    return [Data(pos=m["verts"], face=m["faces"].t().contiguous()) for m in meshes]


# ---------------------------------------------------------------------------- the run
def bench_collate(meshes, repeats: int) -> list[tuple[str, float, float]]:
    nbytes = sum(m["verts"].nbytes + m["faces"].nbytes for m in meshes)
    # written, so reads hit real pages (an untouched buffer reads the shared zero page)
    src = torch.ones(nbytes, dtype=torch.uint8)
    dst = torch.empty(nbytes, dtype=torch.uint8)
    rows = [
        ("memcpy floor (reused buffer)", lambda: dst.copy_(src)),
        ("memcpy floor (fresh buffer)", lambda: torch.empty_like(src).copy_(src)),
        ("hetload collate", lambda: collate_hetload(meshes)),
        ("  its two copies alone (cat + rebase_index_)", copies_only(meshes)),
        ("  fused, no checks (the Python bound)", fused_unchecked(meshes)),
        ("hand-written torch.cat + offsets", lambda: collate_handwritten(meshes)),
        ("per-sample padding (list_to_padded)", lambda: collate_padded(meshes)),
    ]
    if Batch is not None:
        data = pyg_inputs(meshes)
        rows.append(("PyG Batch.from_data_list", lambda: Batch.from_data_list(data)))
    return in_turn(rows, repeats)


def in_turn(rows, repeats: int) -> list[tuple[str, float, float]]:
    """``(name, median, min)`` seconds per row, each row's ``repeats`` runs back to back (its
    sources and output warm in the cache, as a worker's samples are when it collates them: the
    rows taking turns instead would leave each row the cache traces of the one before, which
    changes the floor itself by up to 2x here)."""
    return [(name, *timings(fn, repeats)) for name, fn in tqdm(rows, desc="rows", leave=False)]


def bench_padding(meshes, repeats: int, width: int) -> list[tuple[str, float, float]]:
    batch = hl.collate(meshes)
    ragged = batch.verts
    if width != 3:
        values = torch.randn(ragged.values.shape[0], width)
        ragged = hl.Ragged(values, ragged.offsets, max_len=ragged.max_len, validate=False)
    values, offsets, max_len = ragged.values, ragged.offsets, ragged.max_len
    out_bytes = len(meshes) * max_len * width * values.element_size()
    src = torch.ones(out_bytes, dtype=torch.uint8)
    dst = torch.empty(out_bytes, dtype=torch.uint8)
    items = ragged.unbind()
    nested = torch.nested.nested_tensor_from_jagged(values, offsets, max_seqlen=max_len)
    rows = [
        ("memcpy floor (reused buffer)", lambda: dst.copy_(src)),
        ("memcpy floor (fresh buffer)", lambda: torch.empty_like(src).copy_(src)),
        (
            f"hetload ops.packed_to_padded [{hl.ops.backend('cpu')}]",
            lambda: hl.ops.packed_to_padded(values, offsets, max_len, validate=False),
        ),
        (
            "torch.nested.to_padded_tensor",
            lambda: torch.nested.to_padded_tensor(nested, 0.0),
        ),
        ("pad_sequence", lambda: pad_sequence(items, batch_first=True)),
    ]
    if to_dense_batch is not None:
        batch_idx = ragged.batch_idx
        rows.append(
            (
                "PyG to_dense_batch",
                lambda: to_dense_batch(
                    values, batch_idx, max_num_nodes=max_len, batch_size=len(meshes)
                ),
            )
        )
    results = []
    for name, fn in tqdm(rows, desc=f"packed->padded D={width}", leave=False):
        results.append((name, *timings(fn, repeats)))
    return results


def print_table(
    title: str, results: list[tuple[str, float, float]], nbytes: int, ours: str
) -> None:
    """Ratios of medians, and (last column) of minimums: the unloaded estimate."""
    _, floor, floor_min = results[0]
    fresh = results[1][1]
    our_time = next(t for name, t, _ in results if name.startswith(ours))
    print(f"\n{title}  ({nbytes / 1e6:.1f} MB)")
    print(
        f"| {'method':<44} | {'median ms':>9} | {'GB/s':>6} | {'/ floor':>7} "
        f"| {'/ fresh':>7} | {'/ hetload':>9} | {'min ms':>7} | {'min / floor min':>15} |"
    )
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 11}|{'-' * 9}|{'-' * 17}|")
    for name, t, t_min in results:
        print(
            f"| {name:<44} | {t * 1e3:>9.3f} | {nbytes / t / 1e9:>6.2f} | {t / floor:>7.2f} | "
            f"{t / fresh:>7.2f} | {t / our_time:>9.2f} | {t_min * 1e3:>7.3f} | "
            f"{t_min / floor_min:>15.2f} |"
        )


def print_fixed_cost(tiny, repeats: int) -> None:
    """Each collate of B meshes of a few vertices: no bytes to speak of, so the time is the
    fixed cost per batch (checks, offsets, allocation, the batch object) that the copies of a
    real batch come on top of."""
    rows = [
        ("hetload collate", lambda: collate_hetload(tiny)),
        ("hand-written torch.cat + offsets", lambda: collate_handwritten(tiny)),
    ]
    if Batch is not None:
        data = pyg_inputs(tiny)
        rows.append(("PyG Batch.from_data_list", lambda: Batch.from_data_list(data)))
    results = in_turn(rows, repeats)
    ours = results[0][1]
    print(f"\nfixed cost per batch: B={len(tiny)} meshes of 100 vertices, {repeats} rounds")
    print(f"| {'method':<44} | {'median us':>9} | {'min us':>7} | {'/ hetload':>9} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 9}|{'-' * 11}|")
    for name, t, t_min in results:
        print(f"| {name:<44} | {t * 1e6:>9.1f} | {t_min * 1e6:>7.1f} | {t / ours:>9.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--median", type=int, default=10_000, help="median vertices per mesh")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    args = parser.parse_args()
    if args.quick:
        args.median, args.repeats = 1000, 5
    torch.set_num_threads(1)
    meshes = make_meshes(args.batch, args.median, args.seed)
    nverts = sum(len(m["verts"]) for m in meshes)
    print(
        f"hetload {hl.__version__}, torch {torch.__version__}, {platform.machine()}, "
        f"threads=1; B={args.batch}, vertices={nverts:,} (median/mesh {args.median:,}), "
        f"faces={sum(len(m['faces']) for m in meshes):,}"
    )
    collate_bytes = sum(m["verts"].nbytes + m["faces"].nbytes for m in meshes)
    print_table(
        "collate (verts f32 [N,3] + faces i64 [F,3])",
        bench_collate(meshes, args.repeats),
        collate_bytes,
        "hetload",
    )
    print_fixed_cost(make_meshes(args.batch, 4, args.seed), args.repeats * 10)
    for width in (3, 32):
        results = bench_padding(meshes, args.repeats, width)
        max_len = max(len(m["verts"]) for m in meshes)
        out_bytes = args.batch * max_len * width * 4
        print_table(f"packed->padded f32 D={width}, output bytes", results, out_bytes, "hetload")


if __name__ == "__main__":
    main()
