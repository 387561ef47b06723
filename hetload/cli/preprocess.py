"""``hetload preprocess SRC DST``: mesh files -> WebDataset shards + size index."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="mesh folder -> WebDataset shards + size index (parallel, resumable)",
        description=(
            "Read every mesh file (OBJ, PLY, OFF, STL, GLB, ...; hidden entries left out) under "
            "SRC (or listed in the text file SRC), optionally transform "
            "it, and write DST/shard-000000.tar, ... (one .npy per field, a .json of metadata "
            "per sample), DST/index.json (a wids shard list with per-sample offsets and sizes) "
            "and DST/errors.jsonl (skipped files and why). The output depends only on the "
            "input and the settings, never on --workers. An interrupted run (kill -9 included) "
            "finishes when started again with the same arguments. Every sample keeps its "
            "source path (read back as `key`, without the extension) and, with --labels or "
            "--manifest, its `label` and other values."
        ),
    )
    parser.add_argument(
        "src", type=Path, help="input folder (or a layout's root), or a text file of paths"
    )
    parser.add_argument("dst", type=Path, help="output folder")
    parser.add_argument("--workers", type=int, default=1, help="reader processes (default 1)")
    limit = parser.add_argument_group("shard size (a shard closes at whichever comes first)")
    limit.add_argument(
        "--shard-size", default="256MB", help="bytes per shard: 256MB, 1GiB, ... (default 256MB)"
    )
    limit.add_argument("--max-count", type=int, default=None, help="samples per shard")
    parser.add_argument(
        "--transform",
        default=None,
        metavar="YAML",
        help="transforms applied after reading: a YAML list inline "
        '("[Center, {SamplePoints: {n: 1024}}]") or the path of a YAML file holding one',
    )
    targets = parser.add_argument_group("per-sample values stored with the arrays")
    targets.add_argument(
        "--labels",
        choices=("folder",),
        default=None,
        help="store `label`: the index of each file's top folder under SRC among every folder "
        "there, sorted, empty ones included (the numbering MeshFolder(labels='folder') uses)",
    )
    targets.add_argument(
        "--classes",
        default=None,
        metavar="A,B,...",
        help="the class names, in label order (default: the sorted folder names / label names)",
    )
    targets.add_argument(
        "--manifest",
        type=Path,
        default=None,
        metavar="FILE.csv|FILE.jsonl",
        help="per-sample values by file: a `path` column (relative to SRC, extension "
        "optional), `label` (an int or a class name) and any other numbers or strings",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of random transforms (per file; default 0)"
    )
    parser.add_argument(
        "--cast",
        action="append",
        default=[],
        metavar="FIELD=DTYPE",
        help="store FIELD as DTYPE, e.g. faces=int32 (repeatable; integer casts range-checked)",
    )
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip", "warn"),
        default="raise",
        help="an unreadable file stops the run (raise, default) or is skipped and logged",
    )
    parser.add_argument(
        "--part",
        default="0/1",
        metavar="I/N",
        help="process the I-th of N slices (0-based) into DST/part-000I-of-000N/; "
        "join them with `hetload merge-index DST`",
    )
    parser.add_argument(
        "--ext",
        action="append",
        default=None,
        metavar="SUFFIX",
        help="read only these suffixes from SRC (repeatable or comma-separated: --ext off,stl)",
    )
    layouts = parser.add_argument_group(
        "dataset layouts (SRC is the download as it is; samples, keys, class labels and "
        "per-point labels are those hetload.data's class of the layout reads)"
    )
    layouts.add_argument(
        "--layout",
        choices=("modelnet", "shapenet", "scannet", "semantic-kitti"),
        default=None,
        help="modelnet: <class>/<split>/*.off with `label`; shapenet: <synset>/<model>/models/"
        "model_normalized.obj with `label`; scannet: <scene>/<scene>_vh_clean_2.ply with the "
        "per-vertex `labels` of its .labels.ply (and `instance` from the segment files); "
        "semantic-kitti: sequences/<seq>/velodyne/*.bin with per-point `semantic` and "
        "`instance` from labels/*.label",
    )
    layouts.add_argument("--split", default=None, help="modelnet: train (default) or test")
    layouts.add_argument(
        "--synsets", default=None, metavar="A,B", help="shapenet: synset ids or names to read"
    )
    layouts.add_argument(
        "--scenes",
        default=None,
        metavar="FILE|A,B",
        help="scannet: a split file (one scene per line) or scene names",
    )
    layouts.add_argument(
        "--sequences",
        default=None,
        metavar="SPLIT|0,8",
        help="semantic-kitti: train | valid | test, or sequence numbers",
    )
    layouts.add_argument(
        "--label-map",
        type=Path,
        default=None,
        metavar="YAML",
        help="scannet / semantic-kitti: raw label id -> id (a YAML mapping, or "
        "semantic-kitti.yaml and its learning_map); an id it lacks is an error of that sample",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hetload.shards.preprocess import preprocess

    casts = {}
    for item in args.cast:
        name, sep, dtype = item.partition("=")
        if not sep or not name or not dtype:
            raise ValueError(f"--cast wants FIELD=DTYPE, got {item!r}")
        casts[name] = dtype
    result = preprocess(
        args.src,
        args.dst,
        workers=args.workers,
        shard_size=args.shard_size,
        max_count=args.max_count,
        transform=args.transform,
        casts=casts,
        on_error=args.on_error,
        part=args.part,
        seed=args.seed,
        progress=not args.quiet,
        labels=args.labels,
        classes=None if args.classes is None else [c.strip() for c in args.classes.split(",")],
        manifest=args.manifest,
        extensions=None if not args.ext else ",".join(args.ext),
        layout=args.layout,
        layout_options=_layout_options(args),
    )
    print(result)
    return 0


#: the flag of each layout option, and the layouts that take it
_LAYOUT_FLAGS = {
    "split": ("--split", ("modelnet",)),
    "synsets": ("--synsets", ("shapenet",)),
    "scenes": ("--scenes", ("scannet",)),
    "sequences": ("--sequences", ("semantic-kitti",)),
    "label_map": ("--label-map", ("scannet", "semantic-kitti")),
}


def _layout_options(args: argparse.Namespace) -> dict | None:
    """The layout class's options from the flags; a flag of another layout is an error."""
    options = {}
    for name, (flag, layouts) in _LAYOUT_FLAGS.items():
        value = getattr(args, name)
        if value is None:
            continue
        if args.layout not in layouts:
            raise ValueError(f"{flag} applies to --layout {' / '.join(layouts)}")
        if name != "label_map":
            listed = [v.strip() for v in value.split(",") if v.strip()]
            if name == "synsets":
                value = listed
            elif name == "sequences":
                # numbers as numbers: 8 is sequence folder 08
                numbers = [int(v) if v.isdigit() else v for v in listed]
                value = value if value in ("train", "valid", "test") else numbers
            elif name == "scenes":
                value = value if Path(value).is_file() else listed
        if name == "label_map" and args.layout == "semantic-kitti":
            name = "learning_map"  # SemanticKITTI's name of it
        options[name] = value
    return options or None
