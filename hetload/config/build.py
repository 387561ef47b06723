"""``build_loader``: a validated config -> dataset, sampler, collate, DataLoader, device step.

The pieces are hetload's own (``hetload.data``, ``hetload.transforms``, ``hetload.samplers``,
``hetload.collate``); this module only wires them as the config says. Where a piece is not
installed the error names the config section that needs it. ``construct.py`` imports and builds
what a config names, ``wrappers.py`` holds the datasets wrapped around the configured one, and
``loader.py`` the :class:`Loader` returned.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from hetload.collate import collate
from hetload.config.construct import attr, construct, import_code, require
from hetload.config.coverage import check_options, dataset_kwargs, option_names, signature_names
from hetload.config.load import LoaderConfig, load_config
from hetload.config.loader import Loader, StageTimes, TimedCollate, TimedReads, TimedStream
from hetload.config.schema import MAX_RANKS
from hetload.config.types import closest
from hetload.config.wrappers import Chain, KeepFields, Mapped
from hetload.data.threaded import ThreadedLoader
from hetload.guards import shown
from hetload.samplers.fixed import FixedBatchSampler
from hetload.samplers.repeats import MarkRepeats
from hetload.schema import DEFAULT_SCHEMA, Schema

__all__ = ["Loader", "StageTimes", "build_loader", "import_code"]


class _Bound:
    """``fn`` with the config's keyword arguments bound, keeping ``fn.out_size`` (a
    ``functools.partial`` would hide it, and the sampler would budget the sizes before ``fn``)."""

    def __init__(self, fn: Callable, kwargs: dict[str, Any]) -> None:
        self.fn, self.kwargs = fn, kwargs
        if hasattr(fn, "out_size"):
            self.out_size = fn.out_size

    def __call__(self, sample: Any) -> Any:
        return self.fn(sample, **self.kwargs)

    def __repr__(self) -> str:
        return f"{getattr(self.fn, '__qualname__', self.fn)!s}(**{self.kwargs!r})"


def _transform(config: LoaderConfig) -> Callable | None:
    builtin = [(n, kw) for n, kw in config.transforms if ":" not in n]
    steps: list[Callable] = []
    if builtin:
        transforms = require("hetload.transforms", "transforms", config)
        build = attr(transforms, "build", "transforms", config)
    for i, (name, kwargs) in enumerate(config.transforms):
        where = f"transforms[{i}]"
        if ":" in name:
            fn = import_code(name, where, config)
            steps.append(_Bound(fn, kwargs) if kwargs else fn)
        else:
            try:
                # the config's schema: Subsample renumbers the index fields it declares
                steps.extend(build([{name: kwargs}], schema=_schema(config)).transforms)
            except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
                raise config.error(where, str(exc).strip("'\"")) from None
    # hetload transforms inside the chain draw from the generator the dataset seeds per sample
    return Chain(steps) if steps else None


def _field_sizes(config: LoaderConfig, dataset: Any, name: str) -> np.ndarray:
    """``int64 [N]`` rows of field ``name`` per sample, from the dataset's metadata."""
    table = getattr(dataset, "field_sizes", None)
    if isinstance(table, Mapping) and name in table:
        return np.asarray(table[name], dtype=np.int64)
    index = getattr(dataset, "index", None)
    if index is not None and hasattr(index, "rows") and name in index.field_names():
        return np.maximum(index.rows(name), 0)
    raise config.error(
        "sampler.max_tokens", f"{type(dataset).__name__} has no size metadata for field {name!r}"
    )


def _world(config: LoaderConfig) -> tuple[int, int]:
    dist = config.distributed
    world, rank = dist["world_size"], dist["rank"]
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world == "auto":
        env = _env_int(config, "distributed.world_size", "WORLD_SIZE", 1)
        world = (
            env if env is not None else (torch.distributed.get_world_size() if initialized else 1)
        )
    if rank == "auto":
        env = _env_int(config, "distributed.rank", "RANK", 0)
        rank = env if env is not None else (torch.distributed.get_rank() if initialized else 0)
    if not 0 <= rank < world:
        raise config.error("distributed.rank", f"rank {rank} is outside a world of size {world}")
    return world, rank


