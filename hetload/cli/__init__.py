"""The ``hetload`` command line (also ``python -m hetload``).

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (``func(args) -> int`` exit code). Errors the user can fix
(bad input, bad config) print one line and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: subcommand modules, in the order ``--help`` lists them
_COMMAND_MODULES: tuple[str, ...] = (
    "build_ext",
    "demo_data",
    "check",
    "stats",
    "bench",
    "preprocess",
    "merge_index",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hetload",
        description="Batches of heterogeneous 3D data (meshes, point clouds) for PyTorch.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMAND_MODULES:
        importlib.import_module(f"hetload.cli.{module}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("hetload: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, TypeError, KeyError, ImportError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"hetload {args.command}: error: {exc}", file=sys.stderr)
        return 2
