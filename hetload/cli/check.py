"""``hetload check SRC``: read every OBJ/PLY file under SRC and list the ones that fail, and why.

A file passes when :func:`hetload.io.load` reads it and :func:`hetload.io.scan` (what
``MeshFolder.sizes`` and the sampler rely on) reports the vertex count the full read found.
Exit status: 0 every file is good, 1 some are bad, 2 SRC itself is unusable.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hetload.guards import MAX_WORKERS

MESH_SUFFIXES = (".obj", ".ply")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate every OBJ/PLY file, list the bad ones with reasons",
        description=(
            "Read every .obj/.ply file under SRC (a folder, searched recursively, or one file) "
            "with hetload's readers and print a table of the files that fail, with the reason. "
            "Exit status 1 when any file is bad."
        ),
    )
    parser.add_argument("src", type=Path, help="a folder of OBJ/PLY files, or one file")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="reader processes (default: up to 4)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def list_mesh_files(src: Path) -> list[Path]:
    """Every OBJ/PLY file under ``src`` (or ``src`` itself), sorted; hidden files skipped.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: ``src`` is a folder without OBJ/PLY files.
    """
    if not src.exists():
        raise FileNotFoundError(f"no such file or folder: {src}")
    if not src.is_dir():
        return [src]  # a FIFO or device is listed too, and reported by check_file
    files = sorted(
        p
        for p in src.rglob("*")
        if p.suffix.lower() in MESH_SUFFIXES
        and not p.is_dir()  # FIFOs and devices named like meshes are bad files, not ignored
        and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )
    if not files:
        raise ValueError(f"{src} holds no .obj or .ply files")
    return files


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
    files = list_mesh_files(args.src)
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
        return 1
    return 0