def _env_int(config: LoaderConfig, key: str, variable: str, low: int) -> int | None:
    """``$variable`` as an int in ``[low, MAX_RANKS]``, ``None`` when unset or empty."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    if not text.isdecimal() or not low <= int(text) <= MAX_RANKS - (1 - low):
        raise config.error(
            key,
            f"auto reads ${variable}, which is {shown(text)}: expected an integer in "
            f"[{low}, {MAX_RANKS - (1 - low)}]",
        )
    return int(text)


def _check_options(config: LoaderConfig) -> None:
    kind, options = config.dataset["type"], config.dataset["options"]
    reason = check_options(kind, options)
    if reason is not None:
        name, _, why = reason.partition(": ")
        raise config.error(f"dataset.options.{name}", why)
    valid = signature_names(kind)
    for name in options:
        if name not in valid:
            guess = closest(name, valid)
            hint = f"; did you mean {guess!r}?" if guess else ""
            takes = ", ".join(option_names(kind)) or "none (each argument has its own key)"
            raise config.error(
                f"dataset.options.{name}",
                f"{kind} has no argument {shown(name)}{hint} Valid: {takes}",
            )


def _dataset(config: LoaderConfig, transform: Callable | None) -> Any:
    """A map-style dataset whose samples are transformed and trimmed to ``dataset.fields``."""
    _check_options(config)
    ds = config.dataset
    data = require("hetload.data", "dataset", config)
    cls = attr(data, ds["type"], "dataset.type", config)
    # the keys the coverage table maps to this class's arguments (split, synsets, label_map...)
    options = {
        "on_error": ds["on_error"],
        **dataset_kwargs(ds["type"], ds, config.given),
        **ds["options"],
    }
    keep = KeepFields(ds["fields"]) if ds["fields"] else None
    accepted = set(signature_names(ds["type"]))
    if ds["fields"] and "fields" in accepted:
        options["fields"] = ds["fields"]
        keep = None
    if "seed" in accepted:  # folders: the seed of their per-sample transform generators
        options["seed"] = config.sampler["seed"]
    steps = [s for s in (transform, keep) if s is not None]
    source = ds["path"] if ds["type"] == "ShardDataset" else ds["root"]
    if steps and "transform" in accepted:
        return construct(cls, (source,), {"transform": Chain(steps), **options}, "dataset", config)
    made = construct(cls, (source,), options, "dataset", config)
    return Mapped(made, Chain(steps), config.sampler["seed"]) if steps else made


#: sampler keys a stream cannot honour (its batching is the streaming bucketer's)
_MAP_STYLE_ONLY = ("cost", "max_batch_size", "oversize", "windows", "spread", "drop_last")


def _stream(
    config: LoaderConfig,
    transform: Callable | None,
    collate_fn: Callable,
    world: int,
    rank: int,
) -> Any:
    """A ``ShardStream`` yielding collated batches; transforms run on each sample of a batch
    just before collating (the batch was formed on the sizes stored in the index), seeded by
    ``(seed, epoch, sample position)``."""
    for key in _MAP_STYLE_ONLY:
        if f"sampler.{key}" in config.given:
            raise config.error(
                f"sampler.{key}", "applies to map-style datasets; ShardStream cannot honour it"
            )
    _check_options(config)
    data = require("hetload.data", "dataset", config)
    cls = attr(data, "ShardStream", "dataset.type", config)
    ds, sampler = config.dataset, config.sampler
    kwargs: dict[str, Any] = {
        "shuffle": sampler["shuffle"],
        "seed": sampler["seed"],
        "rank": rank,
        "world_size": world,
        "fields": ds["fields"],
        "on_error": ds["on_error"],
        "even": config.distributed["even"],
        "collate_fn": collate_fn,
        "transform": transform,
    }
    kwargs.update(dataset_kwargs("ShardStream", ds, config.given))  # index, size_field
    if sampler["type"] == "fixed":
        kwargs["batch_size"] = sampler["batch_size"]
    else:
        if isinstance(sampler["max_tokens"], dict):
            raise config.error(
                "sampler.max_tokens", "ShardStream takes one budget (an integer), not one per field"
            )
        kwargs["max_tokens"] = sampler["max_tokens"]
        kwargs["buffer_size"] = sampler["buffer_size"]
    kwargs.update(ds["options"])
    return construct(cls, (ds["urls"],), kwargs, "dataset", config)


def _cost(config: LoaderConfig) -> Any:
    cost = config.sampler["cost"]
    return cost if cost in ("padded", "sum") else import_code(cost, "sampler.cost", config)


def _batch_sampler(config: LoaderConfig, dataset: Any, world: int, rank: int) -> Any:
    sampler = config.sampler
    if sampler["type"] == "fixed":
        # DistributedSampler + BatchSampler's batches, with state and marked repeats
        return construct(
            FixedBatchSampler,
            (len(dataset),),
            {
                "batch_size": sampler["batch_size"],
                "shuffle": sampler["shuffle"],
                "seed": sampler["seed"],
                "drop_last": sampler["drop_last"],
                "num_replicas": world,
                "rank": rank,
            },
            "sampler",
            config,
        )
    budget = sampler["max_tokens"]
    if isinstance(budget, dict):
        sizes = {name: _field_sizes(config, dataset, name) for name in budget}
    else:
        sizes = getattr(dataset, "sizes", None)
        if sizes is None:
            raise config.error(
                "sampler.type",
                f"bucket batching needs per-sample sizes, which {type(dataset).__name__} does "
                "not provide; use sampler.type: fixed",
            )
        sizes = np.asarray(sizes, dtype=np.int64)
    samplers = require("hetload.samplers", "sampler", config)
    return construct(
        samplers.BucketBatchSampler,
        (sizes,),
        {
            "max_tokens": budget,
            "cost": _cost(config),
            "max_batch_size": sampler["max_batch_size"],
            "shuffle": sampler["shuffle"],
            "seed": sampler["seed"],
            "drop_last": sampler["drop_last"],
            "num_replicas": world,
            "rank": rank,
            "oversize": sampler["oversize"],
            "windows": sampler["windows"],
            "spread": sampler["spread"],
        },
        "sampler",
        config,
    )


def _schema(config: LoaderConfig) -> Schema:
    spec = config.collate
    return Schema({**DEFAULT_SCHEMA.fields, **spec["schema"]}, unknown=spec["unknown"])


def _device(config: LoaderConfig) -> torch.device:
    name = config.device["type"]
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise config.error("device.type", f"{name!r} was asked for, but CUDA is not available")
    return device


# ---------------------------------------------------------------------------- entry point
def build_loader(
    config: str | os.PathLike | Mapping[str, Any] | LoaderConfig,
    overrides: Sequence[str] = (),
    *,
    allow_custom_code: bool = False,
    base_dir: str | os.PathLike | None = None,
    timed: bool = False,
) -> Loader:
    """A :class:`Loader` from a YAML config file (or a dict of the same shape).

    >>> loader = build_loader("configs/demo.yaml", ["sampler.max_tokens=200000"])  # doctest: +SKIP
    >>> for epoch in range(10):                                                    # doctest: +SKIP
    ...     loader.set_epoch(epoch)
    ...     for batch in loader:  # HeteroBatch on the configured device
    ...         ...

    Args:
        config: the config (see the config reference: ``hetload.config.reference()``).
        overrides: ``"section.key=value"`` strings, applied before validation.
        allow_custom_code: permit ``module:function`` names in the config. Off by default: a
            config file alone never makes hetload import code.
        base_dir: where relative paths of a dict config start (default: the current directory).
        timed: record per-stage seconds in ``loader.times`` (what ``hetload bench`` prints).

    Raises:
        ConfigError: before anything runs, naming the file and the key, for any invalid config.
    """
    cfg = load_config(config, overrides, allow_custom_code=allow_custom_code, base_dir=base_dir)
    if "sampler.buffer_size" in cfg.given and cfg.dataset["type"] != "ShardStream":
        raise cfg.error("sampler.buffer_size", "applies to dataset.type ShardStream only")
    if "distributed.even" in cfg.given and cfg.dataset["type"] != "ShardStream":
        raise cfg.error("distributed.even", "applies to dataset.type ShardStream only")
    world, rank = _world(cfg)
    device = _device(cfg)
    transform = _transform(cfg)
    collate_fn: Callable = functools.partial(collate, schema=_schema(cfg))
    times = StageTimes() if timed else None
    if timed:
        collate_fn = TimedCollate(collate_fn)
    loader_cfg = cfg.loader
    workers, threads = loader_cfg["num_workers"], loader_cfg["threads"]
    if threads and workers:
        raise cfg.error(
            "loader.threads",
            "and loader.num_workers are two ways to read ahead: set one of them",
        )
    if threads and cfg.dataset["type"] == "ShardStream":
        raise cfg.error(
            "loader.threads",
            "reads map-style datasets (ShardDataset, folders); a ShardStream reads ahead in "
            "loader.num_workers processes",
        )
    if loader_cfg["prefetch_factor"] is not None and not (workers or threads):
        raise cfg.error("loader.prefetch_factor", "needs loader.num_workers or loader.threads > 0")
    if loader_cfg["multiprocessing_context"] is not None and not workers:
        raise cfg.error("loader.multiprocessing_context", "needs loader.num_workers > 0")
    if not loader_cfg["in_order"] and not workers:
        raise cfg.error(
            "loader.in_order",
            "false needs loader.num_workers > 0 (one process reads in order anyway)",
        )
    pin = loader_cfg["pin_memory"]
    common = {
        "num_workers": workers,
        "pin_memory": device.type == "cuda" if pin == "auto" else pin,
        "prefetch_factor": loader_cfg["prefetch_factor"] if workers else None,
        "persistent_workers": loader_cfg["persistent_workers"] and workers > 0,
        "timeout": loader_cfg["timeout"] if workers else 0,
        "multiprocessing_context": loader_cfg["multiprocessing_context"] if workers else None,
    }
    if not loader_cfg["in_order"]:
        # only when asked: torch < 2.6's DataLoader has no in_order
        if "in_order" not in inspect.signature(DataLoader).parameters:
            raise cfg.error(
                "loader.in_order", f"false needs torch >= 2.6 (this is {torch.__version__})"
            )
        common["in_order"] = False
    if cfg.dataset["type"] == "ShardStream":
        dataset = _stream(cfg, transform, collate_fn, world, rank)
        source = TimedStream(dataset) if timed else dataset
        # the stream yields collated batches: no batching or collating left for the DataLoader
        dataloader = DataLoader(source, batch_size=None, collate_fn=_identity, **common)
        batch_sampler = None
    else:
        dataset = _dataset(cfg, transform)
        batch_sampler = _batch_sampler(cfg, dataset, world, rank)
        source = dataset
        # the few samples served twice to keep ranks in step carry is_repeat=True
        source = MarkRepeats(dataset)
        source = TimedReads(source) if timed else source
        if threads:
            prefetch = loader_cfg["prefetch_factor"]
            dataloader = ThreadedLoader(
                source,
                batch_sampler,
                threads=threads,
                prefetch=None if prefetch is None else prefetch * threads,
                collate_fn=collate_fn,
                pin_memory=common["pin_memory"],
            )
        else:
            dataloader = DataLoader(
                source, batch_sampler=batch_sampler, collate_fn=collate_fn, **common
            )
    return Loader(cfg, dataset, batch_sampler, dataloader, device, times)


def _identity(item: Any) -> Any:
    return item
