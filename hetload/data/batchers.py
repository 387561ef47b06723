"""Batchers for :class:`~hetload.data.ShardStream`: how a worker's stream of samples is cut
into batches. A batcher depends only on the sizes and a seed, so the stream's plan can dry-run
it on the sizes the index holds; the built-in ones also dry-run in numpy (``plan_positions``),
which keeps the plan of a large job cheap.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

__all__ = ["Batcher", "check_count", "describe", "fixed_batches", "token_batches"]

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

    def never_fit(self, sizes: np.ndarray) -> np.ndarray:
        """int64 positions of ``sizes`` that no batch can take under ``oversize="error"``
        (the dry run would refuse them); none under ``"skip"`` / ``"alone"`` or a cost of
        one's own (a sample's cost alone is its size under ``"padded"`` and ``"sum"``)."""
        if self.options.get("oversize", "error") != "error":
            return np.zeros(0, dtype=np.int64)
        if self.options.get("cost", "padded") not in ("padded", "sum"):
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.asarray(sizes) > self.max_tokens).astype(np.int64)


def _identity_size(size: int) -> int:
    return size


def fixed_batches(batch_size: int) -> Batcher:
    """A batcher of ``batch_size`` samples per batch (the last one shorter), in stream order."""
    return _Fixed(check_count(batch_size, "batch_size", 1))


def token_batches(max_tokens: int, buffer_size: int = 2048, **options: Any) -> Batcher:
    """:func:`hetload.samplers.stream_batches` (a bounded buffer, sorted and cut under the
    budget) as a :data:`Batcher`; ``options`` are its ``cost``, ``max_batch_size``, ``oversize``.
    """
    batcher = _Tokens(
        check_count(max_tokens, "max_tokens", 1),
        check_count(buffer_size, "buffer_size", 2),
        options,
    )
    batcher._stage(0)  # its options checked now, not when the first epoch is planned
    return batcher


def check_count(value: Any, name: str, least: int, where: str = "") -> int:
    """``value`` as an int of at least ``least``, refused naming ``name`` (after ``where``)
    where it is a bool, a float or a string (``int()`` would cut 1.5 to 1 without a word)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{where}{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def describe(batcher: Batcher, sizes: np.ndarray | None = None) -> str:
    """What a plan's batches depend on in ``batcher`` (part of a stream's resume fingerprint),
    the same text in every process (no object address):

    - the settings of the batchers made here, a function among them (a ``cost``) by its
      qualified name and the batches the batcher cuts from a probe;
    - for another batcher, its qualified name and the batches it cuts from a probe (``sizes``,
      then a fixed spread of sizes from 1 to 2**20), since its settings are not known here: two
      ``functools.partial`` s, lambdas or instances of one class with other settings cut other
      batches, so a state of one is not resumed on the other's plan.
    """
    if isinstance(batcher, _Fixed):
        return repr(batcher)
    if isinstance(batcher, _Tokens):
        options = "".join(f", {k}={_stable(v)}" for k, v in sorted(batcher.options.items()))
        text = f"token_batches({batcher.max_tokens}, buffer_size={batcher.buffer_size}{options})"
        if any(callable(v) for v in batcher.options.values()):
            text += f" cutting {_probe_digest(batcher, sizes)}"
        return text
    return f"{_stable(batcher)} cutting {_probe_digest(batcher, sizes)}"


def _stable(value: Any) -> str:
    """``repr(value)``, a callable by its qualified name (its repr holds its address)."""
    if not callable(value):
        return repr(value)
    kind = value if hasattr(value, "__qualname__") else type(value)
    return f"{getattr(kind, '__module__', '')}.{kind.__qualname__}"


#: the sizes a batcher of its own is probed with besides the data's first ones: 1 to 2**20
_PROBE = np.unique(np.geomspace(1, 2**20, 96).astype(np.int64))
_PROBE_DATA = 256  # of the data's sizes, the first these many


def _probe_digest(batcher: Batcher, sizes: np.ndarray | None) -> str:
    """8 hex digits over the batches ``batcher`` cuts (seed 0) from the data's first sizes and
    from a spread of sizes, each run on its own: an error one raises (a size beyond a budget)
    enters as its message, which names what it refused, without object addresses."""
    head = [] if sizes is None else np.asarray(sizes[:_PROBE_DATA], dtype=np.int64).tolist()
    texts = []
    for table in (head + head[::-1], _PROBE.tolist()):
        try:
            groups = batcher(range(len(table)), table.__getitem__, 0)
            texts.append(repr([list(map(int, group)) for group in groups]))
        except Exception as exc:  # a batcher of the user's: any error it raises
            # (without object addresses, which differ from process to process)
            texts.append(re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(exc).__name__}: {exc}"))
    return f"{zlib.crc32('|'.join(texts).encode()):08x}"
