"""hetload.batched on a packed batch against per-sample peers, in one run.

Workload: ``--batch`` samples of ``N_i`` points, ``N_i`` uniform in ``[N/2, 3N/2]`` (``--points``),
and for surface sampling ``--batch`` random meshes of ``F_i`` faces likewise (``--faces``). Each
row times hetload's batched op (one call on the whole packed batch) and the alternatives:

- ``fps`` (``--fps`` points per sample): hetload (compiled kernel where built), hetload's
  pure-torch path, ``fpsample.fps_sampling`` per sample (CPU peer, optional), and a per-sample
  torch loop (the algorithm of PyTorch3D's ``sample_farthest_points``, one sample at a time);
  ``torch_cluster.fps`` when importable (it has no wheel for recent torch);
- ``grid``: ``grid_sample`` (``--grid`` voxel edge, train mode; compiled kernel where built)
  against its pure-torch path and Pointcept's ``GridSample`` logic re-implemented as a numpy
  per-sample loop (FNV hash, argsort, unique, random point per voxel);
- ``surface``: ``sample_surface`` (``--surface`` points per mesh; compiled kernel where built)
  against its pure-torch path, a per-sample torch loop in PyTorch3D's construction (areas,
  multinomial, barycentric) and the CPU worker path (``hetload.transforms.SamplePoints`` per
  sample, numpy);
- ``augment``: rotation + scale + jitter, batched (compiled kernels where built), against the
  same steps through the pure-torch implementations and ``hetload.transforms`` per sample;
- ``serialize``: z-order + Hilbert codes of the grid-sampled batch against per-sample calls.

Every contender's output is checked against hetload's where the two are deterministic (FPS from
row 0, grid sampling's first point per voxel); ratios are the peer's time over hetload's
(> 1: hetload faster). Medians of ``--repeats`` calls after a warm-up; CUDA is synchronized.

    python scripts/bench_device_ops.py                    # CPU, the defaults
    python scripts/bench_device_ops.py --device cuda      # on a GPU (peers stay per sample)
    python scripts/bench_device_ops.py --json out/dev.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import hetload as hl
from hetload import transforms as T
from hetload.batched import geometry as hgeom
from hetload.batched import grid as hgrid
from hetload.batched import random as hrandom
from hetload.ops import augment_impl, grid_impl, sampling_impl, surface_impl

try:
    import fpsample
except ImportError:  # an optional peer: its rows say so
    fpsample = None
try:
    import torch_cluster
except ImportError:
    torch_cluster = None


#: the clock of every timing: wall (perf_counter) or this process's CPU time (--clock cpu)
CLOCK = time.perf_counter


def timed(fn: Callable[[], object], repeats: int, device: str) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = CLOCK()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(CLOCK() - start)
    return statistics.median(times)


def clouds(batch: int, mean: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(mean // 2, mean * 3 // 2 + 1, size=batch)
    return [rng.normal(size=(int(n), 3)).astype(np.float32) for n in sizes]


def meshes(batch: int, mean_faces: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for f in rng.integers(mean_faces // 2, mean_faces * 3 // 2 + 1, size=batch):
        nv = int(f) // 2 + 3
        out.append(
            {
                "verts": rng.normal(size=(nv, 3)).astype(np.float32),
                "faces": rng.integers(0, nv, size=(int(f), 3)),
            }
        )
    return out


# ------------------------------------------------------------------ per-sample peers


def fps_loop_torch(points: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """PyTorch3D's sample_farthest_points algorithm, one sample at a time (start at row 0)."""
    out = []
    for p in points:
        n = min(k, p.shape[0])
        chosen = torch.empty(n, dtype=torch.int64, device=p.device)
        dist = torch.full((p.shape[0],), float("inf"), dtype=torch.float64, device=p.device)
        current = torch.zeros((), dtype=torch.int64, device=p.device)
        pd = p.double()
        for step in range(n):
            chosen[step] = current
            dist = torch.minimum(dist, ((pd - pd[current]) ** 2).sum(1))
            current = torch.argmax(dist)
        out.append(chosen)
    return out


def pointcept_grid_sample(points: list[np.ndarray], grid_size: float, rng, first: bool):
    """Pointcept's GridSample (train mode) per sample, in numpy: the peer's own logic."""
    kept = []
    for coord in points:
        grid = np.floor(coord / np.array(grid_size)).astype(np.int64)
        grid -= grid.min(0)
        key = np.full(len(grid), np.uint64(hgrid.FNV_BASIS))
        for j in range(3):
            key = key * np.uint64(hgrid.FNV_PRIME)
            key = key ^ grid[:, j].astype(np.uint64)
        idx_sort = np.argsort(key, kind="stable" if first else "quicksort")
        _, count = np.unique(key[idx_sort], return_counts=True)
        starts = np.cumsum(np.insert(count, 0, 0)[:-1])
        pick = starts if first else starts + rng.integers(0, count.max(), count.size) % count
        kept.append(idx_sort[pick])
    return kept


