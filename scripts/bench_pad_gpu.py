"""Packed <-> padded: hetload's compiled kernels against the alternatives, in one run.

For every B in {8, 64, 1024}, row width D in {1, 3, 64} and dtype in {float32, bfloat16, int64}
(item lengths uniform in [L/2, 3L/2], one seed), both directions are timed for:

- ``hetload``: ``torch.ops.hetload.*`` (the compiled kernel where built; the header says which);
- ``fallback``: hetload's pure-torch implementation (``hetload.ops.torch_impl``);
- ``nested``: ``torch.nested.to_padded_tensor`` on a jagged tensor built with ``max_seqlen``, and
  ``aten._padded_dense_to_jagged_forward`` back;
- ``pyg``: PyG ``to_dense_batch`` (batch vector precomputed) and ``dense[mask]`` back;
- ``copy``: one device-to-device copy of a buffer as large as the op's output, into a reused
  buffer: the bandwidth ceiling; ``alloc+copy``: the same into fresh memory, the floor for any op
  that returns a new tensor (on the CPU, page faults on fresh memory dominate large outputs).
  GB/s counts bytes read + written; "% copy" is hetload's GB/s over the copy's.

Times are medians of ``--repeats`` calls after warm-up (CUDA events on the GPU). Every run first
checks that each contender's output equals hetload's. Targets (GPU, largest sizes): hetload at
>= 80% of the copy ceiling and >= 1.5x the best peer (nested, pyg).

    python scripts/bench_pad_gpu.py                       # on cuda: the issue's grid, L=2048
    python scripts/bench_pad_gpu.py --device cpu          # the CPU kernels, L=256, 1 thread
    python scripts/bench_pad_gpu.py --json out/pad.json   # also keep the raw numbers
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import hetload as hl
from hetload.cli._table import format_table
from hetload.ops import torch_impl

try:
    from torch_geometric.utils import to_dense_batch
except ImportError:  # the peer is optional; its cells say so
    to_dense_batch = None

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int64": torch.int64}
PEERS = ("nested", "pyg")
CONTENDERS = ("hetload", "fallback", "nested", "pyg", "copy", "alloc+copy")


def median_seconds(fn: Callable[[], object], repeats: int, device: str) -> float:
    for _ in range(2):
        fn()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(repeats):
            start_s = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start_s)
    return statistics.median(times)


def make_case(batch: int, dim: int, dtype: torch.dtype, mean_len: int, device: str, seed: int):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(mean_len // 2, mean_len * 3 // 2 + 1, size=batch)
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), device=device)
    total, max_len = int(lengths.sum()), int(lengths.max())
    gen = torch.Generator(device=device).manual_seed(seed)
    if dtype.is_floating_point:
        values = torch.randn(total, dim, generator=gen, device=device).to(dtype)
    else:
        values = torch.randint(-(2**40), 2**40, (total, dim), generator=gen, device=device)
    return values, offsets, total, max_len


def pad_contenders(values, offsets, total, max_len) -> dict[str, Callable[[], torch.Tensor]]:
    batch = offsets.numel() - 1
    fns = {
        "hetload": lambda: torch.ops.hetload.packed_to_padded(values, offsets, max_len, 0.0),
        "fallback": lambda: torch_impl.packed_to_padded(values, offsets, max_len, 0.0),
    }
    try:
        nested = torch.nested.nested_tensor_from_jagged(values, offsets, max_seqlen=max_len)
        fns["nested"] = lambda: torch.nested.to_padded_tensor(nested, 0.0)
    except (RuntimeError, NotImplementedError, TypeError):
        pass
    if to_dense_batch is not None:
        batch_idx = torch.repeat_interleave(
            torch.arange(batch, device=values.device), offsets.diff(), output_size=total
        )
        fns["pyg"] = lambda: to_dense_batch(values, batch_idx, 0.0, max_len, batch)[0]
    return fns


def unpack_contenders(padded, offsets, total) -> dict[str, Callable[[], torch.Tensor]]:
    max_len = padded.shape[1]
    mask = torch.arange(max_len, device=padded.device) < offsets.diff()[:, None]
    fns = {
        "hetload": lambda: torch.ops.hetload.padded_to_packed(padded, offsets, total),
        "fallback": lambda: torch_impl.padded_to_packed(padded, offsets, total),
        "nested": lambda: torch.ops.aten._padded_dense_to_jagged_forward(padded, [offsets], total),
    }
    if to_dense_batch is not None:
        fns["pyg"] = lambda: padded[mask]
    return fns


def run_direction(fns, copy_bytes: int, moved_bytes: int, repeats: int, device: str) -> dict:
    """Time every contender whose output matches hetload's; the copy ceiling last."""
    reference = fns["hetload"]()
    times: dict[str, float | str] = {}
    for name, fn in fns.items():
        try:
            out = fn()
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            times[name] = f"n/a ({type(exc).__name__})"
            continue
        if not torch.equal(out, reference):
            raise AssertionError(f"{name} disagrees with hetload")
        times[name] = median_seconds(fn, repeats, device)
    src = torch.empty(copy_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    times["copy"] = median_seconds(lambda: dst.copy_(src), repeats, device)
    times["alloc+copy"] = median_seconds(lambda: torch.empty_like(src).copy_(src), repeats, device)
    gbps = moved_bytes / times["hetload"] / 1e9
    copy_gbps = 2 * copy_bytes / times["copy"] / 1e9
    alloc_copy_gbps = 2 * copy_bytes / times["alloc+copy"] / 1e9
    peers = [times[p] for p in PEERS if isinstance(times.get(p), float)]
    return {
        "times": times,
        "gbps": gbps,
        "pct_copy": 100 * gbps / copy_gbps,
        "pct_alloc_copy": 100 * gbps / alloc_copy_gbps,
        "vs_best_peer": min(peers) / times["hetload"] if peers else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64, 1024])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 3, 64])
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--mean-len", type=int, help="mean item length (cuda 2048, cpu 256)")
    parser.add_argument("--repeats", type=int, help="timed calls per cell (cuda 20, cpu 15)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (cpu runs)")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    device = args.device
    gpu = device == "cuda"
    mean_len = args.mean_len or (2048 if gpu else 256)
    repeats = args.repeats or (20 if gpu else 15)
    torch.set_num_threads(args.threads)

    machine = torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine()
    print(
        f"device {device} ({machine}), torch {torch.__version__}, python "
        f"{platform.python_version()}, threads {torch.get_num_threads()}, hetload backend "
        f"{hl.ops.backend(device)}, mean length {mean_len}, median of {repeats}"
    )
    cells = [(d, b, dim) for d in args.dtypes for b in args.batches for dim in args.dims]
    rows, raw = [], []
    for dtype_name, batch, dim in tqdm(cells, desc="configs", leave=False):
        values, offsets, total, max_len = make_case(
            batch, dim, DTYPES[dtype_name], mean_len, device, seed=batch * 100 + dim
        )
        item = values.element_size() * dim
        packed_bytes, padded_bytes = total * item, batch * max_len * item
        padded = torch.ops.hetload.packed_to_padded(values, offsets, max_len, 0.0)
        results = {
            "pad": run_direction(
                pad_contenders(values, offsets, total, max_len),
                padded_bytes,
                packed_bytes + padded_bytes,
                repeats,
                device,
            ),
            "unpack": run_direction(
                unpack_contenders(padded, offsets, total),
                packed_bytes,
                2 * packed_bytes,
                repeats,
                device,
            ),
        }
        for direction, r in results.items():
            t = r["times"]
            rows.append(
                [
                    direction,
                    dtype_name,
                    batch,
                    dim,
                    round(padded_bytes / 2**20, 2),
                    *(_ms(t.get(n)) for n in CONTENDERS),
                    round(r["gbps"], 1),
                    round(r["pct_copy"]),
                    round(r["pct_alloc_copy"]),
                    "-" if r["vs_best_peer"] is None else f"{r['vs_best_peer']:.2f}x",
                ]
            )
            raw.append({"direction": direction, "dtype": dtype_name, "B": batch, "D": dim, **r})
        del values, offsets, padded
    headers = ["op", "dtype", "B", "D", "padded MiB", "hetload ms", "fallback ms", "nested ms"]
    headers += ["pyg ms", "copy ms", "alloc+copy ms", "hetload GB/s", "% copy", "% alloc+copy"]
    headers += ["vs best peer"]
    print(format_table(headers, rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": device, "machine": machine, "torch": torch.__version__}
        args.json.write_text(json.dumps({"meta": meta, "rows": raw}, indent=1))


def _ms(t: float | str | None) -> str:
    if t is None:
        return "-"
    return t if isinstance(t, str) else f"{t * 1e3:.3f}"


if __name__ == "__main__":
    main()
