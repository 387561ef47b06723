"""``hetload merge-index DST``: join the indexes of ``preprocess --part i/n`` runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge-index",
        help="join the part indexes of `preprocess --part i/n` runs into one index",
        description=(
            "Find DST/part-*-of-*/index.json (or take the part indexes given with --parts), "
            "check that they come from the same input and settings and cover every part once, "
            "and write DST/index.json (shard URLs relative to DST) and DST/errors.jsonl."
        ),
    )
    parser.add_argument("dst", type=Path, help="the output folder the parts were written under")
    parser.add_argument(
        "--parts",
        nargs="+",
        type=Path,
        default=None,
        help="part index files (or their folders), when they are not DST/part-*-of-*/",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also check every shard's size and sha256 against its part index",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hetload.shards.preprocess import merge_parts

    index = merge_parts(args.dst, args.parts, verify=args.verify)
    print(
        f"merged {len(index.info['parts'])} parts: {index.nsamples} samples in "
        f"{len(index.shards)} shards ({index.info.get('skipped', 0)} files skipped) "
        f"-> {args.dst / 'index.json'}"
    )
    return 0
