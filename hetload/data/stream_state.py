"""Planning and resuming for :class:`~hetload.data.ShardStream` (a mixin): the plan of each
segment of an epoch (:mod:`hetload.data.stream_plan`), ``stats()``, and ``state_dict()`` /
``load_state_dict()``: where the epoch stands, resumable at the same or another world size and
worker count.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch.utils.data import get_worker_info

from hetload.data.stream_plan import StreamPlan, plan_segment, shard_order, stream_seed
from hetload.guards import check_seed, shown
from hetload.samplers.bucket_sampler import ResumeError

__all__ = ["PlannedStream"]

_STATE_VERSION = 1


class PlannedStream:
    """The planning and resume half of :class:`~hetload.data.ShardStream` (which sets the
    attributes used here: ``urls``, ``seed``, ``epoch``, ``shuffle``, ``even``, ``batcher``,
    ``rank``, ``world_size``, ``fingerprint``, ``_starts``, ``_flat_sizes``, ``_started``,
    ``_plans``, ``_resume``, ``_running``, ``_yielded``)."""

    def num_batches(self, num_workers: int = 0) -> int:
        """Batches this rank yields in the next epoch with ``num_workers`` DataLoader workers
        (after a resume: those left)."""
        return self._mine(num_workers).batches_per_rank() - self.resume_step(num_workers)

    def resume_step(self, num_workers: int = 0) -> int:
        """The step of the epoch's current segment the next iteration starts at (0 unless a
        loaded state continues at this world size and worker count)."""
        epoch = self.epoch + self._started
        _, start, _ = self._resume_for(epoch, max(1, int(num_workers)))
        return start

    def plan(self, num_workers: int = 0, epoch: int | None = None) -> StreamPlan:
        """The plan of ``epoch`` (default: the next one) for every rank and worker, as the next
        iteration runs it (after a loaded state: the segment it resumes in); the same in every
        process."""
        workers = max(1, int(num_workers))
        epoch = self.epoch + self._started if epoch is None else int(epoch)
        history, _, _ = self._resume_for(epoch, workers)
        return self._segment(epoch, history, self.world_size, workers, None)

    def _mine(self, num_workers: int) -> StreamPlan:
        """:meth:`plan` with the sample numbers of this rank's batches only (less memory)."""
        workers = max(1, int(num_workers))
        epoch = self.epoch + self._started
        history, _, _ = self._resume_for(epoch, workers)
        return self._segment(epoch, history, self.world_size, workers, frozenset([self.rank]))

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers recompute the plans they need; a cached plan of every rank's
        # batches is not worth pickling into each of them
        return {**self.__dict__, "_plans": {}}

    def stats(self, num_workers: int = 0) -> dict[str, int]:
        """What the next epoch's plan serves, over all ranks: ``samples`` to serve in the
        segment, ``steps`` per rank, ``repeated`` samples (marked ``is_repeat``), ``dropped``
        samples (``even="truncate"``, or left out by the batcher), ``split`` batches."""
        plan = self._mine(num_workers)
        return {
            "samples": plan.samples,
            "steps": plan.batches_per_rank(),
            "repeated": plan.repeated,
            "dropped": plan.dropped,
            "split": plan.split,
            "segment": plan.segment,
        }

    # -- planning -----------------------------------------------------------------------

    def _segment(
        self,
        epoch: int,
        history: list[list[int]],
        world: int,
        workers: int,
        keep: frozenset[int] | None,
    ) -> StreamPlan:
        """The plan of segment ``len(history)`` of ``epoch`` at ``(world, workers)``, the
        samples consumed by the segments in ``history`` (``[world, workers, steps]`` each)
        taken out."""
        key = (epoch, tuple(map(tuple, history)), world, workers, keep)
        if key not in self._plans:
            mask = self._remaining(epoch, history)
            if len(self._plans) > 8:
                self._plans.clear()
            self._plans[key] = self._make_plan(epoch, len(history), mask, world, workers, keep)
        return self._plans[key]

    def _remaining(self, epoch: int, history: list[list[int]]) -> np.ndarray | None:
        """bool ``[N]`` the samples the segments of ``history`` left, ``None`` for all."""
        if not history:
            return None
        left = np.ones(int(self._starts[-1]), dtype=bool)
        for g, (world, workers, steps) in enumerate(history):
            plan = self._segment(epoch, history[:g], world, workers, None)
            left &= ~plan.consumed(steps, left.shape[0])
        return left

    def _make_plan(
        self,
        epoch: int,
        segment: int,
        mask: np.ndarray | None,
        world: int,
        workers: int,
        keep: frozenset[int] | None,
    ) -> StreamPlan:
        count = len(self.urls)
        if count < world and segment == 0:
            raise ValueError(
                f"ShardStream: {count} shards cannot feed {world} ranks; preprocess with a "
                f"smaller --shard-size or --max-count so there are at least {world} "
                f"(better {world} x num_workers)"
            )
        starts = self._starts

        def remaining(k: int) -> np.ndarray:
            ids = np.arange(starts[k], starts[k + 1], dtype=np.int64)
            return ids if mask is None else ids[mask[starts[k] : starts[k + 1]]]

        return plan_segment(
            order=shard_order(count, self.seed, epoch, segment, self.shuffle).tolist(),
            remaining=remaining,
            sizes=self._flat_sizes,
            world=world,
            workers=workers,
            batcher=self.batcher,
            seed_of=lambda r, w: stream_seed(self.seed, epoch, r, w, segment),
            even=self.even,
            segment=segment,
            keep=keep,
            describe=lambda shards: ", ".join(self.urls[k] for k in shards) or "no shard",
        )

    def _resume_for(
        self, epoch: int, workers: int
    ) -> tuple[list[list[int]], int, dict[str, int] | None]:
        """For an iteration of ``epoch`` with ``workers`` workers: the completed segments, the
        step this segment starts at, and a per-worker start (a ``StatefulDataLoader`` state)."""
        state = self._resume
        if state is None or state["epoch"] != epoch:
            return [], 0, None
        segments = [list(s) for s in state["segments"]]
        world, saved_workers, steps = segments[-1]
        if (world, saved_workers) == (self.world_size, workers):
            return segments[:-1], steps or 0, state.get("worker_state")
        if steps is None:
            raise ResumeError(
                f"this ShardStream state was saved by DataLoader worker "
                f"{state['worker_state']['worker']} of {saved_workers} at world size {world}; "
                f"a per-worker state resumes only there (this run: world size "
                f"{self.world_size}, {workers} workers). Resume elsewhere from the state of "
                "ShardStream.state_dict(step=..., num_workers=...) or Loader.state_dict()"
            )
        return [s for s in segments if s[2]], 0, None

    # -- resume -------------------------------------------------------------------------

    def state_dict(self, step: int | None = None, num_workers: int | None = None) -> dict:
        """Where the epoch stands: plain data (ints, strings, lists) for a checkpoint.

        Args:
            step: batches this rank's training loop has taken in the running epoch (default:
                those this object yielded, right for a loop over the stream itself or a
                ``DataLoader`` with ``num_workers=0``). With DataLoader workers pass the loop's
                count: the workers' prefetched batches are not consumed.
            num_workers: the DataLoader's workers, needed with ``step`` when this process did
                not iterate the stream itself (it then cannot know them).

        Every rank is at the same step, so any rank's state resumes the whole job. Inside a
        DataLoader worker (``StatefulDataLoader`` calls it there) the state is that worker's.
        """
        info = get_worker_info()
        running = self._running
        base = {"version": _STATE_VERSION, "seed": self.seed, "fingerprint": self.fingerprint}
        if info is not None:
            if running is None:  # (StatefulDataLoader asks before the first batch)
                if self._resume is not None:
                    return dict(self._resume)
                running = {"epoch": self.epoch + self._started, "history": [], "plan": info.id}
            segments = [*running["history"], [self.world_size, info.num_workers, None]]
            return {
                **base,
                "epoch": running["epoch"],
                "segments": segments,
                "worker_state": {
                    "worker": info.id,
                    "plan_worker": running["plan"],
                    "yielded": self._yielded,
                },
            }
        if running is not None and num_workers is None:
            epoch, history, workers = running["epoch"], running["history"], running["workers"]
            step = self._yielded if step is None else step
        else:
            if step is None or num_workers is None:
                if running is None and step is None and self._resume is not None:
                    return dict(self._resume)  # loaded and not started: unchanged
                raise ValueError(
                    "ShardStream.state_dict: this process did not iterate the stream (DataLoader "
                    "workers did): pass step= (batches the loop took) and num_workers="
                )
            workers = max(1, int(num_workers))
            epoch = self.epoch + self._started if running is None else running["epoch"]
            history, _, worker_state = self._resume_for(epoch, workers)
            if worker_state is not None:
                raise ValueError("a per-worker state cannot be restated as a step")
        mine = frozenset([self.rank])  # (the steps are the same on every rank)
        total = self._segment(epoch, history, self.world_size, workers, mine).batches_per_rank()
        if isinstance(step, bool) or int(step) != step or not 0 <= step <= total:
            raise ValueError(f"step must be an integer in [0, {total}], got {step!r}")
        return {
            **base,
            "epoch": int(epoch),
            "segments": [*history, [self.world_size, workers, int(step)]],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` (of any rank): the next iteration serves the rest of
        the saved epoch. At the saved world size and worker count it continues the saved plan;
        at another one the samples not yet consumed are planned again (segment ``g + 1``), each
        still served exactly once in the epoch. Refuses (``ResumeError``) other data or
        settings."""
        required = ("version", "seed", "epoch", "segments", "fingerprint")
        missing = [k for k in required if k not in state]
        if missing:
            raise ResumeError(f"ShardStream state is missing {missing}")
        if state["version"] != _STATE_VERSION:
            raise ResumeError(
                f"ShardStream state version {shown(state['version'])} is not {_STATE_VERSION}"
            )
        if state["fingerprint"] != self.fingerprint:
            raise ResumeError(
                "ShardStream state was saved for other shards, sizes or settings (shuffle, even, "
                f"size_field): fingerprint {state['fingerprint']} != {self.fingerprint}"
            )
        segments = state["segments"]
        if not isinstance(segments, (list, tuple)) or not segments:
            raise ResumeError(f"ShardStream state has no segments: {shown(segments)}")
        for i, seg in enumerate(segments):
            # [world >= 1, workers >= 1, steps >= 0]; steps None only in a worker's own state
            last = i == len(segments) - 1
            ok = isinstance(seg, (list, tuple)) and len(seg) == 3
            ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in seg[:2])
            ok = ok and min(seg[:2]) >= 1
            steps = seg[2] if ok else None
            ok = ok and (
                (steps is None and last and "worker_state" in state)
                or (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0)
            )
            if not ok:
                raise ResumeError(f"ShardStream state: bad segment {shown(seg)}")
        self.seed = check_seed(state["seed"], "ShardStream state: seed")
        self.epoch = check_seed(state["epoch"], "ShardStream state: epoch")
        self._started = 0
        self._plans.clear()
        self._resume = {
            key: state[key]
            for key in ("version", "seed", "epoch", "segments", "fingerprint", "worker_state")
            if key in state
        }
        self._resume["segments"] = [list(s) for s in segments]


def fingerprint(counts: list[int], sizes: np.ndarray, settings: str) -> str:
    """A short digest of what a plan depends on besides the seed and epoch."""
    digest = zlib.crc32(np.asarray(counts, dtype=np.int64).tobytes())
    digest = zlib.crc32(np.ascontiguousarray(sizes).tobytes(), digest)
    return f"{len(counts)}:{sizes.shape[0]}:{zlib.crc32(settings.encode(), digest):08x}"
