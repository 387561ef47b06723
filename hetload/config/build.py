"""``build_loader``: a validated config -> dataset, sampler, collate, DataLoader, device step.

The pieces are hetload's own (``hetload.data``, ``hetload.transforms``, ``hetload.samplers``,
``hetload.collate``); this module only wires them as the config says. Where a piece is not
installed the error names the config section that needs it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, IterableDataset

from hetload.batch import HeteroBatch
from hetload.collate import collate
from hetload.config.load import ConfigError, LoaderConfig, load_config
from hetload.config.types import closest
from hetload.guards import shown
from hetload.ragged import Ragged
from hetload.schema import DEFAULT_SCHEMA, Schema

__all__ = ["Loader", "StageTimes", "build_loader"]


# ---------------------------------------------------------------------------- the loader
class StageTimes:
    """Seconds spent per stage, summed over batches (filled when built with ``timed=True``).

    ``read`` and ``collate`` are measured inside the process that does them (a worker when
    ``num_workers > 0``, running in parallel with the main loop); ``transfer`` and ``pad`` are
    measured in the main process with the device synchronized around each step.
    """

    def __init__(self) -> None:
        self.read = 0.0
        self.collate = 0.0
        self.transfer = 0.0
        self.pad = 0.0
        self.batches = 0

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in ("read", "collate", "transfer", "pad")}


class Loader:
    """Batches as the config describes them, on the configured device.

    Iterating gives :class:`~hetload.HeteroBatch` es moved to :attr:`device` (only the packed
    buffers cross), with the padded views of ``device.pad`` fields already built there.

    Attributes:
        config: the validated :class:`~hetload.config.LoaderConfig`.
        dataset: the dataset (map-style or iterable).
        batch_sampler: the batch sampler of a map-style dataset (``None`` for streams).
        dataloader: the underlying ``torch.utils.data.DataLoader``.
        device: the ``torch.device`` batches are moved to.
        times: per-stage seconds when built with ``timed=True`` (``hetload bench``), else None.
    """

    def __init__(
        self,
        config: LoaderConfig,
        dataset: Any,
        batch_sampler: Any,
        dataloader: DataLoader,
        device: torch.device,
        times: StageTimes | None,
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.dataloader = dataloader
        self.device = device
        self.times = times
        self._pad = tuple(config.device["pad"])
        self._non_blocking = config.device["non_blocking"]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Fresh batches for ``epoch`` (call before each epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)
        for part in (self.batch_sampler, self.dataset):
            setter = getattr(part, "set_epoch", None)
            if setter is not None:
                setter(self.epoch)
        sampler = getattr(self.batch_sampler, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        count = getattr(self.dataset, "num_batches", None)
        if count is None:
            raise TypeError(f"{type(self.dataset).__name__} does not know its batch count")
        return count(self.dataloader.num_workers)

    def __iter__(self) -> Iterator[HeteroBatch]:
        for item in self.dataloader:
            if self.times is not None:
                batch, read_s, collate_s = item
                self.times.read += read_s
                self.times.collate += collate_s
                self.times.batches += 1
            else:
                batch = item
            yield self._on_device(batch)

    def _on_device(self, batch: HeteroBatch) -> HeteroBatch:
        timing = self.times is not None and self.device.type == "cuda"
        if self.device.type != "cpu":
            start = _sync_clock(self.device) if timing else 0.0
            batch = batch.to(self.device, non_blocking=self._non_blocking)
            if timing:
                self.times.transfer += _sync_clock(self.device) - start
        start = _sync_clock(self.device) if timing else 0.0
        for name in self._pad:
            field = batch.get(name)
            if not isinstance(field, Ragged):
                raise self.config.error(
                    "device.pad",
                    f"the batch has no ragged field {name!r} (fields: {', '.join(batch.keys())})",
                )
            field.padded()
            field.mask  # noqa: B018 (built and cached with the padded view)
        if timing:
            self.times.pad += _sync_clock(self.device) - start
        return batch

    def __repr__(self) -> str:
        return (
            f"Loader({type(self.dataset).__name__}, batches={len(self) if self._sized() else '?'}, "
            f"workers={self.dataloader.num_workers}, device={self.device})"
        )

    def _sized(self) -> bool:
        try:
            len(self)
        except (TypeError, ValueError):
            return False
        return True


def _sync_clock(device: torch.device) -> float:
    torch.cuda.synchronize(device)
    return time.perf_counter()


# ---------------------------------------------------------------------------- pieces
def _require(module: str, section: str, config: LoaderConfig) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{config.source}: {section}: needs {module}, which is not available ({exc})"
        ) from None


def _attr(module: Any, name: str, section: str, config: LoaderConfig) -> Any:
    value = getattr(module, name, None)
    if value is None:
        raise ConfigError(
            f"{config.source}: {section}: {module.__name__}.{name} is not available in this "
            "hetload build"
        )
    return value


def import_code(ref: str, where: str, config: LoaderConfig) -> Callable:
    """The callable named ``module:function`` (allowed by the validator only with custom code)."""
    if not config.allow_custom_code:
        raise config.error(where, f"{shown(ref)} is custom code, which was not allowed")
    module_name, qualname = ref.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise config.error(where, f"cannot import {module_name!r} ({exc})") from None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise config.error(where, f"{module_name!r} has no {qualname!r}")
    if not callable(obj):
        raise config.error(where, f"{shown(ref)} is not callable")
    return obj


def _construct(cls: Callable, args: tuple, kwargs: dict[str, Any], where: str, config) -> Any:
    """``cls(*args, **kwargs)``, an unknown keyword named with the closest valid one."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if params and not takes_any:
        valid = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        for name in kwargs:
            if name not in params:
                guess = closest(name, valid)
                hint = f"; did you mean {guess!r}?" if guess else ""
                raise config.error(
                    where,
                    f"{getattr(cls, '__name__', cls)} has no argument {name!r}{hint} "
                    f"Valid: {', '.join(valid)}",
                )
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise config.error(where, str(exc)) from exc


