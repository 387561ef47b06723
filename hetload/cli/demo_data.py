"""``hetload demo-data DST``: write the embedded demo dataset (see :mod:`hetload.demo`)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo-data",
        help="write a generated heterogeneous OBJ/PLY dataset (the embedded default)",
        description=(
            "Write N meshes and point clouds (300..200k vertices, log-normal) as OBJ, ASCII PLY "
            "and binary PLY (little/big endian): meshes under DST/meshes/<class>/ (sphere, "
            "torus, blob, box), labelled point clouds under DST/scans/, and DST/manifest.tsv. "
            "Deterministic by --seed. The default N=500 is ~130 MB and takes seconds."
        ),
    )
    parser.add_argument(
        "dst", type=Path, help="output folder (created; a previous demo set is replaced)"
    )
    parser.add_argument("--n", type=int, default=500, help="number of files (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hetload import demo
    from hetload.cli._table import format_table, human_bytes

    def progress(indices, total):
        return tqdm(indices, total=total, desc="demo-data", unit="file", disable=args.quiet)

    written = demo.generate(args.dst, n=args.n, seed=args.seed, progress=progress)
    files = [f for f in written if f.format != "off"]
    modelnet = len(written) - len(files)
    nbytes = sum((args.dst / f.file).stat().st_size for f in files)
    by_shape = Counter(f.shape for f in files)
    by_format = Counter(f.format for f in files)
    verts = sorted(f.n_vertices for f in files)
    print(
        f"wrote {len(files)} files ({human_bytes(nbytes)}) to {args.dst}: "
        f"{verts[0]:,}..{verts[-1]:,} vertices, median {verts[len(verts) // 2]:,}"
    )
    rows = [[shape, by_shape[shape]] for shape in demo.SHAPES]
    rows += [[fmt, by_format[fmt]] for fmt in demo.FORMATS]
    print(format_table(["shape / format", "files"], rows))
    print(
        f"and {modelnet} small OFF meshes in {args.dst / 'modelnet'} (ModelNet layout, "
        "class/split/*.off; box/test is an empty folder)"
    )
    return 0