def surface_loop_torch(items: list[dict], n: int, gen: torch.Generator) -> list[torch.Tensor]:
    """PyTorch3D's sample_points_from_meshes construction, one mesh at a time."""
    out = []
    for m in items:
        v, f = m["verts"], m["faces"]
        tri = v[f]
        areas = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1)
        face = torch.multinomial(areas, n, replacement=True, generator=gen)
        r = torch.rand(2, n, generator=gen, device=v.device)
        s = r[0].sqrt()
        w = torch.stack([1 - s, s * (1 - r[1]), s * r[1]], 1)
        out.append((w[:, :, None] * tri[face]).sum(1))
    return out


# ------------------------------------------------------------------------------ rows


def bench_fps(args, pts_np, device) -> dict:
    batch = hl.Ragged.from_list([torch.from_numpy(p) for p in pts_np]).to(device)
    k = args.fps
    row: dict[str, object] = {}
    ref = hl.batched.farthest_point_sampling(batch, k).unbind(local=True)
    row["hetload"] = timed(
        lambda: hl.batched.farthest_point_sampling(batch, k), args.repeats, device
    )
    counts = batch.lengths.clamp(max=k)
    out_offsets = torch.zeros_like(batch.offsets)
    torch.cumsum(counts, 0, out=out_offsets[1:])
    start = torch.zeros_like(counts)
    total = int(out_offsets[-1])
    row["hetload torch path"] = timed(
        lambda: sampling_impl.farthest_point_sample(
            batch.values, batch.offsets, out_offsets, start, total
        ),
        max(1, args.repeats // 2),
        device,
    )
    items = [torch.from_numpy(p).to(device) for p in pts_np]
    loop = fps_loop_torch(items, k)
    row["agree per-sample loop"] = all(torch.equal(a, b) for a, b in zip(loop, ref))
    row["per-sample torch loop"] = timed(lambda: fps_loop_torch(items, k), 1, device)
    if fpsample is not None:
        got = [fpsample.fps_sampling(p, min(k, len(p)), start_idx=0) for p in pts_np]
        row["agree fpsample"] = all(np.array_equal(a, b.cpu().numpy()) for a, b in zip(got, ref))
        row["fpsample per sample"] = timed(
            lambda: [fpsample.fps_sampling(p, min(k, len(p)), start_idx=0) for p in pts_np],
            args.repeats,
            "cpu",
        )
    else:
        row["fpsample per sample"] = "n/a (not installed)"
    if torch_cluster is not None:
        ratio = torch.tensor([k / len(p) for p in pts_np]).min().item()
        row["torch_cluster.fps"] = timed(
            lambda: torch_cluster.fps(batch.values, batch.batch_idx, ratio, random_start=False),
            args.repeats,
            device,
        )
    else:
        row["torch_cluster.fps"] = "n/a (no wheel for this torch)"
    return row


def bench_grid(args, pts_np, device) -> dict:
    normalized = [p / np.abs(p).max() for p in pts_np]
    batch = hl.Ragged.from_list([torch.from_numpy(p) for p in normalized]).to(device)
    seeds = hl.batched.sample_seeds(list(range(len(pts_np))), device=device)
    first = hl.batched.grid_sample(batch, args.grid, mode="first").index.unbind(local=True)
    peer = pointcept_grid_sample(normalized, args.grid, None, first=True)
    row: dict[str, object] = {
        "agree pointcept (first point)": all(
            np.array_equal(a, b.cpu().numpy()) for a, b in zip(peer, first)
        ),
        "hetload": timed(
            lambda: hl.batched.grid_sample(batch, args.grid, seeds), args.repeats, device
        ),
    }
    stream = hrandom.STREAMS["grid"]
    row["hetload torch path (two global sorts)"] = timed(
        lambda: grid_impl.grid_sample(batch.values, batch.offsets, args.grid, seeds, stream, True),
        args.repeats,
        device,
    )
    rng = np.random.default_rng(0)
    row["pointcept numpy per sample"] = timed(
        lambda: pointcept_grid_sample(normalized, args.grid, rng, first=False),
        args.repeats,
        "cpu",
    )
    row["voxels kept"] = sum(len(x) for x in first)
    return row


def bench_surface(args, mesh_np, device) -> dict:
    batch = hl.collate(mesh_np).to(device)
    seeds = hl.batched.sample_seeds(list(range(len(mesh_np))), device=device)
    n = args.surface
    row: dict[str, object] = {
        "hetload": timed(
            lambda: hl.batched.sample_surface(batch.verts, batch.faces, n, seeds),
            args.repeats,
            device,
        ),
    }
    out_offsets = torch.zeros_like(batch.faces.offsets)
    torch.cumsum(torch.where(batch.faces.lengths > 0, n, 0), 0, out=out_offsets[1:])
    surface_args = (
        batch.verts.values,
        batch.faces.values.long(),
        batch.faces.offsets,
        out_offsets,
        seeds,
        hrandom.STREAMS["surface"],
        int(out_offsets[-1]),
        False,
    )
    row["hetload torch path"] = timed(
        lambda: surface_impl.sample_surface(*surface_args), args.repeats, device
    )
    items = [
        {
            "verts": torch.from_numpy(m["verts"]).to(device),
            "faces": torch.from_numpy(m["faces"]).to(device),
        }
        for m in mesh_np
    ]
    gen = torch.Generator(device=device).manual_seed(0)
    row["per-sample torch loop (pytorch3d's construction)"] = timed(
        lambda: surface_loop_torch(items, n, gen), args.repeats, device
    )
    step = T.SamplePoints(n, with_normals=False)
    rng = np.random.default_rng(0)
    row["hetload.transforms per sample (numpy)"] = timed(
        lambda: [step(m, rng) for m in mesh_np], args.repeats, "cpu"
    )
    return row


def bench_augment(args, pts_np, device) -> dict:
    batch = hl.Ragged.from_list([torch.from_numpy(p) for p in pts_np]).to(device)
    seeds = hl.batched.sample_seeds(list(range(len(pts_np))), device=device)

    def batched():
        r = hl.batched.random_rotation(batch, seeds)
        r = hl.batched.random_scale(r, seeds)
        return hl.batched.jitter(r, seeds)

    def torch_path():  # the same three steps through the pure-torch implementations
        values, offsets = batch.values, batch.offsets
        r = augment_impl.per_sample_matmul(values, offsets, hgeom.rotation_matrices(seeds))
        factors = hgeom.scale_factors(seeds, 0.8, 1.25).contiguous()
        r = augment_impl.per_sample_scale(r, offsets, factors)
        return augment_impl.jitter_points(r, offsets, seeds, hrandom.STREAMS["jitter"], 0.01, 0.05)

    got, want = batched().values, torch_path()
    chain = T.Compose([T.RandomRotation(), T.RandomScale(), T.Jitter()])
    rng = np.random.default_rng(0)
    samples = [{"verts": p} for p in pts_np]
    return {
        "agree torch path (max abs diff)": float((got - want).abs().max()) if len(got) else 0.0,
        "hetload": timed(batched, args.repeats, device),
        "hetload torch path": timed(torch_path, args.repeats, device),
        "hetload.transforms per sample (numpy)": timed(
            lambda: [chain(s, rng) for s in samples], args.repeats, "cpu"
        ),
    }


def bench_serialize(args, pts_np, device) -> dict:
    normalized = [p / np.abs(p).max() for p in pts_np]
    batch = hl.Ragged.from_list([torch.from_numpy(p) for p in normalized]).to(device)
    coords = hl.batched.grid_sample(batch, args.grid, mode="first").grid_coord
    orders = ("z", "hilbert")
    depth = int(coords.values.max() + 1).bit_length()
    items = coords.unbind()

    def per_sample():
        for item in items:
            one = hl.Ragged(
                item, torch.tensor([0, item.shape[0]], device=item.device), validate=False
            )
            hl.batched.serialize(one, orders, depth)

    return {
        "hetload": timed(lambda: hl.batched.serialize(coords, orders, depth), args.repeats, device),
        "per-sample calls": timed(per_sample, args.repeats, device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=4096)
    parser.add_argument("--faces", type=int, default=4096)
    parser.add_argument("--fps", type=int, default=512)
    parser.add_argument("--grid", type=float, default=0.05)
    parser.add_argument("--surface", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this process's CPU time (with --threads 1, on a machine shared with other "
        "jobs, time spent waiting for a core is left out; not for --device cuda)",
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    pts_np = clouds(args.batch, args.points, seed=0)
    mesh_np = meshes(args.batch, args.faces, seed=1)
    print(
        f"# bench_device_ops: device={device} torch={torch.__version__} "
        f"threads={torch.get_num_threads()} clock={args.clock} "
        f"python={platform.python_version()}"
    )
    print("# backends: " + " ".join(f"{op}={op_backend(op, device)}" for op in COMPILED_OPS))
    print(
        f"# B={args.batch} points~{args.points} faces~{args.faces} fps={args.fps} "
        f"grid={args.grid} surface={args.surface} repeats={args.repeats}"
    )
    rows = {
        "fps": bench_fps(args, pts_np, device),
        "grid": bench_grid(args, pts_np, device),
        "surface": bench_surface(args, mesh_np, device),
        "augment": bench_augment(args, pts_np, device),
        "serialize": bench_serialize(args, pts_np, device),
    }
    for name, row in rows.items():
        base = row["hetload"]
        print(f"\n## {name}")
        for contender, value in row.items():
            if isinstance(value, float) and not contender.startswith("agree"):
                ratio = "" if contender == "hetload" else f"  ({value / base:7.2f}x hetload)"
                print(f"  {contender:48s} {value * 1e3:10.2f} ms{ratio}")
            else:
                print(f"  {contender:48s} {value}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=1)


#: the ops behind hl.batched with compiled kernels (cuda/*_cpu.cpp, *_cuda.cu)
COMPILED_OPS = (
    "farthest_point_sample",
    "grid_sample",
    "sample_surface",
    "per_sample_matmul",
    "per_sample_scale",
    "jitter_points",
)


def op_backend(op: str, device: str) -> str:
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(torch.device(device).type, "")
    has = hl.ops.library.has_kernel(op, key) if key else False
    return "compiled" if has else "torch"


if __name__ == "__main__":
    main()
