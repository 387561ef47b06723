"""``hetload build-ext``: report (and, later, rebuild) the compiled kernels."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-ext", help="show which packed<->padded implementation serves each device"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hetload import ops

    print(f"extension: {ops.extension_status()}")
    for device in ("cpu", "cuda"):
        print(f"{device}: {ops.backend(device)}")
    return 0
