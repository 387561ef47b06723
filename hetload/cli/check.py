"""``hetload check SRC``: read every mesh file under SRC and list the ones that fail, and why.

SRC may also be a shard index (``index.json`` or the folder holding it): the index is loaded
with every check (its columnar sidecar's too) and each local shard's size compared.

A file passes when :func:`hetload.io.load` reads it and :func:`hetload.io.scan` (what
``MeshFolder.sizes`` and the sampler rely on) reports the vertex count the full read found.
Files of a suffix no reader handles are listed after the table (not read, not counted as bad).
Exit status: 0 every file is good, 1 some are bad, 2 SRC itself is unusable.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hetload.guards import MAX_WORKERS
from hetload.io.formats import MESH_EXTENSIONS, MeshFiles, find_mesh_files, normalize_extensions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate every mesh file, list the bad ones with reasons",
        description=(
            f"Read every mesh file ({' '.join(MESH_EXTENSIONS)}) under SRC (a folder, searched "
            "recursively, hidden entries left out, or one file) with hetload's readers and "
            "print a table of the files that fail, with the reason, then the files no reader "
            "handles. Exit status 1 when any file is bad."
        ),
    )
    parser.add_argument("src", type=Path, help="a folder of mesh files, or one file")
    parser.add_argument(
        "--ext",
        action="append",
        default=None,
        metavar="SUFFIX",
        help="check only these suffixes (repeatable or comma-separated: --ext off,stl)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="reader processes (default: up to 4)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def list_mesh_files(src: Path, extensions: list[str] | None = None) -> MeshFiles:
    """The mesh files under ``src`` (or ``src`` itself), sorted; hidden entries left out
    (:func:`hetload.io.formats.find_mesh_files`).

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: ``src`` is a folder without mesh files (of the selected suffixes).
    """
    if not src.exists():
        raise FileNotFoundError(f"no such file or folder: {src}")
    if not src.is_dir():  # a FIFO or device is listed too, and reported by check_file
        return MeshFiles([src])
    wanted = normalize_extensions(None if not extensions else ",".join(extensions))
    found = find_mesh_files(src, wanted)
    if not found.files:
        raise ValueError(f"{src} holds no mesh files ({' '.join(wanted)})")
    return found


def check_file(path: Path) -> str | None:
    """``None`` when ``path`` reads cleanly, else the reason (one line)."""
    from hetload import io

    try:
        sample = io.load(path)
        info = io.scan(path)
    except io.ReadError as exc:
        return _one_line(str(exc), path)
    except Exception as exc:  # a reader bug is a bad file for the user and a report for us
        return f"unexpected {type(exc).__name__} (please report): {_one_line(str(exc), path)}"
    rows = next((len(sample[k]) for k in ("verts", "points") if k in sample), None)
    if rows is not None and rows != info.n_verts:
        return f"scan counts {info.n_verts} vertices, the full read {rows}"
    return None


def _one_line(message: str, path: Path) -> str:
    # ReadError messages start with the path, which the table already shows
    text = " ".join(message.split())
    if text.startswith(str(path)):
        text = text[len(str(path)) :].lstrip(": ")
    return text


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hetload.cli._table import format_table

    if not 1 <= args.workers <= MAX_WORKERS:
        raise ValueError(f"--workers must be in [1, {MAX_WORKERS}], got {args.workers}")
    src = args.src
    if (src.is_file() and src.suffix == ".json") or (src / "index.json").is_file():
        return check_index(src)
    found = list_mesh_files(args.src, args.ext)
    files = found.files
    bar = tqdm(total=len(files), desc="check", unit="file", disable=args.quiet)
    if args.workers == 1 or len(files) == 1:
        reasons = []
        for path in files:
            reasons.append(check_file(path))
            bar.update()
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            reasons = []
            for reason in pool.map(check_file, files, chunksize=8):
                reasons.append(reason)
                bar.update()
    bar.close()
    root = args.src if args.src.is_dir() else args.src.parent
    bad = [(str(p.relative_to(root)), r) for p, r in zip(files, reasons) if r is not None]
    print(
        f"checked {len(files)} files under {args.src}: {len(files) - len(bad)} good, {len(bad)} bad"
    )
    if bad:
        print(format_table(["file", "reason"], bad))
    for group, why in (
        (found.unreadable, "no reader handles their suffix"),
        (found.not_selected, "not selected by --ext"),
    ):
        if group:
            print(f"{len(group)} files not read ({why}):")
            print("\n".join(f"  {p.relative_to(root)}" for p in group))
    if found.loops:
        print(f"{len(found.loops)} linked folders not followed (each links to a folder above it):")
        print("\n".join(f"  {p.relative_to(root)}" for p in found.loops))
    if found.unlisted:
        # their files were not checked, and a dataset made from this folder would lack them
        print(f"{len(found.unlisted)} folders could not be listed:")
        print("\n".join(f"  {p.relative_to(root)}: {why}" for p, why in found.unlisted))
    return 1 if bad or found.unlisted else 0


def check_index(path: Path) -> int:
    """Load the shard index at ``path`` (every column check; the sidecar's when it has one) and
    compare each local shard's size with it. 0 when all is consistent, else 1 with the reason."""
    from hetload.shards.columns import ColumnShards, duplicate_key
    from hetload.shards.format import ShardError
    from hetload.shards.index import ShardIndex, check_shards

    try:
        index = ShardIndex.load(path)
        check_shards(index)
    except (ValueError, ShardError) as exc:
        print(f"bad index {path}: {exc}")
        return 1
    sidecar = isinstance(index.shards, ColumnShards)
    twice = duplicate_key(index.columns) if sidecar else None  # (JSON: checked on load)
    if twice is not None:
        print(f"bad index {path}: sample key {twice!r} is listed twice in its sidecar")
        return 1
    expected = index.columns.__dict__.get("_digest") if sidecar else None
    if expected is not None and index.columns.digest() != expected:
        print(
            f"bad index {path}: its sidecar's bytes do not match their digest {expected} "
            "(changed after it was written): rewrite the index"
        )
        return 1
    form = "columnar sidecar" if sidecar else "JSON lists"
    print(
        f"index {path}: {index.nsamples} samples in {len(index.shards)} shards ({form}): "
        "consistent, every local shard present with its recorded size"
    )
    return 0