class _KeepFields:
    """Drop every field but ``fields`` (picklable, for worker processes)."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)

    def __call__(self, sample: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if sample is None:
            return None
        missing = [f for f in self.fields if f not in sample]
        if missing:
            source = sample.get("path") or sample.get("key") or "a sample"
            raise ValueError(
                f"{source} has no field {missing[0]!r} listed in dataset.fields "
                f"(it has: {', '.join(sample)})"
            )
        return {f: sample[f] for f in self.fields}


class _Chain:
    """Apply callables in order, passing ``None`` (a dropped sample) through."""

    def __init__(self, steps: Sequence[Callable]) -> None:
        self.steps = tuple(steps)

    def __call__(self, sample: Any) -> Any:
        for step in self.steps:
            if sample is None:
                return None
            sample = step(sample)
        return sample


def _transform(config: LoaderConfig) -> Callable | None:
    builtin = [(n, kw) for n, kw in config.transforms if ":" not in n]
    steps: list[Callable] = []
    if builtin:
        transforms = _require("hetload.transforms", "transforms", config)
        build = _attr(transforms, "build", "transforms", config)
    for i, (name, kwargs) in enumerate(config.transforms):
        where = f"transforms[{i}]"
        if ":" in name:
            fn = import_code(name, where, config)
            steps.append(functools.partial(fn, **kwargs) if kwargs else fn)
        else:
            try:
                steps.extend(build([{name: kwargs}]).transforms)
            except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
                raise config.error(where, str(exc).strip("'\"")) from None
    # hetload transforms inside the chain draw from the generator the dataset seeds per sample
    return _Chain(steps) if steps else None


class _Mapped(torch.utils.data.Dataset):
    """A map-style dataset with ``fn`` applied to each sample, for sources without a
    ``transform`` argument. Transforms draw from the generator of ``(seed, epoch, index)``, as
    in MeshFolder; the epoch lives in shared memory so that workers see :meth:`set_epoch`.
    ``sizes``, ``report`` and the rest pass through."""

    def __init__(self, dataset: Any, fn: Callable, seed: int) -> None:
        self.dataset = dataset
        self.fn = fn
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))
        setter = getattr(self.dataset, "set_epoch", None)
        if setter is not None:
            setter(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        from hetload.transforms import run_seeded, sample_rng

        return run_seeded(self.fn, self.dataset[i], sample_rng(self.seed, int(self._epoch), i))

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "fn", "seed", "_epoch") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


class _FolderLabels(torch.utils.data.Dataset):
    """Adds ``label``: the index of each file's top folder under ``root`` among the sorted
    folder names (:attr:`classes`), as ModelNet-style layouts encode the class."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        root = Path(dataset.root)
        tops = [Path(f).relative_to(root).parts[0] for f in dataset.files]
        nested = [
            Path(f).relative_to(root)
            for f in dataset.files
            if len(Path(f).relative_to(root).parts) < 2
        ]
        if nested:
            raise ValueError(
                f"dataset.labels: folder needs every file in a class folder under {root}; "
                f"{nested[0]} is not"
            )
        self.classes = sorted(set(tops))
        lookup = {name: i for i, name in enumerate(self.classes)}
        self.labels = np.array([lookup[t] for t in tops], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        sample = self.dataset[i]
        if sample is None:
            return None
        return {**sample, "label": int(self.labels[i])}

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "classes", "labels") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


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


