"""Batchers for :class:`~hetload.data.ShardStream`: how a worker's stream of samples is cut
into batches. A batcher depends only on the sizes and a seed, so the stream's plan can dry-run
it on the sizes the index holds; the built-in ones also dry-run in numpy (``plan_positions``),
which keeps the plan of a large job cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

__all__ = ["Batcher", "describe", "fixed_batches", "token_batches"]

#: ``batcher(items, size_fn, seed) -> iterator of lists of items``; must depend only on the
#: sequence of ``size_fn(item)`` values and ``seed`` (ShardStream dry-runs it on sizes)
Batcher = Callable[[Iterable[Any], Callable[[Any], int], int], Iterator[list[Any]]]


class _Fixed:
    """``batch_size`` samples per batch (the last one shorter), in stream order."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def __call__(self, items: Iterable[Any], size_fn: Callable[[Any], int], seed: int):
        batch: list[Any] = []
        for item in items:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def __repr__(self) -> str:
        return f"fixed_batches({self.batch_size})"

    def plan_positions(self, sizes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The dry run on a stream's sizes, in numpy (what ``__call__`` would cut)."""
        n = sizes.shape[0]
        cuts = np.append(np.arange(0, n, self.batch_size, dtype=np.int64), n) if n else [0]
        return np.arange(n, dtype=np.int64), np.asarray(cuts, dtype=np.int64)


class _Tokens:
    """:func:`hetload.samplers.stream_batches` under ``max_tokens``."""

    def __init__(self, max_tokens: int, buffer_size: int, options: dict[str, Any]) -> None:
        self.max_tokens, self.buffer_size, self.options = max_tokens, buffer_size, options

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in sorted(self.options.items()))
        return f"token_batches({self.max_tokens}, buffer_size={self.buffer_size}{options})"

    def _stage(self, seed: int):
        from hetload.samplers import StreamBucketer

        return StreamBucketer(
            _identity_size, self.max_tokens, buffer_size=self.buffer_size, seed=seed, **self.options
        )

    def __call__(self, items: Iterable[Any], size_fn: Callable[[Any], int], seed: int):
        from hetload.samplers import stream_batches

        return stream_batches(
            items, size_fn, self.max_tokens, buffer_size=self.buffer_size, seed=seed, **self.options
        )

    def plan_positions(self, sizes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The dry run on a stream's sizes, in numpy (the same batches as ``__call__``)."""
        return self._stage(seed).plan_positions(sizes)


def _identity_size(size: int) -> int:
    return size


def fixed_batches(batch_size: int) -> Batcher:
    """A batcher of ``batch_size`` samples per batch (the last one shorter), in stream order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return _Fixed(int(batch_size))


def token_batches(max_tokens: int, buffer_size: int = 2048, **options: Any) -> Batcher:
    """:func:`hetload.samplers.stream_batches` (a bounded buffer, sorted and cut under the
    budget) as a :data:`Batcher`; ``options`` are its ``cost``, ``max_batch_size``, ``oversize``.
    """
    return _Tokens(int(max_tokens), int(buffer_size), dict(options))


def describe(batcher: Batcher) -> str:
    """What a plan's batches depend on in ``batcher`` (part of a stream's resume fingerprint):
    the settings of the batchers made here, the qualified name of another (its own settings are
    its author's to keep)."""
    if isinstance(batcher, (_Fixed, _Tokens)):
        return repr(batcher)
    kind = batcher if callable(batcher) and hasattr(batcher, "__qualname__") else type(batcher)
    return f"{getattr(kind, '__module__', '')}.{kind.__qualname__}"
