"""``hetload bench CONFIG [KEY=VALUE ...]``: run a configured loader and report its throughput.

Rates are measured from the first batch on (worker start-up is reported apart), over at most
``--batches`` batches of one epoch. The time split says where a batch's time goes: ``read`` and
``collate`` are seconds spent in the processes that do them (workers run in parallel with the
main loop, so these can add up to more than the wall time); ``transfer`` and ``pad`` are measured
on the GPU with the device synchronized around each step, and ``waiting`` is the main loop's time
blocked on the next batch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from hetload.cli._table import format_table, human_bytes


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="loader throughput of a YAML config: samples/s, points/s, padding, time split",
        description=(
            "Build the loader of CONFIG (with KEY=VALUE overrides, e.g. sampler.max_tokens=200000) "
            "and run it for --batches batches: samples/s, points/s, batches/s, padding "
            "efficiency, and the time per batch spent reading, collating, transferring and "
            "padding."
        ),
    )
    parser.add_argument("config", type=Path, help="a loader config (YAML)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, values as YAML"
    )
    parser.add_argument(
        "--batches", type=int, default=200, help="batches to run, at most one epoch (default 200)"
    )
    parser.add_argument(
        "--allow-custom-code",
        action="store_true",
        help="let the config name 'module:function' code to import and run",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _size_field(batch: Any) -> str | None:
    from hetload.ragged import Ragged

    for name in ("verts", "points"):
        if isinstance(batch.get(name), Ragged):
            return name
    return next(
        (n for n, v in batch.items() if isinstance(v, Ragged) and v.index_base is None), None
    )


def _packed_bytes(batch: Any) -> int:
    import torch

    from hetload.ragged import Ragged

    total = 0
    for value in batch.values():
        if isinstance(value, Ragged):
            total += value.values.nbytes + value.offsets.nbytes
        elif isinstance(value, torch.Tensor):
            total += value.nbytes
    return total


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hetload.config import build_loader

    if args.batches < 1:
        raise ValueError(f"--batches must be >= 1, got {args.batches}")
    loader = build_loader(
        args.config, args.overrides, allow_custom_code=args.allow_custom_code, timed=True
    )
    cfg = loader.config
    try:
        planned = min(args.batches, len(loader))
    except TypeError:
        planned = args.batches
    sampler = cfg.sampler
    if sampler["type"] == "fixed":
        budget = f"fixed batch_size={sampler['batch_size']}"
    elif isinstance(sampler["max_tokens"], dict):
        limits = ", ".join(f"{k} {v:,}" for k, v in sampler["max_tokens"].items())
        budget = f"bucket max_tokens=({limits})"
    else:
        budget = f"bucket max_tokens={sampler['max_tokens']:,}"
    print(
        f"bench {args.config}: {cfg.dataset['type']}, {budget}, "
        f"{cfg.loader['num_workers']} workers, device {loader.device}"
    )

    samples = points = padded = nbytes = batches = 0
    field = None
    started = time.perf_counter()
    first_at = None
    first_samples = first_points = 0
    bar = tqdm(total=planned, desc="bench", unit="batch", disable=args.quiet)
    for batch in loader:
        field = field or _size_field(batch)
        rows = int(batch[field].lengths.sum()) if field is not None and len(batch) else 0
        if first_at is None:
            first_at = time.perf_counter()
            first_samples, first_points = len(batch), rows
        batches += 1
        samples += len(batch)
        points += rows
        if rows:
            padded += len(batch) * int(batch[field].max_len)
        nbytes += _packed_bytes(batch)
        bar.update()
        if batches >= planned:
            break
    bar.close()
    ended = time.perf_counter()
    if batches == 0:
        raise RuntimeError(f"{args.config}: the loader yielded no batches")
    times = loader.times
    steady = ended - first_at if batches > 1 else ended - started
    counted = batches - 1 if batches > 1 else 1
    rate_samples = (samples - first_samples) if batches > 1 else samples
    rate_points = (points - first_points) if batches > 1 else points
    print(
        f"{batches} batches, {samples:,} samples; first batch after {first_at - started:.2f} s "
        f"(start-up), then {steady:.2f} s"
    )
    rows = [
        ["samples/s", rate_samples / steady],
        ["points/s", rate_points / steady],
        ["batches/s", counted / steady],
        ["MB/s packed", nbytes / batches * counted / steady / 1e6],
        ["padding efficiency", points / padded if padded else 1.0],
        ["mean batch", f"{samples / batches:.1f} samples, {human_bytes(nbytes / batches)}"],
    ]
    print(format_table(["throughput", "value"], [[k, v] for k, v in rows]))
    if field is not None:
        print(f"(points: rows of {field!r}; padding efficiency: real / (B x longest) {field})")
    gpu = loader.device.type == "cuda"
    where = (
        f"{cfg.loader['num_workers']} workers"
        if cfg.loader["num_workers"]
        else f"{cfg.loader['threads']} threads"
        if cfg.loader["threads"]
        else "main"
    )
    # after the first batch, so worker start-up (reported above) does not count as waiting
    device_steps = (times.transfer + times.pad) * counted / batches
    waiting = max(0.0, steady - device_steps)
    split = [
        ["read + transforms", times.read / batches * 1e3, where],
        ["collate", times.collate / batches * 1e3, where],
        ["transfer", times.transfer / batches * 1e3 if gpu else "n/a (no GPU)", "main"],
        ["pad", times.pad / batches * 1e3 if gpu else "n/a (no GPU)", "main"],
        ["waiting for data", waiting / counted * 1e3, "main"],
    ]
    print(format_table(["stage", "ms/batch", "where"], split))
    return 0
