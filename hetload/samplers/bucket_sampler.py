"""``BucketBatchSampler``: size-bucketed batches under a hard budget for map-style datasets."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

from hetload.guards import check_seed
from hetload.samplers.cost import Budget, CostSpec, as_size_table, fingerprint
from hetload.samplers.plan import EpochPlan, base_order, plan_epoch, sort_key, window_reach
from hetload.samplers.repeats import MarkedIndices
from hetload.samplers.resume_state import ResumeError, check_consumed, make_state, read_state
from hetload.samplers.stats import SamplerStats, summarize

__all__ = ["BucketBatchSampler", "ResumeError"]

Oversize = Literal["error", "skip", "alone"]
_OVERSIZE = ("error", "skip", "alone")
_STATE_VERSION = 2
#: a window holds at least this many batches' worth of samples; fewer windows on small data
_MIN_WINDOW_BATCHES = 16


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices whose cost never exceeds ``max_tokens``; fresh every epoch,
    the same number of steps on every rank, resumable.

    >>> sampler = BucketBatchSampler(sizes, max_tokens=524_288)      # doctest: +SKIP
    >>> loader = DataLoader(ds, batch_sampler=sampler, collate_fn=hetload.collate)  # doctest: +SKIP
    >>> for epoch in range(epochs):                                  # doctest: +SKIP
    ...     sampler.set_epoch(epoch)
    ...     for batch in loader: ...

    Each epoch the samples are dealt at random into ``windows`` windows (the samples of sparse
    sizes into fewer), each window is sorted by size and cut greedily into batches that fit,
    and the batches are shuffled (see
    :mod:`hetload.samplers.plan`). All randomness comes from a generator seeded by
    ``(seed, epoch)``: every rank computes the same global plan without communicating and takes
    its own column of it.

    Args:
        sizes: per-sample sizes, metadata only (never ``dataset[i]``): an integer array ``[N]``,
            ``[N, K]`` for ``K`` limits at once (e.g. vertices and faces), or a dict of ``K``
            named ``[N]`` arrays. Viewed, not copied: a memory-mapped array stays on disk.
        max_tokens: the budget: one limit for every column, a sequence of ``K`` limits, or a
            dict keyed like ``sizes``.
        cost: how a batch is charged per column: ``"padded"`` (``count * max``, the padded
            tensor), ``"sum"`` (the packed tensor) or a callable ``cost(count, max, sum)`` on
            int64 arrays that never decreases when an argument grows
            (:class:`~hetload.samplers.cost.Budget`).
        max_batch_size: also at most this many samples per batch.
        shuffle: False gives one global size sort and batches in size order, identical every
            epoch (the least padding; for evaluation).
        seed: the seed shared by all ranks.
        drop_last: how the number of batches is made a multiple of ``num_replicas``: False
            splits the batches with the most samples in two (every sample exactly once), and
            only when even batches of one sample cannot fill whole steps (fewer samples than
            ranks; 6 samples that need 5 batches on 4 ranks) repeats a few single samples,
            counted as ``duplicated``; in such an epoch every batch is a
            :class:`~hetload.samplers.MarkedIndices` that says whether it repeats (wrap the
            dataset in :class:`~hetload.samplers.MarkRepeats` for ``batch["is_repeat"]``); True
            drops
            the batches with the fewest samples (counted as ``dropped``).
        num_replicas, rank: the DDP world; default from ``torch.distributed`` when it is
            initialized, else 1 and 0.
        oversize: a sample whose cost alone exceeds the budget: ``"error"`` refuses the sizes,
            ``"skip"`` leaves it out of every epoch, ``"alone"`` gives it a batch of its own (the
            one way a batch can exceed the budget). Counted in :meth:`stats`.
        windows: how many windows an epoch is dealt into. A pair of samples batched together
            is batched together again in the next epoch with probability about
            ``1 / windows`` where sizes are dense; fewer windows pad less. Reduced on small
            data so that a window holds at least 16 batches.
        spread: where sizes are sparse (heavy tails, small data), a sample is dealt among
            fewer windows, so that dealing widens a batch's size range by at most about a
            factor ``1 + spread`` in cost, but among at least 2 so that no batch returns every
            epoch (:func:`~hetload.samplers.plan.window_reach`). Ties and dense sizes still go
            among all windows. ``None`` deals every sample among all windows (fresher, more
            padding on heavy tails; the sampler before ``spread`` existed). BENCHMARKS.md has
            padding and freshness for both on log-normal and Pareto sizes.

    Iterating yields lists of int indices, ``len(self)`` of them: the batches of this rank for
    the current epoch from where it resumes. Call :meth:`set_epoch` before each epoch.

    **Resuming.** :meth:`state_dict` records ``(seed, epoch, consumed, fingerprint)``; after
    :meth:`load_state_dict` the next iteration yields exactly the batches after the first
    ``consumed`` (computed, not replayed). ``consumed`` must count batches the training loop
    has *used*. A ``DataLoader`` with workers draws batches from the sampler ahead of use
    (``num_workers * prefetch_factor`` of them), so pass the loop's own count::

        for step, batch in enumerate(loader, start=sampler.resume_step):
            train(batch)
            if checkpoint_due:
                save({"sampler": sampler.state_dict(consumed=step + 1), ...})

    Without an argument, ``state_dict()`` counts the batches this sampler has yielded, which is
    the consumed count for a plain loop over the sampler or a ``DataLoader`` with
    ``num_workers=0``. torchdata's ``StatefulDataLoader`` needs nothing more: it calls
    ``state_dict()`` right after drawing each batch's indices and keeps that snapshot until the
    batch is delivered, so ``loader.state_dict()`` / ``loader.load_state_dict()`` resume exactly.

    **Elastic resume.** A state loaded at another ``num_replicas`` (any rank's state: every
    rank is at the same step) resumes the epoch there: the samples of the first ``consumed``
    steps of the saved plan (all ranks) are taken out, and the rest is planned over the new
    world by the same rule (:meth:`plan`), so the epoch still serves every sample exactly once.
    Chained resumes stack: the state keeps each earlier ``[num_replicas, consumed]``.
    """

    def __init__(
        self,
        sizes: np.ndarray | Sequence[int] | Mapping[str, np.ndarray],
        max_tokens: int | Sequence[int] | Mapping[str, int],
        *,
        cost: CostSpec = "padded",
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        oversize: Oversize = "error",
        windows: int = 20,
        spread: float | None = 0.015,
    ) -> None:
        table, columns = as_size_table(sizes)
        self.budget = Budget.build(max_tokens, columns, cost, max_batch_size)
        self.columns = columns
        if oversize not in _OVERSIZE:
            raise ValueError(f"oversize must be one of {_OVERSIZE}, got {oversize!r}")
        if isinstance(windows, bool) or int(windows) != windows or windows < 1:
            raise ValueError(f"windows must be a positive integer, got {windows!r}")
        if spread is not None and (
            isinstance(spread, bool)
            or not isinstance(spread, int | float)
            or not 0 <= spread <= 1e6  # also refuses nan
        ):
            raise ValueError(f"spread must be a number >= 0 or None, got {spread!r}")
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.shuffle = bool(shuffle)
        self.seed = check_seed(seed, "BucketBatchSampler: seed")
        self.drop_last = bool(drop_last)
        self.oversize = oversize
        self._table = table

        over = np.flatnonzero(self.budget.oversize(table))
        if over.size and oversize == "error":
            shown = ", ".join(f"#{i} {table[i].tolist()}" for i in over[:5])
            raise ValueError(
                f"{over.size} of {table.shape[0]} samples exceed max_tokens="
                f"{self.budget.limits.tolist()} alone ({shown}{', ...' if over.size > 5 else ''});"
                ' pass oversize="skip" or "alone", or raise the budget'
            )
        self._oversize = over.astype(np.int64)
        self._base = self._base_order()
        estimated_batches = self.budget.total_load(table, self._base)
        self.n_windows = max(1, min(int(windows), int(estimated_batches // _MIN_WINDOW_BATCHES)))
        self.spread = None if spread is None else float(spread)
        self._reach = self._window_reach()
        self.fingerprint = fingerprint(
            table,
            self.budget.describe(),
            f"oversize={oversize} windows={self.n_windows} spread={self.spread} "
            f"shuffle={self.shuffle} drop_last={self.drop_last}",
        )
        self.epoch = 0
        self._resume_at = 0
        self._yielded = 0
        #: [num_replicas, consumed] of the current epoch's earlier segments (elastic resumes)
        self._history: list[list[int]] = []
        self._cached: tuple[Any, EpochPlan] | None = None

    def _base_order(self) -> np.ndarray:
        """The samples to batch (oversize ones left out), sorted by size, ties by the seed."""
        base = base_order(sort_key(self._table, self.budget), self.seed if self.shuffle else None)
        if self._oversize.size:
            over = np.zeros(self._table.shape[0], dtype=bool)
            over[self._oversize] = True
            base = base[~over[base]]
        return base

    def _window_reach(self) -> np.ndarray | None:
        """Per position of the base order, among how many windows it is dealt (``None``: all)."""
        if self.spread is None or self.n_windows == 1 or not self.shuffle:
            return None
        return window_reach(self._table, self._base, self.budget, self.n_windows, self.spread)

    # -- epochs ---------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch``: its batches are a function of ``(seed, epoch)``.

        Setting the epoch a just-loaded state is in keeps its resume point, so the usual loop
        (``load_state_dict`` once, then ``set_epoch(epoch)`` at the top of every epoch) resumes.
        """
        epoch = check_seed(epoch, "BucketBatchSampler: epoch")
        if epoch != self.epoch:
            self.epoch = epoch
            self._resume_at = 0
            self._yielded = 0
            self._history = []

    def plan(self) -> EpochPlan:
        """The global plan of the current epoch (all ranks), computed once per epoch; after an
        elastic resume, the plan of the samples the earlier world sizes left."""
        key = (self.seed, self.epoch, self.num_replicas, tuple(map(tuple, self._history)))
        if self._cached is None or self._cached[0] != key:
            left = None
            for world, consumed in self._history:
                done = self._plan_on(left, world)
                ids = done.schedule[:consumed].ravel()
                left = np.ones(self._table.shape[0], dtype=bool) if left is None else left
                for b in np.unique(ids).tolist():
                    left[done.batch(b)] = False
            self._cached = (key, self._plan_on(left, self.num_replicas))
        return self._cached[1]

    def _plan_on(self, left: np.ndarray | None, world: int) -> EpochPlan:
        """The epoch's plan over ``world`` ranks of the samples ``left`` marks (all: None)."""
        alone = self._oversize if self.oversize == "alone" else None
        base, reach = self._base, self._reach
        if left is not None:
            kept = left[base]
            base = base[kept]
            reach = None if reach is None else reach[kept]  # each sample keeps its reach
            alone = None if alone is None else alone[left[alone]]
        return plan_epoch(
            self._table,
            base,
            self.budget,
            seed=self.seed,
            epoch=self.epoch,
            world_size=world,
            n_windows=self.n_windows,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            alone=alone,
            reach=reach,
        )

    @property
    def steps_per_epoch(self) -> int:
        """Batches per rank in a whole epoch (the same on every rank)."""
        return int(self.plan().schedule.shape[0])

    @property
    def resume_step(self) -> int:
        """The index in the epoch of the next batch the next iteration yields."""
        return self._resume_at

    def __len__(self) -> int:
        """Batches the next iteration yields on this rank: the epoch's, less those already
        consumed before a resume."""
        return self.steps_per_epoch - self._resume_at

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: nothing below runs until the first batch is asked for. DataLoader
        # creates an iterator it never uses before the one it reads, so the resume point is
        # taken on the first batch and cleared only once the epoch has been yielded to the end.
        plan = self.plan()
        start = self._resume_at
        self._yielded = start
        order, cuts = plan.order, plan.cuts
        repeats = _repeats(plan.schedule)[:, self.rank] if plan.duplicated else None
        for step, b in enumerate(plan.schedule[start:, self.rank].tolist(), start):
            self._yielded += 1
            indices = order[cuts[b] : cuts[b + 1]].tolist()
            yield indices if repeats is None else MarkedIndices(indices, bool(repeats[step]))
        # the history (elastic resumes) stays until set_epoch: a DataLoader drains this
        # generator ahead of the consumer, and a checkpoint taken after that counts its step
        # in the same segment
        self._resume_at = 0

    # -- resume ---------------------------------------------------------------------------

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Where this rank stands: ``consumed`` batches of the current epoch used by the loop
        (default: the number this sampler has yielded; see the class doc for DataLoaders with
        workers)."""
        consumed = self._yielded if consumed is None else consumed
        return make_state(self, check_consumed(consumed, self.steps_per_epoch), _STATE_VERSION)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next iteration yields the remaining batches of
        the saved epoch (at another ``num_replicas``: the remaining samples, planned over this
        world; see the class doc). Refuses (``ResumeError``) other data or configuration."""
        history, saved_world, _ = read_state(
            state,
            fingerprint=self.fingerprint,
            versions=(1, _STATE_VERSION),
            what="other sizes or another budget/configuration",
        )
        if int(state["seed"]) != self.seed:
            self.seed = int(state["seed"])
            self._base = self._base_order()
            self._reach = self._window_reach()
        self.epoch = int(state["epoch"])
        consumed = int(state["consumed"])
        self._history = history
        if saved_world != self.num_replicas:
            # the saved world's plan, to count its steps
            self._history, world_now = history, self.num_replicas
            self.num_replicas = saved_world
            try:
                saved_steps = self.steps_per_epoch
            finally:
                self.num_replicas = world_now
            if not 0 <= consumed <= saved_steps:
                raise ResumeError(
                    f"sampler state has consumed={consumed}, its epoch has {saved_steps}"
                )
            # elastic: the consumed samples leave the plan, the rest is planned over this world
            self._history = history + ([[saved_world, consumed]] if consumed else [])
            consumed = 0
        if not 0 <= consumed <= self.steps_per_epoch:
            raise ResumeError(
                f"sampler state has consumed={consumed}, the epoch has {self.steps_per_epoch}"
            )
        self._resume_at = consumed
        self._yielded = consumed

    # -- diagnostics ----------------------------------------------------------------------

    def stats(self) -> SamplerStats:
        """Diagnostics of the current epoch's plan (all ranks)."""
        oversize = int(self._oversize.size)
        return summarize(
            self.plan(),
            self.budget,
            self.columns,
            epoch=self.epoch,
            oversize=oversize,
            skipped=oversize if self.oversize == "skip" else 0,
        )

    def __repr__(self) -> str:
        cost = self.budget.cost if isinstance(self.budget.cost, str) else "callable"
        return (
            f"BucketBatchSampler(n={self._table.shape[0]}, max_tokens="
            f"{self.budget.limits.tolist()}, cost={cost!r}, windows={self.n_windows}, "
            f"world={self.num_replicas}, rank={self.rank}, epoch={self.epoch})"
        )


def _repeats(schedule: np.ndarray) -> np.ndarray:
    """bool ``[S, W]``: the batch at ``(step, rank)`` was already scheduled earlier (in step
    order, ranks in order within a step): its samples are served a second time."""
    flat = schedule.ravel()
    seen = np.ones(flat.shape[0], dtype=bool)
    seen[np.unique(flat, return_index=True)[1]] = False
    return seen.reshape(schedule.shape)


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    initialized = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if isinstance(num_replicas, bool) or int(num_replicas) != num_replicas or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive integer, got {num_replicas!r}")
    if isinstance(rank, bool) or int(rank) != rank or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an integer in [0, {num_replicas}), got {rank!r}")
    return int(num_replicas), int(rank)
