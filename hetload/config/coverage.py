"""Where each argument of the classes a config builds comes from: the config covers the Python API.

Every argument of every class ``build_loader`` constructs (the dataset types, the samplers, the
stream, torch's DataLoader) is listed here with its source:

- ``"<section>.<key>"``: a key of the config schema (typed and checked before anything runs);
- ``OPTIONS``: reachable through ``dataset.options`` (passed through, checked against the
  signature when the dataset is built);
- ``BUILT``: set by ``build_loader`` itself from other keys (the transform chain, the collate
  function, the sizes...);
- ``PYTHON``: a Python object with no YAML form (a batcher instance, a generator); use the
  Python API for it.

``tests/test_config_coverage.py`` compares this table with the classes' signatures: a new
constructor argument fails that test until it is given a place here, so it cannot silently be
missing from configs. :func:`dataset_kwargs` derives the dataset arguments from the keys the table
names, and :func:`check_options` refuses an option a key already covers.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BUILT",
    "COVERAGE",
    "OPTIONS",
    "PYTHON",
    "check_options",
    "dataset_kwargs",
    "option_names",
    "signature_names",
]

OPTIONS = "options"
BUILT = "built"
PYTHON = "python"

_FOLDER_COMMON = {
    "root": "dataset.root",
    "transform": BUILT,  # transforms
    "on_error": "dataset.on_error",
    "fields": "dataset.fields",
    "load_options": OPTIONS,
    "seed": "sampler.seed",
    "index": OPTIONS,  # the size index cache ("auto", a path, or null)
    "report_path": OPTIONS,
    "scan_workers": OPTIONS,
    "progress": OPTIONS,
}

#: class -> {argument: where the config sets it}
COVERAGE: dict[str, dict[str, str]] = {
    "MeshFolder": {
        **_FOLDER_COMMON,
        "pattern": OPTIONS,
        "extensions": OPTIONS,
        "labels": "dataset.labels",
        "classes": OPTIONS,
    },
    # ModelNet takes MeshFolder's arguments (**options) but fixes pattern, labels, classes and
    # extensions itself
    "ModelNet": {**_FOLDER_COMMON, "split": "dataset.split"},
    "ShapeNetCore": {
        **_FOLDER_COMMON,
        "synsets": "dataset.synsets",
        "model_file": "dataset.model_file",
    },
    "ScanNetScenes": {
        **_FOLDER_COMMON,
        "scenes": "dataset.scenes",
        "label_map": "dataset.label_map",
    },
    "SemanticKITTI": {
        "root": "dataset.root",
        "sequences": "dataset.sequences",
        "labels": "dataset.labels",
        "learning_map": "dataset.label_map",
        "transform": BUILT,
        "on_error": "dataset.on_error",
        "fields": "dataset.fields",
        "seed": "sampler.seed",
        "report_path": OPTIONS,
        "allow_nonfinite": OPTIONS,
    },
    "ShardDataset": {
        "source": "dataset.path",
        "fields": "dataset.fields",
        "size_field": "dataset.size_field",
        "on_error": "dataset.on_error",
        "check": OPTIONS,
        "max_open": OPTIONS,
        "transform": BUILT,
        "seed": "sampler.seed",
    },
    "ShardStream": {
        "source": "dataset.urls",
        "index": "dataset.index",
        "shuffle": "sampler.shuffle",
        "seed": "sampler.seed",
        "rank": "distributed.rank",
        "world_size": "distributed.world_size",
        "batch_size": "sampler.batch_size",
        "max_tokens": "sampler.max_tokens",
        "batcher": PYTHON,
        "buffer_size": "sampler.buffer_size",
        "size_field": "dataset.size_field",
        "fields": "dataset.fields",
        "collate_fn": BUILT,  # collate
        "transform": BUILT,
        "even": "distributed.even",
        "on_error": "dataset.on_error",
        "reads": "dataset.reads",
    },
    "BucketBatchSampler": {
        "sizes": BUILT,  # the dataset's sizes (or field_sizes of the budgeted fields)
        "max_tokens": "sampler.max_tokens",
        "cost": "sampler.cost",
        "max_batch_size": "sampler.max_batch_size",
        "shuffle": "sampler.shuffle",
        "seed": "sampler.seed",
        "drop_last": "sampler.drop_last",
        "num_replicas": "distributed.world_size",
        "rank": "distributed.rank",
        "oversize": "sampler.oversize",
        "windows": "sampler.windows",
        "spread": "sampler.spread",
    },
    "FixedBatchSampler": {
        "n": BUILT,  # len(dataset)
        "batch_size": "sampler.batch_size",
        "shuffle": "sampler.shuffle",
        "seed": "sampler.seed",
        "drop_last": "sampler.drop_last",
        "num_replicas": "distributed.world_size",
        "rank": "distributed.rank",
    },
    "DataLoader": {
        "dataset": BUILT,
        "batch_size": BUILT,  # None: the batch sampler / stream batches
        "shuffle": BUILT,  # sampler.shuffle, through the batch sampler
        "sampler": BUILT,
        "batch_sampler": BUILT,
        "num_workers": "loader.num_workers",
        "collate_fn": BUILT,
        "pin_memory": "loader.pin_memory",
        "drop_last": BUILT,  # sampler.drop_last, through the batch sampler
        "timeout": "loader.timeout",
        "worker_init_fn": PYTHON,
        "multiprocessing_context": "loader.multiprocessing_context",
        "generator": PYTHON,
        "prefetch_factor": "loader.prefetch_factor",
        "persistent_workers": "loader.persistent_workers",
        "pin_memory_device": PYTHON,  # deprecated by torch; device.type decides
        "in_order": "loader.in_order",
    },
    "ThreadedLoader": {
        "dataset": BUILT,
        "batch_sampler": BUILT,
        "threads": "loader.threads",
        "prefetch": "loader.prefetch_factor",  # times loader.threads
        "collate_fn": BUILT,
        "pin_memory": "loader.pin_memory",
    },
}


def owner(name: str) -> Any:
    """The class ``name`` of :data:`COVERAGE`."""
    if name == "DataLoader":
        from torch.utils.data import DataLoader

        return DataLoader
    if name == "FixedBatchSampler":
        from hetload.samplers.fixed import FixedBatchSampler

        return FixedBatchSampler
    from hetload import data, samplers

    return getattr(data, name, None) or getattr(samplers, name)


def signature_names(name: str) -> list[str]:
    """The arguments class ``name`` accepts (for a class taking ``**options`` that it passes to
    MeshFolder, MeshFolder's too, less those it refuses)."""
    params = inspect.signature(owner(name)).parameters
    names = [
        n
        for n, p in params.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        fixed = {"ModelNet": ("pattern", "labels", "classes", "extensions")}.get(name, ())
        names += [n for n in signature_names("MeshFolder") if n not in names and n not in fixed]
    return names


def option_names(dataset_type: str) -> list[str]:
    """The arguments of ``dataset_type`` that ``dataset.options`` may set."""
    return [n for n, where in COVERAGE[dataset_type].items() if where == OPTIONS]


#: the config section a BUILT argument is made from, where one is
_BUILT_FROM = {"transform": "the transforms section", "collate_fn": "the collate section"}


def check_options(dataset_type: str, options: Mapping[str, Any]) -> str | None:
    """Why ``dataset.options`` may not hold one of ``options`` (``"<name>: reason"``), or None.

    An argument the table does not know yet (a constructor argument newer than this table) is
    let through to the constructor, which checks it against its signature."""
    table = COVERAGE[dataset_type]
    for name in options:
        where = table.get(name)
        if where is None or where == OPTIONS:
            continue
        if where == BUILT:
            section = _BUILT_FROM.get(name, "the config's other keys")
            return f"{name}: build_loader sets it (from {section})"
        if where == PYTHON:
            return f"{name}: a Python object a config cannot hold; use the Python API"
        return f"{name}: set it with {where} instead"
    return None


def dataset_kwargs(
    dataset_type: str, dataset: Mapping[str, Any], given: frozenset[str]
) -> dict[str, Any]:
    """The keyword arguments the ``dataset`` section's own keys give ``dataset_type``: each
    argument the table maps to a ``dataset.<key>`` the config set (the constructor's defaults
    apply to the others). The source (root / path / urls), ``fields`` and ``on_error`` are
    passed by ``build_loader`` itself."""
    out = {}
    for name, where in COVERAGE[dataset_type].items():
        section, _, key = where.partition(".")
        if section != "dataset" or key in ("root", "path", "urls", "fields", "on_error"):
            continue
        if where in given:
            out[name] = dataset[key]
    return out
