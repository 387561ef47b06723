"""``hetload stats PATH``: sizes of a dataset and what batching it costs.

PATH is a folder of OBJ/PLY files (sizes from :class:`~hetload.data.MeshFolder`'s scan of
headers and line prefixes, cached beside the data) or a shard index (``index.json`` or its
folder; sizes from the index).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_MAX_TOKENS = 262_144


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="size percentiles and padding / bus bytes of fixed-size vs bucketed batches",
        description=(
            "Print per-field size percentiles of a dataset, then padding efficiency and bytes "
            "moved host->device per epoch for random fixed-size batches and for hetload's "
            "bucketed batches at a budget (--max-tokens, or the budget of --config). "
            "PATH: a folder of OBJ/PLY files or a shard index (index.json or its folder)."
        ),
    )
    parser.add_argument("path", type=Path, help="OBJ/PLY folder, or shard index / its folder")
    parser.add_argument(
        "--config", type=Path, default=None, help="take the budget / batch size / seed from it"
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help=f"bucketing budget in points (default: --config's, else {DEFAULT_MAX_TOKENS:,})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="fixed batch size (default: the one with the budget's mean real points per batch)",
    )
    parser.add_argument("--field", default=None, help="the field the budget counts (default verts)")
    parser.add_argument("--seed", type=int, default=None, help="seed of both strategies")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG: histogram + bars")
    parser.add_argument("--workers", type=int, default=8, help="scan threads (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def folder_sizes(root: Path, workers: int, quiet: bool) -> tuple[dict[str, np.ndarray], list[str]]:
    """``({"verts": int64 [N], "faces": int64 [N]}, unreadable files)`` from
    :class:`~hetload.data.MeshFolder`'s size scan (cached beside the data)."""
    from hetload.data import MeshFolder

    folder = MeshFolder(root, on_error="skip", scan_workers=workers, progress=not quiet)
    if len(folder) == 0:
        raise ValueError(f"{root} holds no mesh files")
    bad = {skipped.source for skipped in folder.report}
    keep = np.array([str(path) not in bad for path in folder.files], dtype=bool)
    sizes = {name: np.asarray(column)[keep] for name, column in folder.field_sizes.items()}
    return sizes, sorted(bad)


def index_sizes(path: Path) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per-field rows from a shard index, and bytes per row estimated from its member sizes."""
    from hetload.shards.index import ShardIndex

    index = ShardIndex.load(path)
    sizes = {name: index.rows(name) for name in index.field_names()}
    row_bytes: dict[str, int] = {}
    for name, rows in sizes.items():
        member = f"{name}.npy"
        stored = index.columns.size.get(member)
        total_rows = int(rows[rows > 0].sum())
        if stored is not None and total_rows:
            column = np.asarray(stored, dtype=np.int64)
            present = column[column >= 0]
            # each member is a .npy: a 128-byte header, then the rows
            row_bytes[name] = max(1, round(float((present - 128).sum()) / total_rows))
    return sizes, row_bytes


def _is_index(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".json") or (path / "index.json").is_file()


def run(args: argparse.Namespace) -> int:
    from hetload import stats
    from hetload.cli._table import format_table, human_bytes

    max_tokens, batch_size, seed = args.max_tokens, args.batch_size, args.seed
    if args.config is not None:
        from hetload.config import load_config

        cfg = load_config(args.config)
        sampler = cfg.sampler
        if max_tokens is None and sampler["type"] == "bucket":
            budget = sampler["max_tokens"]
            # one budget per field: compare at the size field's
            max_tokens = budget if isinstance(budget, int) else budget.get(args.field or "verts")
        if batch_size is None and sampler["type"] == "fixed":
            batch_size = sampler["batch_size"]
        seed = sampler["seed"] if seed is None else seed
    max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    seed = 0 if seed is None else seed
    for name, value in (("--max-tokens", max_tokens), ("--batch-size", batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")

    if not args.path.exists():
        raise FileNotFoundError(f"no such file or folder: {args.path}")
    if _is_index(args.path):
        sizes, row_bytes = index_sizes(args.path)
        source, bad = "shard index", []
    else:
        sizes, bad = folder_sizes(args.path, args.workers, args.quiet)
        row_bytes, source = dict(stats.DEFAULT_ROW_BYTES), "mesh headers"
    field = args.field or next((f for f in ("verts", "points") if f in sizes), None)
    if field is None or field not in sizes:
        raise ValueError(
            f"no size field {args.field or 'verts'!r} in {args.path} ({sorted(sizes)})"
        )
    n = len(sizes[field])
    if n == 0:
        raise ValueError(f"{args.path}: no readable samples")

    print(f"{args.path}: {n:,} samples (sizes from {source})")
    if bad:
        print(f"{len(bad)} files could not be scanned (see `hetload check {args.path}`)")
    headers = [
        "field",
        *(f"p{p}" if p not in (0, 100) else ("min", "max")[p == 100] for p in stats.PERCENTILES),
        "mean",
        "total",
    ]
    summary = stats.size_summary(sizes)
    print(format_table(headers, [[s.field, *s.percentiles, s.mean, s.total] for s in summary]))

    rows = stats.compare(
        sizes,
        max_tokens=max_tokens,
        batch_size=batch_size,
        size_field=field,
        row_bytes=row_bytes,
        seed=seed,
    )
    print()
    widths = ", ".join(f"{k} {v} B/row" for k, v in row_bytes.items() if k in sizes)
    print(
        f"one epoch, budget max_tokens={max_tokens:,} padded {field}; bytes host->device with "
        f"every field padded on the host vs packed ({widths})"
    )
    print(
        format_table(
            [
                "strategy",
                "batches",
                "samples/batch",
                "padding eff.",
                "worst B*max",
                "padded on host",
                "packed",
            ],
            [
                [
                    r.name,
                    r.batches,
                    r.mean_batch_size,
                    r.padding_efficiency,
                    f"{r.worst_padded:,} ({r.worst_padded / max_tokens:.2f}x budget)",
                    human_bytes(r.bytes_padded),
                    human_bytes(r.bytes_packed),
                ]
                for r in rows
            ],
        )
    )
    fixed, bucketed = rows
    print(
        f"bucketing: padding efficiency {fixed.padding_efficiency:.3f} -> "
        f"{bucketed.padding_efficiency:.3f}; bytes over the bus per epoch "
        f"{human_bytes(fixed.bytes_padded)} (fixed, padded on host) -> "
        f"{human_bytes(bucketed.bytes_packed)} (bucketed, packed)"
    )
    if args.plot is not None:
        out = stats.plot(
            args.plot,
            sizes[field],
            rows,
            size_field=field,
            title=f"{args.path.name}: {n:,} samples, budget {max_tokens:,} {field}",
        )
        print(f"plot: {out}")
    return 0
