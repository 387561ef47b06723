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
import torch
import torch.distributed as dist
from torch.utils.data import get_worker_info

from hetload.data.stream_plan import StreamPlan, exact_totals, steps_of
from hetload.data.stream_segments import EpochPlanner, totals_of
from hetload.guards import check_seed, shown
from hetload.samplers.bucket_sampler import ResumeError

__all__ = ["PlannedStream"]

_STATE_VERSION = 2  # 2: segments carry their steps per rank (the elastic rule needs them)


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

    def share_plan(self, num_workers: int = 0) -> bool:
        """Learn the other ranks' batch counts for the next epoch with one collective.

        Call it on **every rank**, in the main process, after :meth:`set_epoch` and before the
        ``DataLoader`` starts its workers (they inherit what it learned). It dry-runs this
        rank's ``num_workers`` streams and all-gathers ``[batches, served, samples]`` (three
        int64 per rank; ``even="pad"``/``"truncate"`` add one all-reduce of three more), so a
        rank never dry-runs the others'. Iterating the stream in the main process
        (``num_workers=0``) does it by itself. Without it (no process group, a simulated world,
        or a worker whose parent did not call it) every rank's streams are dry-run instead: the
        same plan, ``world_size`` times the work. Returns whether it communicated.
        """
        if get_worker_info() is not None or not self._in_group():
            return False
        workers = max(1, int(num_workers))
        epoch = self.epoch + self._started
        history, _, _ = self._resume_for(epoch, workers)
        planner = self._planner(epoch, history)
        world, g = self.world_size, len(history)
        draft = planner.draft(g, world, workers, self.rank, keep=True)
        summaries = _all_gather(draft.summary())
        if self.even == "exact":
            totals = exact_totals(summaries)
        else:
            steps = steps_of(summaries, self.even)
            mine = planner.evened(draft, steps)
            sums = _all_reduce([mine.repeated, mine.dropped, mine.split])
            totals = totals_of(summaries, steps, [sums])
        key = _key(epoch, history, world, workers)
        shared = self.__dict__.setdefault("_shared", {})
        if len(shared) > 8:
            shared.clear()  # (every rank runs the same calls: the caches stay alike)
        shared[key] = totals
        self._plans[("draft", *key, self.rank)] = draft
        return True

    def _in_group(self) -> bool:
        """A process group of this stream's ranks is initialised (else no collective)."""
        return (
            self.world_size > 1
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() == self.world_size
            and dist.get_rank() == self.rank
        )

    def _share_once(self, workers: int) -> None:
        """``share_plan`` at the start of an iteration in the main process, unless done."""
        epoch = self.epoch + self._started
        history, _, _ = self._resume_for(epoch, workers)
        key = _key(epoch, history, self.world_size, workers)
        if key not in self.__dict__.get("_shared", {}):
            self.share_plan(workers)

    def _planner(self, epoch: int, history: list[list[int]]) -> EpochPlanner:
        key = ("planner", epoch, tuple(map(tuple, history)))
        if key not in self._plans:
            self._plans[key] = EpochPlanner(
                starts=self._starts,
                sizes=self._flat_sizes,
                batcher=self.batcher,
                seed=self.seed,
                epoch=epoch,
                shuffle=self.shuffle,
                even=self.even,
                history=history,
                describe=lambda shards: ", ".join(self.urls[k] for k in shards) or "no shard",
            )
        return self._plans[key]

    def _segment(
        self,
        epoch: int,
        history: list[list[int]],
        world: int,
        workers: int,
        keep: frozenset[int] | None,
    ) -> StreamPlan:
        """The plan of segment ``len(history)`` of ``epoch`` at ``(world, workers)`` for the
        ranks in ``keep`` (``None``: all), after the segments in ``history``
        (``[world, workers, steps, steps per rank]`` each)."""
        base = _key(epoch, history, world, workers)
        key = ("plan", *base, keep)
        if key in self._plans:
            return self._plans[key]
        count, g = len(self.urls), len(history)
        if count < world and g == 0:
            raise ValueError(
                f"ShardStream: {count} shards cannot feed {world} ranks; preprocess with a "
                f"smaller --shard-size or --max-count so there are at least {world} "
                f"(better {world} x num_workers)"
            )
        if len(self._plans) > 12:
            self._plans.clear()
        planner = self._planner(epoch, history)
        totals = self.__dict__.get("_shared", {}).get(base)
        if totals is None or keep is None:
            totals, drafts = planner.totals(world, workers, keep)
        else:
            drafts = {
                r: self._plans.pop(("draft", *base, r), None)
                or planner.draft(g, world, workers, r, keep=True)
                for r in sorted(keep)
            }
        empty: list = [[] for _ in range(world)]
        shards, counts, quota, streams = (list(empty) for _ in range(4))
        for r, draft in drafts.items():
            evened = planner.evened(draft, totals.steps)
            shards[r], quota[r], streams[r] = evened.shards, evened.quota, evened.streams
            counts[r] = [int(cuts.shape[0]) - 1 for _, _, cuts in draft.raw]
        plan = StreamPlan(
            shards,
            counts,
            quota,
            streams,
            totals.steps,
            g,
            totals.samples,
            totals.repeated,
            totals.dropped,
            totals.split,
        )
        self._plans[key] = plan
        return plan

    def _resume_for(
        self, epoch: int, workers: int
    ) -> tuple[list[list[int]], int, dict[str, int] | None]:
        """For an iteration of ``epoch`` with ``workers`` workers: the completed segments, the
        step this segment starts at, and a per-worker start (a ``StatefulDataLoader`` state)."""
        state = self._resume
        if state is None or state["epoch"] != epoch:
            return [], 0, None
        segments = [list(s) for s in state["segments"]]
        world, saved_workers, steps, _ = segments[-1]
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
                epoch = self.epoch + self._started
                mine = self._segment(epoch, [], self.world_size, info.num_workers, None)
                running = {"epoch": epoch, "history": [], "plan": info.id, "steps": mine.steps}
            last = [self.world_size, info.num_workers, None, running["steps"]]
            segments = [*running["history"], last]
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
            "segments": [*history, [self.world_size, workers, int(step), total]],
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
            what = _differs(state["fingerprint"], self.fingerprint)
            raise ResumeError(
                f"ShardStream state was saved for {what}: fingerprint "
                f"{shown(state['fingerprint'])} != {self.fingerprint}"
            )
        segments = state["segments"]
        if not isinstance(segments, (list, tuple)) or not segments:
            raise ResumeError(f"ShardStream state has no segments: {shown(segments)}")
        for i, seg in enumerate(segments):
            # [world >= 1, workers >= 1, steps, steps per rank >= steps]; steps None only in
            # a worker's own state
            last = i == len(segments) - 1
            ok = isinstance(seg, (list, tuple)) and len(seg) == 4
            ok = ok and all(_is_int(v) for v in (seg[0], seg[1], seg[3])) and min(seg[:2]) >= 1
            steps = seg[2] if ok else None
            ok = ok and (
                (steps is None and last and "worker_state" in state and seg[3] >= 0)
                or (_is_int(steps) and 0 <= steps <= seg[3])
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


def fingerprint(counts: list[int], sizes: np.ndarray, settings: str, index: Any = None) -> str:
    """A short digest of what a plan depends on besides the seed and epoch:
    ``"S:N:<data>:<plan>"``, ``data`` a digest of the shards the ``index`` describes (see
    :func:`index_digest`), ``plan`` one of the per-shard counts, the sizes and ``settings``."""
    digest = zlib.crc32(np.asarray(counts, dtype=np.int64).tobytes())
    digest = zlib.crc32(np.ascontiguousarray(sizes).tobytes(), digest)
    data = "" if index is None else f"{index_digest(index)}:"
    return f"{len(counts)}:{sizes.shape[0]}:{data}{zlib.crc32(settings.encode(), digest):08x}"


def index_digest(index: Any) -> str:
    """8 hex digits over what the index says of each shard's bytes: its byte size and sha256,
    and every sample's key, in index order. Two datasets of the same counts and sizes (point
    clouds of a fixed size) or one index with its shards reordered differ here, so a state of
    one is not resumed on the other's samples; shards moved elsewhere (the same index, other
    URLs) do not."""
    heads = "\n".join(
        f"{nsamples} {filesize} {sha256}" for _, nsamples, filesize, sha256 in index.heads()
    )
    digest = zlib.crc32(heads.encode())
    columns = index.columns
    digest = zlib.crc32(np.ascontiguousarray(columns.key_offsets, dtype=np.int64).tobytes(), digest)
    digest = zlib.crc32(np.ascontiguousarray(columns.key_blob).tobytes(), digest)
    return f"{digest:08x}"


def _differs(saved: Any, mine: str) -> str:
    """What differs between a saved fingerprint and this stream's, in words."""
    ours = mine.split(":")
    theirs = saved.split(":") if isinstance(saved, str) else []
    if len(theirs) == len(ours) == 4:
        if theirs[:3] != ours[:3]:
            return (
                "other shards (their count, sample keys, byte sizes or sha256 in the index: "
                "other data, or shards rebuilt, replaced or reordered)"
            )
        return "other sizes or settings (shuffle, even, size_field, transform sizes, batcher)"
    return "other shards, sizes or settings (shuffle, even, size_field, batcher)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _key(epoch: int, history: list[list[int]], world: int, workers: int) -> tuple:
    return (epoch, tuple(map(tuple, history)), world, workers)


def _device() -> torch.device:
    """Where the collectives' tensors live: NCCL needs them on this rank's GPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather(values: list[int]) -> np.ndarray:
    """int64 ``[W, len(values)]``: every rank's ``values``, by rank."""
    mine = torch.tensor(values, dtype=torch.int64, device=_device())
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(out, mine)
    return torch.stack(out).cpu().numpy()


def _all_reduce(values: list[int]) -> list[int]:
    """``values`` summed over the ranks."""
    total = torch.tensor(values, dtype=torch.int64, device=_device())
    dist.all_reduce(total)
    return total.cpu().tolist()
