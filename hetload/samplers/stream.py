"""Bucketing a stream of samples (an iterable dataset) under the same hard budget.

A stream cannot be sorted as a whole, so samples wait in a bounded buffer. When it holds
``buffer_size`` samples, the buffer is sorted by size and cut greedily into batches that fit
(the cut of :mod:`hetload.samplers.plan`); batches picked at random are emitted, in random order,
until half the buffer has left, and the rest waits for the next arrivals. The batch of the
largest samples is always held back while the stream lasts: it is the only one the cut may have
ended short because the buffer ran out, not because the budget was full. At the end of the
stream everything left is cut and emitted; ``drop_last`` drops that last short batch.

:class:`StreamBucketer` is a WebDataset-style stage, a picklable callable from an iterator of
samples to an iterator of lists of samples::

    pipeline = wds.DataPipeline(..., StreamBucketer(FieldSize("verts"), 524_288, seed=seed),
                                wds.map(hetload.collate))

A larger buffer pads less and mixes more, and holds more samples in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hetload.samplers.cost import Budget, CostSpec
from hetload.samplers.plan import cut_windows, sort_key

__all__ = ["FieldSize", "StreamBucketer", "stream_batches"]

log = logging.getLogger("hetload")
_STREAM = 0x5EED2
_OVERSIZE = ("error", "skip", "alone")


@dataclass(frozen=True)
class FieldSize:
    """``size_fn`` for sample dicts: the number of rows of each named field (``len(x)``).

    ``FieldSize("verts")`` gives one size; ``FieldSize("verts", "faces")`` gives two, for a budget
    with two limits. Picklable, unlike a lambda, so it crosses into DataLoader workers.
    """

    fields: tuple[str, ...]

    def __init__(self, *fields: str) -> None:
        if not fields:
            raise ValueError("FieldSize needs at least one field name")
        object.__setattr__(self, "fields", tuple(fields))

    def __call__(self, sample: Mapping[str, Any]) -> int | tuple[int, ...]:
        sizes = []
        for name in self.fields:
            if name not in sample:
                raise KeyError(f"FieldSize: sample {_name(sample)} has no field {name!r}")
            sizes.append(len(sample[name]))
        return sizes[0] if len(sizes) == 1 else tuple(sizes)


@dataclass
class StreamBucketer:
    """A pipeline stage: ``stage(samples) -> iterator of lists of samples``.

    Args:
        size_fn: ``sample -> int`` (or a tuple of ``K`` ints for ``K`` limits), e.g.
            :class:`FieldSize`.
        max_tokens, cost, max_batch_size: the budget, as for
            :class:`~hetload.samplers.BucketBatchSampler`.
        buffer_size: samples held before a cut (at least 2).
        seed: an int or a sequence of ints (e.g. ``(seed, epoch, worker_id)``); the only source
            of randomness.
        oversize: a sample over the budget alone: ``"error"`` raises ``ValueError`` naming it,
            ``"skip"`` drops it (counted in ``oversize``, logged), ``"alone"`` emits it as a
            batch of one.
        drop_last: drop the stream's final batch when it may be short (see module doc).

    Attributes updated as the stage runs (in the process that runs it): ``samples`` seen,
    ``batches`` emitted, ``oversized`` samples over the budget alone.
    """

    size_fn: Callable[[Any], int | Sequence[int]]
    max_tokens: int | Sequence[int]
    cost: CostSpec = "padded"
    max_batch_size: int | None = None
    buffer_size: int = 2048
    seed: int | Sequence[int] = 0
    oversize: Literal["error", "skip", "alone"] = "error"
    drop_last: bool = False
    samples: int = field(default=0, init=False)
    batches: int = field(default=0, init=False)
    oversized: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.oversize not in _OVERSIZE:
            raise ValueError(f"oversize must be one of {_OVERSIZE}, got {self.oversize!r}")
        if (
            isinstance(self.buffer_size, bool)
            or int(self.buffer_size) != self.buffer_size
            or (self.buffer_size < 2)
        ):
            raise ValueError(f"buffer_size must be an integer >= 2, got {self.buffer_size!r}")
        seed = self.seed if isinstance(self.seed, Sequence) else (self.seed,)
        self._entropy = [_STREAM, *(int(s) for s in seed)]
        k = 1 if np.ndim(self.max_tokens) == 0 else len(self.max_tokens)
        self._budget = Budget.build(
            self.max_tokens, [str(i) for i in range(k)], self.cost, self.max_batch_size
        )
        self._limits = self._budget.limits.tolist()

    def _fits_alone(self, row: tuple[int, ...]) -> bool:
        if isinstance(self.cost, str):
            # one sample costs its own size under "padded" and "sum": no numpy per sample
            return all(s <= limit for s, limit in zip(row, self._limits))
        wide = np.asarray([row], dtype=np.int64)
        return bool(self._budget.fits(np.ones(1, dtype=np.int64), wide, wide)[0])

    def __call__(self, samples: Iterable[Any]) -> Iterator[list[Any]]:
        rng = np.random.default_rng(self._entropy)
        budget = self._budget
        k = budget.limits.shape[0]
        buffer: list[Any] = []
        sizes: list[Sequence[int]] = []
        for sample in samples:
            self.samples += 1
            row = _size_row(self.size_fn(sample), k, sample)
            if not self._fits_alone(row):
                self.oversized += 1
                if self.oversize == "error":
                    raise ValueError(
                        f"sample {_name(sample)} of size {list(row)} exceeds max_tokens="
                        f"{budget.limits.tolist()} alone; pass oversize='skip' or 'alone'"
                    )
                if self.oversize == "alone":
                    self.batches += 1
                    yield [sample]
                else:
                    log.info("stream bucketer skipped oversize sample %s", _name(sample))
                continue
            buffer.append(sample)
            sizes.append(row)
            if len(buffer) >= self.buffer_size:
                for batch in self._flush(buffer, sizes, rng, final=False):
                    self.batches += 1
                    yield batch
        for batch in self._flush(buffer, sizes, rng, final=True):
            self.batches += 1
            yield batch

    def _flush(
        self, buffer: list[Any], sizes: list[Sequence[int]], rng: np.random.Generator, final: bool
    ) -> list[list[Any]]:
        """Cut the buffer; return the batches to emit and keep the rest in ``buffer``/``sizes``
        (modified in place)."""
        n = len(buffer)
        if n == 0:
            return []
        table = np.asarray(sizes, dtype=np.int64).reshape(n, -1)
        groups, kept = self._cut(table, rng, final)
        emit = [[buffer[i] for i in group.tolist()] for group in groups]
        kept_list = kept.tolist()
        buffer[:] = [buffer[i] for i in kept_list]
        sizes[:] = [sizes[i] for i in kept_list]
        return emit

    def _cut(
        self, table: np.ndarray, rng: np.random.Generator, final: bool
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Cut a buffer of sizes ``[n, K]``: the buffer positions of each batch to emit, and
        those that stay (the one rule of both ``__call__`` and :meth:`plan_positions`)."""
        n = table.shape[0]
        order = np.lexsort((rng.random(n), sort_key(table, self._budget)))
        cuts = cut_windows(table[order], np.array([0, n], dtype=np.int64), self._budget)
        n_batches = cuts.shape[0] - 1
        if final:
            chosen = rng.permutation(n_batches - 1 if self.drop_last else n_batches)
        elif n_batches == 1:
            # the whole buffer fits in one batch: emitting it keeps the buffer bounded
            chosen = np.zeros(1, dtype=np.int64)
        else:
            # random batches until half the buffer leaves; the largest (last) one waits
            candidates = rng.permutation(n_batches - 1)
            leaving = np.cumsum(np.diff(cuts)[candidates])
            chosen = candidates[: int(np.searchsorted(leaving, n // 2)) + 1]
        emit = [order[cuts[b] : cuts[b + 1]] for b in chosen.tolist()]
        if final:
            return emit, np.zeros(0, dtype=np.int64)
        stay = np.ones(n_batches, dtype=bool)
        stay[chosen] = False
        kept = [order[cuts[b] : cuts[b + 1]] for b in np.flatnonzero(stay).tolist()]
        return emit, np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)

    def plan_positions(self, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What ``self(samples)`` would cut from samples of these sizes, in numpy: positions
        ``0..n-1`` each batch contiguous (int64), and ``cuts`` (int64 ``[B + 1]``). The same
        random draws in the same order as ``__call__``, so the same batches (a test checks)."""
        k = self._budget.limits.shape[0]
        table = np.asarray(sizes, dtype=np.int64).reshape(len(sizes), -1 if len(sizes) else k)
        n = table.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
        if table.shape[1] != k:
            raise ValueError(f"sizes have {table.shape[1]} columns, the budget {k}")
        rng = np.random.default_rng(self._entropy)
        ones = np.ones(n, dtype=np.int64)
        fits = self._budget.fits(ones, table, table)
        if not fits.all() and self.oversize == "error":
            p = int(np.argmin(fits))
            raise ValueError(
                f"sample #{p} of size {table[p].tolist()} exceeds max_tokens="
                f"{self._budget.limits.tolist()} alone; pass oversize='skip' or 'alone'"
            )
        fit_rank = np.cumsum(fits)  # fitting samples up to and including each position
        out: list[np.ndarray] = []
        buffer = np.zeros(0, dtype=np.int64)
        i = 0
        while i < n:
            need = self.buffer_size - buffer.shape[0]
            # the position where the buffer fills: the need-th fitting sample from i
            before = int(fit_rank[i - 1]) if i else 0
            j = int(np.searchsorted(fit_rank, before + need, side="left")) + 1
            j = min(j, n)
            chunk = np.arange(i, j, dtype=np.int64)
            if self.oversize == "alone":
                out.extend(chunk[~fits[i:j]].reshape(-1, 1))
            buffer = np.concatenate([buffer, chunk[fits[i:j]]])
            i = j
            if buffer.shape[0] >= self.buffer_size:
                groups, kept = self._cut(table[buffer], rng, final=False)
                out.extend(buffer[g] for g in groups)
                buffer = buffer[kept]
        if buffer.shape[0]:
            groups, _ = self._cut(table[buffer], rng, final=True)
            out.extend(buffer[g] for g in groups)
        cuts = np.zeros(len(out) + 1, dtype=np.int64)
        np.cumsum([g.shape[0] for g in out], out=cuts[1:])
        pos = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
        return pos.astype(np.int64, copy=False), cuts


def stream_batches(
    samples: Iterable[Any],
    size_fn: Callable[[Any], int | Sequence[int]],
    max_tokens: int | Sequence[int],
    *,
    buffer_size: int = 2048,
    seed: int | Sequence[int] = 0,
    cost: CostSpec = "padded",
    max_batch_size: int | None = None,
    oversize: Literal["error", "skip", "alone"] = "error",
    drop_last: bool = False,
) -> Iterator[list[Any]]:
    """Batches (lists of samples) from ``samples``, each within ``max_tokens``; see
    :class:`StreamBucketer` for the arguments and the module doc for the rule."""
    stage = StreamBucketer(
        size_fn, max_tokens, cost, max_batch_size, buffer_size, seed, oversize, drop_last
    )
    return stage(samples)


def _size_row(size: int | Sequence[int], k: int, sample: Any) -> tuple[int, ...]:
    if type(size) is int and k == 1 and size >= 0:  # the common case, checked cheaply
        return (size,)
    row = (size,) if np.ndim(size) == 0 else tuple(size)
    if len(row) != k or any(isinstance(s, bool) or not float(s).is_integer() or s < 0 for s in row):
        raise ValueError(
            f"size_fn gave {size!r} for sample {_name(sample)}: expected {k} integer size(s) >= 0"
        )
    return tuple(int(s) for s in row)


def _name(sample: Any) -> str:
    if isinstance(sample, Mapping):
        for key in ("__key__", "path", "name"):
            if key in sample:
                return repr(sample[key])
    return f"<{type(sample).__name__}>"