def _planned_sizes(config: LoaderConfig, name: str, sizes: np.ndarray) -> np.ndarray:
    """The rows a field will have after the configured transforms, as far as they say:
    ``SamplePoints(n)`` makes ``n`` points (and drops the mesh's other fields), ``Subsample(n)``
    and ``SphereCrop(n)`` keep at most ``n``. The sampler budgets what the batch will hold."""
    for transform, kwargs in config.transforms:
        if transform == "SamplePoints":
            sizes = np.full_like(sizes, int(kwargs["n"]) if name in _POINT_FIELDS else 0)
        elif transform in ("Subsample", "SphereCrop") and name in _POINT_FIELDS:
            sizes = np.minimum(sizes, int(kwargs["n"]))
    return sizes


_POINT_FIELDS = ("verts", "points")


def _world(config: LoaderConfig) -> tuple[int, int]:
    dist = config.distributed
    world, rank = dist["world_size"], dist["rank"]
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world == "auto":
        env = os.environ.get("WORLD_SIZE")
        world = int(env) if env else (torch.distributed.get_world_size() if initialized else 1)
    if rank == "auto":
        env = os.environ.get("RANK")
        rank = int(env) if env else (torch.distributed.get_rank() if initialized else 0)
    if not 0 <= rank < world:
        raise config.error("distributed.rank", f"rank {rank} is outside a world of size {world}")
    return world, rank


#: constructor arguments the config sets through its own keys, never through dataset.options
_MANAGED = {
    "on_error": "dataset.on_error",
    "fields": "dataset.fields",
    "transform": "transforms",
    "index": "dataset.index",
    "shuffle": "sampler.shuffle",
    "seed": "sampler.seed",
    "batch_size": "sampler.batch_size",
    "max_tokens": "sampler.max_tokens",
    "buffer_size": "sampler.buffer_size",
    "rank": "distributed.rank",
    "world_size": "distributed.world_size",
    "even": "distributed.even",
    "collate_fn": "collate",
}


def _check_options(config: LoaderConfig) -> None:
    for name in config.dataset["options"]:
        if name in _MANAGED:
            raise config.error(f"dataset.options.{name}", f"set it with {_MANAGED[name]} instead")


def _dataset(config: LoaderConfig, transform: Callable | None) -> Any:
    """A map-style dataset whose samples are transformed and trimmed to ``dataset.fields``."""
    _check_options(config)
    ds = config.dataset
    data = _require("hetload.data", "dataset", config)
    cls = _attr(data, ds["type"], "dataset.type", config)
    options = {"on_error": ds["on_error"], **ds["options"]}
    keep = _KeepFields(ds["fields"]) if ds["fields"] else None
    params = _params(cls)
    if ds["fields"] and "fields" in params:
        options["fields"] = ds["fields"]
        keep = None
    if "seed" in params:  # MeshFolder: the seed of its per-sample transform generators
        options["seed"] = config.sampler["seed"]
    steps = [s for s in (transform, keep) if s is not None]
    source = ds["root"] if ds["type"] == "MeshFolder" else ds["path"]
    if steps and "transform" in params:
        made = _construct(
            cls, (source,), {"transform": _Chain(steps), **options}, "dataset", config
        )
        return _labelled(config, made)
    made = _construct(cls, (source,), options, "dataset", config)
    return _labelled(
        config, _Mapped(made, _Chain(steps), config.sampler["seed"]) if steps else made
    )


def _labelled(config: LoaderConfig, dataset: Any) -> Any:
    if config.dataset["labels"] != "folder":
        return dataset
    try:
        return _FolderLabels(dataset)
    except ValueError as exc:
        raise config.error("dataset.labels", str(exc).split(": ", 1)[-1]) from None


def _params(cls: Any) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}


#: sampler keys a stream cannot honour (its batching is the streaming bucketer's)
_MAP_STYLE_ONLY = ("cost", "max_batch_size", "oversize", "windows", "drop_last")


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
    data = _require("hetload.data", "dataset", config)
    cls = _attr(data, "ShardStream", "dataset.type", config)
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
    if ds["index"] is not None:
        kwargs["index"] = ds["index"]
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
    return _construct(cls, (ds["urls"],), kwargs, "dataset", config)


