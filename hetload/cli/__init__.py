"""The ``hetload`` command line (also ``python -m hetload``).

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (``func(args) -> int`` exit code). Errors the user can fix
(bad input, bad config) print one line and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    from hetload import __version__

    parser.add_argument("--version", action="version", version=f"hetload {__version__}")
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
    except BrokenPipeError:
        # whoever read our output stopped (`hetload stats DIR | head`): not an error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (
        ValueError,
        OSError,
        TypeError,
        KeyError,
        ImportError,
        RuntimeError,
        ArithmeticError,  # an OverflowError from a value no check foresaw: still one line
    ) as exc:
        if args.debug:
            raise
        print(f"hetload {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    """The error as one line. An exception re-raised from a DataLoader worker carries the
    worker's whole traceback in its message; its last line is the original error."""
    text = str(exc) if not isinstance(exc, KeyError) else str(exc.args[0] if exc.args else exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if "Original Traceback" in text:
        return f"in a DataLoader worker: {lines[-1]}"
    return " ".join(lines)
