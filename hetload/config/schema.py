"""Every section and key a loader config may hold: type, default, meaning.

This table is the single source of truth: the validator checks configs against it, and
:func:`reference` renders it as the README's config reference.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from hetload.batched.config import BatchedSteps
from hetload.config.types import (
    AnyMap,
    Bool,
    Choice,
    CodeRef,
    Either,
    Float,
    FsPath,
    Int,
    LabelTable,
    ListOf,
    MapOf,
    Str,
    Type,
    Urls,
)
from hetload.guards import MAX_WORKERS

__all__ = [
    "DATASET_TYPES",
    "FOLDER_TYPES",
    "REQUIRED",
    "SCHEMA",
    "SECTION_DOCS",
    "Key",
    "api_default",
    "reference",
]

REQUIRED = object()
# bounds past which a value is a typo, not a setting: checked here, before a DataLoader forks
# a million workers or numpy allocates a plan for 9e18 ranks
MAX_PREFETCH = 1024
MAX_RANKS = 1 << 20
MAX_TIMEOUT_S = 365 * 24 * 3600
#: the folder datasets (``dataset.root``): MeshFolder and the on-disk layouts of hetload.data
FOLDER_TYPES = ("MeshFolder", "ModelNet", "ShapeNetCore", "ScanNetScenes", "SemanticKITTI")
DATASET_TYPES = (*FOLDER_TYPES, "ShardDataset", "ShardStream")
ON_ERROR = Choice(("raise", "skip", "warn"))
_FIELD_SPEC = Str()  # "ragged" | "fixed" | "meta" | "index:<field>", checked by Field.parse


def api_default(cls: str, name: str) -> Any:
    """The default of argument ``name`` of hetload's ``cls`` (a dataset or sampler class): a key
    that mirrors a constructor argument takes its default from the constructor itself, so the
    two cannot drift apart."""
    from hetload import data, samplers

    owner = getattr(data, cls, None) or getattr(samplers, cls)
    return inspect.signature(owner).parameters[name].default


@dataclass(frozen=True)
class Key:
    """One key: its type, its default (``REQUIRED`` when it has none) and what it does.

    ``only``: the dataset types (or sampler types) the key applies to; setting it for another type
    is an error, since it would be silently ignored. ``required_for``: types that need it.
    """

    type: Type
    default: Any
    doc: str
    only: tuple[str, ...] = ()
    required_for: tuple[str, ...] = ()


SECTION_DOCS = {
    "dataset": "where samples come from",
    "transforms": "per-sample transforms, applied in order after reading",
    "sampler": "how samples are grouped into batches",
    "collate": "how a batch is assembled from samples",
    "loader": "torch DataLoader options",
    "distributed": "which part of the data this process reads",
    "device": "where batches go and what is done to them there",
}

SCHEMA: dict[str, dict[str, Key]] = {
    "dataset": {
        "type": Key(Choice(DATASET_TYPES), REQUIRED, "the dataset class"),
        "root": Key(
            FsPath(kind="dir"),
            None,
            "folder of OBJ/PLY files (MeshFolder), or the layout's root: ModelNet40/, "
            "ShapeNetCore.v2/, ScanNet's scans/, SemanticKITTI's dataset/ (holding sequences/)",
            only=FOLDER_TYPES,
            required_for=FOLDER_TYPES,
        ),
        "split": Key(
            Choice(("train", "test")),
            api_default("ModelNet", "split"),
            "the ModelNet split read (root/<class>/<split>/*.off)",
            only=("ModelNet",),
        ),
        "synsets": Key(
            Either((ListOf(Str()),), nullable=True),
            None,
            "the synsets read, by id (02691156) or taxonomy.json name (airplane); null: all",
            only=("ShapeNetCore",),
        ),
        "model_file": Key(
            Str(),
            api_default("ShapeNetCore", "model_file"),
            "each model's file under its model folder (model.obj for ShapeNetCore v1)",
            only=("ShapeNetCore",),
        ),
        "scenes": Key(
            Either((ListOf(Str()), FsPath(kind="file")), nullable=True),
            None,
            "the scenes read: a list of names, or a split file of one name per line "
            "(scannetv2_train.txt); null: every scene under root",
            only=("ScanNetScenes",),
        ),
        "sequences": Key(
            Either(
                (Choice(("train", "valid", "test")), ListOf(Either((Int(min=0), Str())))),
                nullable=True,
            ),
            None,
            "train | valid | test (the benchmark's splits), or a list of sequence numbers "
            "(0, 8 or '08'); null: every sequence with a velodyne/ folder",
            only=("SemanticKITTI",),
        ),
        "label_map": Key(
            Either((LabelTable(),), nullable=True),
            None,
            "raw label id -> training id, applied to the per-point labels (an id the map lacks "
            "is an error of that sample): {0: 0, 10: 1, 252: 1} or a YAML file "
            "(semantic-kitti.yaml: its learning_map)",
            only=("ScanNetScenes", "SemanticKITTI"),
        ),
        "path": Key(
            FsPath(),
            None,
            "a shard index (index.json) or the folder holding it",
            only=("ShardDataset",),
            required_for=("ShardDataset",),
        ),
        "urls": Key(
            Urls(),
            None,
            "the shard index (index.json, its folder or URL), or shard URLs / paths in index "
            "order (a list, or one brace pattern shard-{000000..000009}.tar) with `index`",
            only=("ShardStream",),
            required_for=("ShardStream",),
        ),
        "index": Key(
            Urls(single=True),
            None,
            "the shard index, when `urls` lists the shards themselves",
            only=("ShardStream",),
        ),
        "labels": Key(
            Either((Choice(("folder",)), Bool()), nullable=True),
            None,
            "MeshFolder: folder adds `label`, the index of the file's top folder among every "
            "folder under root, sorted, empty ones included; SemanticKITTI: true makes a missing "
            ".label file an error, false never reads labels, null reads those that exist",
            only=("MeshFolder", "SemanticKITTI"),
        ),
        "size_field": Key(
            Either((Str(),), nullable=True),
            None,
            "the field whose rows are a sample's size for the sampler (null: verts)",
            only=("ShardDataset", "ShardStream"),
        ),
        "fields": Key(
            Either((ListOf(Str()),), nullable=True),
            None,
            "fields each sample keeps (null: every field the source has)",
        ),
        "reads": Key(
            Choice(("batch", "sequential")),
            "batch",
            "how local shards are read: batch = each batch by one positioned "
            "read per sample into the batch buffer (one copy), sequential = each shard front to "
            "back in large reads (disks where random reads are slow)",
            only=("ShardStream",),
        ),
        "on_error": Key(ON_ERROR, "raise", "what a bad file or sample does: stop, drop, drop+warn"),
        "options": Key(
            AnyMap(),
            {},
            "further keyword arguments of the dataset class, checked against its signature "
            "(which ones, per type: the table below)",
        ),
    },
    "sampler": {
        "type": Key(
            Choice(("bucket", "fixed")),
            "bucket",
            "bucket: batches under a size budget; fixed: batch_size samples per batch",
        ),
        "max_tokens": Key(
            Either((Int(min=1), MapOf(Int(min=1)))),
            262_144,
            "budget per batch in points of the size field (padded points with cost=padded), "
            "or one budget per field, all held at once: {verts: 200000, faces: 400000}",
            only=("bucket",),
        ),
        "cost": Key(
            Either((Choice(("padded", "sum")), CodeRef())),
            "padded",
            "batch cost: padded = B x longest, sum = total points, or 'module:function'",
            only=("bucket",),
        ),
        "max_batch_size": Key(
            Either((Int(min=1),), nullable=True),
            None,
            "at most this many samples per batch",
            only=("bucket",),
        ),
        "oversize": Key(
            Choice(("error", "skip", "alone")),
            "error",
            "a sample larger than max_tokens: stop, drop it, or give it a batch of its own",
            only=("bucket",),
        ),
        "buffer_size": Key(
            Either((Int(min=2),), nullable=True),  # (the bucketer sorts at least 2)
            None,
            "look-ahead of the streaming bucketer, in samples (ShardStream; null: 32768 where it "
            "reads local shards batch by batch, which holds no sample, else 2048)",
            only=("bucket",),
        ),
        "batch_size": Key(Int(min=1), 32, "samples per batch", only=("fixed",)),
        "shuffle": Key(Bool(), True, "fresh random batches every epoch"),
        "seed": Key(Int(min=0), 0, "seed of all sampling randomness (with the epoch)"),
        "windows": Key(
            Int(min=1),
            api_default("BucketBatchSampler", "windows"),
            "windows an epoch is dealt into: more = fresher batches, fewer = less padding",
            only=("bucket",),
        ),
        "spread": Key(
            Either((Float(min=0, max=1e6),), nullable=True),
            api_default("BucketBatchSampler", "spread"),
            "per-epoch noise on the size order, as a fraction of a window: each sample may be "
            "dealt into the neighbouring windows, so batches differ every epoch at almost no "
            "padding cost (null: fixed windows)",
            only=("bucket",),
        ),
        "drop_last": Key(
            Bool(),
            False,
            "bucket: make the batch count a multiple of the world size by dropping the smallest "
            "batches (false: by splitting the largest); fixed: drop a last incomplete batch",
        ),
    },
    "collate": {
        "schema": Key(
            MapOf(_FIELD_SPEC),
            {},
            "field -> ragged | fixed | meta | index:<field>, added to the default schema",
        ),
        "unknown": Key(
            Choice(("infer", "error")),
            "infer",
            "fields not in the schema: infer their kind, or refuse them",
        ),
    },
    "loader": {
        "num_workers": Key(Int(min=0, max=MAX_WORKERS), 0, "DataLoader worker processes"),
        "threads": Key(
            Int(min=0, max=MAX_WORKERS),
            0,
            "read batches ahead in this many threads of the training process "
            "(hl.data.ThreadedLoader) instead of worker processes: no handoff between "
            "processes; a local ShardDataset's compiled batch read runs without the GIL "
            "(0: off; not with num_workers or ShardStream)",
        ),
        "pin_memory": Key(
            Either((Bool(), Choice(("auto",)))),
            "auto",
            "page-locked batches for fast copies (auto: when the device is CUDA)",
        ),
        "prefetch_factor": Key(
            Either((Int(min=1, max=MAX_PREFETCH),), nullable=True),
            None,
            "batches prefetched per worker, or per thread with loader.threads (null: 2)",
        ),
        "persistent_workers": Key(Bool(), False, "keep workers alive between epochs"),
        "in_order": Key(
            Bool(),
            True,
            "false: a worker's batch is served as soon as it is ready, not in sampler order "
            "(faster with uneven samples; batches then depend on timing, so the loader refuses "
            "state_dict: no exact resume)",
        ),
        "multiprocessing_context": Key(
            Either((Choice(("fork", "spawn", "forkserver")),), nullable=True),
            None,
            "how workers start (null: the platform's default)",
        ),
        "timeout": Key(
            Float(min=0, max=MAX_TIMEOUT_S),
            0.0,
            "seconds to wait for a batch from a worker (0: forever)",
        ),
    },
    "distributed": {
        "world_size": Key(
            Either((Int(min=1, max=MAX_RANKS), Choice(("auto",)))),
            "auto",
            "number of ranks (auto: $WORLD_SIZE, else 1)",
        ),
        "rank": Key(
            Either((Int(min=0, max=MAX_RANKS - 1), Choice(("auto",)))),
            "auto",
            "this process's rank (auto: $RANK, else 0)",
        ),
        "even": Key(
            Choice(("exact", "pad", "truncate")),
            "exact",
            "equal steps on every rank (ShardStream only): exact = every sample once per epoch "
            "(batches split; a repeat only where a rank has fewer samples than steps, marked "
            "is_repeat), pad = repeat whole batches (marked), truncate = drop the surplus "
            "(counted in stats() and the report)",
        ),
    },
    "device": {
        "type": Key(
            Either((Choice(("auto", "cpu", "cuda")), Str())),
            "auto",
            "auto: cuda when available, else cpu; or a torch device string such as cuda:1",
        ),
        "non_blocking": Key(Bool(), True, "asynchronous host-to-device copies"),
        "pad": Key(
            ListOf(Str()),
            [],
            "fields whose padded view is built on the device as each batch arrives",
        ),
        "transforms": Key(
            BatchedSteps(),
            [],
            "per-sample transforms run on each whole batch on the device (hetload.batched: "
            "RandomRotation, GridSample, FarthestPoints, ...), before `pad`, seeded per sample "
            "by (sampler.seed, epoch, the sample's key)",
        ),
    },
}


def _default_text(key: Key) -> str:
    if key.default is REQUIRED:
        return "required"
    if key.required_for:
        return "required for " + ", ".join(key.required_for)
    if key.default is None:
        return "null"
    if isinstance(key.default, bool):
        return str(key.default).lower()
    if key.default == {} or key.default == []:
        return "{}" if isinstance(key.default, dict) else "[]"
    return str(key.default)


def reference() -> str:
    """The config reference as Markdown: one table per section (key, type, default, meaning)."""
    lines = [
        "Only `dataset` is required. Relative paths start at the config file's folder; in "
        "overrides (`section.key=value`, typed as YAML) at the current directory. `transforms` "
        "is a list of `Name` or `{Name: {arg: value}}` of `hetload.transforms`, applied in "
        "order; a `module:function` name is custom code, refused unless allowed "
        "(`allow_custom_code=True`, `--allow-custom-code`).",
        "",
    ]
    for section, keys in SCHEMA.items():
        lines += [f"**`{section}`**: {SECTION_DOCS[section]}", ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, key in keys.items():
            doc = key.doc + (f" ({', '.join(key.only)} only)" if key.only else "")
            row = [f"`{name}`", key.type.describe(), f"`{_default_text(key)}`", doc]
            lines.append("| " + " | ".join(v.replace("|", "\\|") for v in row) + " |")
        lines.append("")
        if section == "dataset":
            lines += _options_table()
    return "\n".join(lines)


def _options_table() -> list[str]:
    """Per dataset type, the constructor arguments ``dataset.options`` passes through (from
    :data:`hetload.config.coverage.COVERAGE`, which a test keeps equal to the signatures)."""
    from hetload.config.coverage import option_names

    lines = ["| dataset.type | `dataset.options` it takes |", "|---|---|"]
    for kind in DATASET_TYPES:
        lines.append(f"| `{kind}` | {', '.join(option_names(kind)) or '(none)'} |")
    return [*lines, ""]