def _cost(config: LoaderConfig) -> Any:
    cost = config.sampler["cost"]
    return cost if cost in ("padded", "sum") else import_code(cost, "sampler.cost", config)


def _batch_sampler(config: LoaderConfig, dataset: Any, world: int, rank: int) -> Any:
    sampler = config.sampler
    if sampler["type"] == "fixed":
        order = DistributedSampler(
            dataset,
            num_replicas=world,
            rank=rank,
            shuffle=sampler["shuffle"],
            seed=sampler["seed"],
            drop_last=sampler["drop_last"],
        )
        return BatchSampler(order, sampler["batch_size"], sampler["drop_last"])
    budget = sampler["max_tokens"]
    if isinstance(budget, dict):
        sizes = {
            name: _planned_sizes(config, name, _field_sizes(config, dataset, name))
            for name in budget
        }
    else:
        sizes = getattr(dataset, "sizes", None)
        if sizes is None:
            raise config.error(
                "sampler.type",
                f"bucket batching needs per-sample sizes, which {type(dataset).__name__} does "
                "not provide; use sampler.type: fixed",
            )
        sizes = _planned_sizes(config, "verts", np.asarray(sizes, dtype=np.int64))
    samplers = _require("hetload.samplers", "sampler", config)
    return _construct(
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
        },
        "sampler",
        config,
    )


def _schema(config: LoaderConfig) -> Schema:
    spec = config.collate
    return Schema({**DEFAULT_SCHEMA.fields, **spec["schema"]}, unknown=spec["unknown"])


class _TimedCollate:
    """``collate`` returning ``(batch, read seconds since the last batch, collate seconds)``.

    Runs in the process that reads (a worker or the main process), so the read clock is that
    process's: :class:`_TimedReads` adds to it, this resets it.
    """

    def __init__(self, collate_fn: Callable) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list[Any]) -> tuple[HeteroBatch, float, float]:
        start = time.perf_counter()
        batch = self.collate_fn(samples)
        collated = time.perf_counter() - start
        read = _READ_CLOCK[0]
        _READ_CLOCK[0] = 0.0
        return batch, read, collated


#: seconds spent reading in this process since the last collate (per process: workers fork)
_READ_CLOCK = [0.0]


class _TimedReads(torch.utils.data.Dataset):
    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        start = time.perf_counter()
        try:
            return self.dataset[i]
        finally:
            _READ_CLOCK[0] += time.perf_counter() - start


class _TimedStream(IterableDataset):
    """A stream of ``(batch, _, collate seconds)`` -> ``(batch, read seconds, collate seconds)``,
    read being the rest of the time the stream took to yield the batch."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[tuple[HeteroBatch, float, float]]:
        it = iter(self.stream)
        while True:
            start = time.perf_counter()
            try:
                batch, _, collated = next(it)
            except StopIteration:
                return
            yield batch, time.perf_counter() - start - collated, collated


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
        collate_fn = _TimedCollate(collate_fn)
    loader_cfg = cfg.loader
    workers = loader_cfg["num_workers"]
    if loader_cfg["prefetch_factor"] is not None and not workers:
        raise cfg.error("loader.prefetch_factor", "needs loader.num_workers > 0")
    pin = loader_cfg["pin_memory"]
    common = {
        "num_workers": workers,
        "pin_memory": device.type == "cuda" if pin == "auto" else pin,
        "prefetch_factor": loader_cfg["prefetch_factor"] if workers else None,
        "persistent_workers": loader_cfg["persistent_workers"] and workers > 0,
        "timeout": loader_cfg["timeout"] if workers else 0,
    }
    if cfg.dataset["type"] == "ShardStream":
        dataset = _stream(cfg, transform, collate_fn, world, rank)
        source = _TimedStream(dataset) if timed else dataset
        # the stream yields collated batches: no batching or collating left for the DataLoader
        dataloader = DataLoader(source, batch_size=None, collate_fn=_identity, **common)
        batch_sampler = None
    else:
        dataset = _dataset(cfg, transform)
        batch_sampler = _batch_sampler(cfg, dataset, world, rank)
        source = _TimedReads(dataset) if timed else dataset
        dataloader = DataLoader(
            source, batch_sampler=batch_sampler, collate_fn=collate_fn, **common
        )
    return Loader(cfg, dataset, batch_sampler, dataloader, device, times)


def _identity(item: Any) -> Any:
    return item
