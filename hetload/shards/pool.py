"""The reader pool of ``preprocess``: read, transform and encode each input in worker
processes, results handed back strictly in input order."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from hetload.guards import check_regular
from hetload.shards.format import EncodedSample, encode_sample
from hetload.shards.settings import build_transform, cast

__all__ = ["Setup", "Task", "ordered", "sample_key_of"]


@dataclass(frozen=True)
class Setup:
    transform_specs: list[Any] | None
    casts: dict[str, str]
    seed: int
    #: reads one input path (default: ``hetload.io.load``); a layout's reader for ``--layout``
    reader: Any = None


_WORKER: dict[str, Any] = {}


def _init_worker(setup: Setup) -> None:
    from hetload import io

    _WORKER["load"] = io.load if setup.reader is None else setup.reader
    _WORKER["transform"] = build_transform(setup.transform_specs)
    _WORKER["casts"] = setup.casts
    _WORKER["seed"] = setup.seed


#: (position, relative path, path, stored values, the sample's key where not its path's)
Task = tuple[int, str, str, dict[str, Any], str | None]


def _work(task: Task) -> tuple[int, int, EncodedSample | None, Exception | None]:
    """Read, transform and encode one file: ``(position, bytes read, sample, error)``; sample
    and error both ``None`` when the transforms dropped the sample. The task's values (label,
    manifest columns) are stored with the arrays, after the transforms."""
    from hetload.io import ReadError
    from hetload.transforms import sample_rng

    position, rel, path, values, dataset_key = task
    nbytes = 0
    try:
        nbytes = os.path.getsize(check_regular(path))  # a FIFO named *.obj would block forever
        sample = _WORKER["load"](path)
        counts = {k: v.shape[0] for k, v in sample.items() if isinstance(v, np.ndarray) and v.ndim}
        transform = _WORKER["transform"]
        if transform is not None:
            # a generator per input position: random transforms give the same bytes whatever
            # the workers, parts or restarts
            sample = transform(sample, sample_rng(_WORKER["seed"], 0, position))
            if sample is None:
                return position, nbytes, None, None
        sample = cast(dict(sample), _WORKER["casts"])
        for name in values:
            if name in sample:
                raise ValueError(
                    f"the stored value {name!r} (labels / manifest) clashes with the sample's "
                    f"field {name!r}"
                )
        sample.update(values)
        return (
            position,
            nbytes,
            encode_sample(
                sample_key_of(position),
                sample,
                source=rel,
                counts=counts,
                dataset_key=dataset_key,
            ),
            None,
        )
    except Exception as exc:
        if not isinstance(exc, ReadError):
            exc = ReadError(path, f"{type(exc).__name__}: {exc}")
        return position, nbytes, None, exc


def sample_key_of(position: int) -> str:
    return f"{position:09d}"


def ordered(
    tasks: Sequence[Task], workers: int, setup: Setup
) -> Iterator[tuple[int, int, EncodedSample | None, Exception | None]]:
    """Results in task order; at most ``4 * workers`` tasks in flight (bounded memory)."""
    if workers <= 1:
        _init_worker(setup)
        for task in tasks:
            yield _work(task)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(setup,)
    )
    try:
        pending = iter(tasks)
        window = deque(pool.submit(_work, task) for task in islice(pending, 4 * workers))
        while window:
            result = window.popleft().result()
            task = next(pending, None)
            if task is not None:
                window.append(pool.submit(_work, task))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
