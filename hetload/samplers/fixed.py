"""``FixedBatchSampler``: ``batch_size`` samples per batch, split over DDP ranks, resumable.

The batches are those of ``BatchSampler(DistributedSampler(...), batch_size, drop_last)``, the
usual torch pair, bit for bit (same permutation ``torch.randperm`` seeded ``seed + epoch``, same
padding, same interleaving of ranks), with what that pair lacks:

- ``state_dict`` / ``load_state_dict`` for an exact resume mid-epoch (``consumed`` batches of the
  epoch, the same on every rank), and an **elastic** one at another world size;
- the samples repeated to give every rank as many samples (DistributedSampler pads its order with
  its first samples) are marked: the batch's indices are a
  :class:`~hetload.samplers.MarkedIndices` whose ``is_repeat`` is one flag per sample, which
  :class:`~hetload.samplers.MarkRepeats` turns into ``batch["is_repeat"]``.

The resume rule. Rank ``r`` of ``W`` takes the positions ``r, r + W, r + 2W, ...`` of the
epoch's (padded) order and cuts them into batches; so after ``k`` steps on every rank the
positions consumed are exactly the prefix ``[0, k * batch_size * W)``. A resume at the same
world size continues at step ``k`` (the batches an uninterrupted run yields, bit for bit); at
another world size ``W'`` the samples after that prefix (the padding left out) are dealt over
the ``W'`` ranks by the same rule, padded and marked anew. Chains of resumes keep that history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import Sampler

from hetload.guards import check_seed
from hetload.samplers.bucket_sampler import _world
from hetload.samplers.repeats import MarkedIndices
from hetload.samplers.resume_state import ResumeError, check_consumed, make_state, read_state

__all__ = ["FixedBatchSampler"]

_STATE_VERSION = 1


class FixedBatchSampler(Sampler[list[int]]):
    """Lists of ``batch_size`` indices of ``range(n)``, one rank's share, resumable.

    Args:
        n: the dataset's length.
        batch_size: samples per batch (the last one of a rank may be smaller unless
            ``drop_last``).
        shuffle: a fresh permutation every epoch (of ``seed + epoch``); else ``0..n-1``.
        seed: the seed of the permutations.
        drop_last: as DistributedSampler and BatchSampler both take it: drop the tail that does
            not split evenly over the ranks (instead of repeating samples), and a last
            incomplete batch.
        num_replicas, rank: the DDP world (default: ``torch.distributed``'s, else 1 and 0).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = check_seed(seed, "FixedBatchSampler: seed")
        self.drop_last = bool(drop_last)
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.fingerprint = hashlib.sha256(
            f"n={self.n} batch_size={self.batch_size} shuffle={self.shuffle} "
            f"drop_last={self.drop_last}".encode()
        ).hexdigest()[:16]
        self.epoch = 0
        self._resume_at = 0
        self._yielded = 0
        #: [num_replicas, consumed] of the current epoch's earlier segments (elastic resumes)
        self._history: list[list[int]] = []

    # -- the plan -------------------------------------------------------------------------

    def _permutation(self) -> torch.Tensor:
        """int64 ``[n]``: the epoch's order (DistributedSampler's)."""
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g)

    def _deal(self, order: torch.Tensor, world: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positions, repeat)`` of the padded / truncated order over ``world`` ranks:
        int64 ``[total]`` sample ids and bool ``[total]`` (True: a padding repeat)."""
        n = order.numel()
        if self.drop_last and n % world:
            total = (n // world) * world  # DistributedSampler's ceil((n - W) / W) * W
            return order[:total], torch.zeros(total, dtype=torch.bool)
        total = -(-n // world) * world
        pad = total - n
        if pad == 0 or n == 0:
            return order, torch.zeros(n, dtype=torch.bool)
        reps = -(-pad // n)
        filler = order.repeat(reps)[:pad]
        repeat = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(pad, dtype=torch.bool)])
        return torch.cat([order, filler]), repeat

    def _left(self) -> torch.Tensor:
        """The epoch's order less what the earlier segments (other world sizes) consumed."""
        order = self._permutation()
        for world, consumed in self._history:
            dealt, _ = self._deal(order, world)
            kept = dealt.numel() if self.drop_last else order.numel()
            taken = min(consumed * self.batch_size * world, kept)
            order = order[taken:kept]
        return order

    def _rank_share(self, world: int, rank: int) -> tuple[list[int], list[bool]]:
        dealt, repeat = self._deal(self._left(), world)
        return dealt[rank::world].tolist(), repeat[rank::world].tolist()

    def _steps(self, world: int) -> int:
        """Batches per rank, from the counts alone (no permutation drawn): ``_left``'s length,
        then ``_deal``'s share of one rank."""
        left = self.n
        for earlier, consumed in self._history:
            kept = (left // earlier) * earlier if self.drop_last else left
            left = kept - min(consumed * self.batch_size * earlier, kept)
        count = left // world if self.drop_last else -(-left // world)
        if self.drop_last:
            return count // self.batch_size
        return -(-count // self.batch_size)

    # -- the sampler protocol -------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (setting the epoch a just-loaded state is in keeps its resume
        point, as BucketBatchSampler does)."""
        epoch = check_seed(epoch, "FixedBatchSampler: epoch")
        if epoch != self.epoch:
            self.epoch = epoch
            self._resume_at = 0
            self._yielded = 0
            self._history = []

    @property
    def steps_per_epoch(self) -> int:
        """Batches per rank in the (remaining segment of the) epoch, the same on every rank."""
        return self._steps(self.num_replicas)

    @property
    def resume_step(self) -> int:
        """The index in the epoch of the next batch the next iteration yields."""
        return self._resume_at

    def __len__(self) -> int:
        return self.steps_per_epoch - self._resume_at

    def __iter__(self) -> Iterator[list[int]]:
        # a generator: the resume point is read when the first batch is asked for (DataLoader
        # makes an iterator it never reads before the one it does)
        indices, repeat = self._rank_share(self.num_replicas, self.rank)
        start = self._resume_at
        self._yielded = start
        marked = any(repeat)
        for step in range(start, self._steps(self.num_replicas)):
            lo, hi = step * self.batch_size, (step + 1) * self.batch_size
            self._yielded += 1
            batch = indices[lo:hi]
            yield MarkedIndices(batch, repeat[lo:hi]) if marked else batch
        # the history stays until set_epoch: a DataLoader drains this generator ahead of the
        # consumer (workers prefetch), and a checkpoint taken after that must still say which
        # segment its step counts in
        self._resume_at = 0

    # -- resume ---------------------------------------------------------------------------

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """``consumed`` batches of the current epoch used by the loop (default: those yielded)."""
        consumed = self._yielded if consumed is None else consumed
        consumed = check_consumed(consumed, self.steps_per_epoch)
        return make_state(self, consumed, _STATE_VERSION, kind="fixed")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`, at this world size (see the module doc for the rule).

        Raises:
            ResumeError: a state of another sampler kind, dataset length, batch size or flags.
        """
        if not isinstance(state, Mapping) or state.get("kind") != "fixed":
            raise ResumeError("not a FixedBatchSampler state (sampler.type differs?)")
        if "history" not in state:
            raise ResumeError("sampler state is missing ['history']")
        history, saved_world, consumed = read_state(
            state,
            fingerprint=self.fingerprint,
            versions=(_STATE_VERSION,),
            what="another dataset length, batch size or flags",
        )
        self.seed = check_seed(state["seed"], "FixedBatchSampler: seed")
        self.epoch = check_seed(state["epoch"], "FixedBatchSampler: epoch")
        self._history = history
        saved_steps = self._steps(saved_world)
        if consumed > saved_steps:
            raise ResumeError(f"sampler state has consumed={consumed}, its epoch has {saved_steps}")
        if saved_world != self.num_replicas:
            # elastic: the consumed prefix leaves the order, the rest is dealt over this world
            self._history = history + ([[saved_world, consumed]] if consumed else [])
            consumed = 0
        self._resume_at = consumed
        self._yielded = consumed

    def __repr__(self) -> str:
        return (
            f"FixedBatchSampler(n={self.n}, batch_size={self.batch_size}, "
            f"world={self.num_replicas}, rank={self.rank}, epoch={self.epoch})"
        )
