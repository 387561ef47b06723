"""Exact resume of the training data order: a training loop over a DataLoader with worker
processes, prefetching and ``BucketBatchSampler`` is stopped at a random step (with batches still
in flight in the workers), everything is rebuilt from scratch as after a crash, and the run
resumes from the checkpointed ``state_dict``. The batches seen, bit for bit (random transforms
included), are exactly those of an uninterrupted run.

``tests/test_sampler_resume.py`` checks the sampler's index lists alone (a plain loop, a loader
of indices, StatefulDataLoader); here the whole pipeline runs on real samples, over several
epochs, for each DDP rank, with persistent workers, and through ``build_loader``.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from hetload import collate, demo, transforms
from hetload.config import build_loader
from hetload.data import MeshFolder, ShardDataset
from hetload.samplers import BucketBatchSampler
from hetload.shards.preprocess import preprocess

EPOCHS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    demo.generate(root / "meshes", n=90, seed=7)
    preprocess(root / "meshes", root / "shards", max_count=8, progress=False)
    return root


def digest(batch) -> str:
    """Every byte of every field of the batch (values and offsets of ragged ones)."""
    h = hashlib.sha256()
    for name in sorted(batch.keys()):
        field = batch[name]
        if isinstance(field, list):  # metadata: the samples' keys
            h.update(repr(field).encode())
            continue
        tensors = (field.values, field.offsets) if hasattr(field, "offsets") else (field,)
        for tensor in tensors:
            h.update(name.encode())
            h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class Pipeline:
    """What a training script builds at start-up: the loader and the parts it checkpoints."""

    loader: Any
    sampler: BucketBatchSampler
    set_epoch: Callable[[int], None]


def checkpoint_round_trip(state: dict) -> dict:
    """The checkpoint as it comes back from disk (``torch.save`` / ``torch.load``)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def train(
    build: Callable[[], Pipeline],
    stop_at: tuple[int, int] | None = None,
    resume: dict | None = None,
) -> tuple[list[tuple[int, int, str]], dict | None]:
    """The training loop: ``[(epoch, step, batch digest)]`` seen, and the checkpoint written at
    ``stop_at`` (after which the process 'dies', its prefetched batches lost)."""
    pipe = build()
    first_epoch = 0
    if resume is not None:
        pipe.sampler.load_state_dict(resume["sampler"])
        first_epoch = resume["epoch"]
    seen = []
    for epoch in range(first_epoch, EPOCHS):
        pipe.set_epoch(epoch)
        for step, batch in enumerate(pipe.loader, start=pipe.sampler.resume_step):
            seen.append((epoch, step, digest(batch)))
            if (epoch, step) == stop_at:
                state = {"epoch": epoch, "sampler": pipe.sampler.state_dict(consumed=step + 1)}
                # batches the sampler gave to the workers that the loop never saw
                state["in_flight"] = pipe.sampler.state_dict()["consumed"] - (step + 1)
                return seen, checkpoint_round_trip(state)
    return seen, None


def stop_points(full: list[tuple[int, int, str]], rng: random.Random) -> list[tuple[int, int]]:
    """The first step, the last step of an epoch (resume lands on an epoch boundary), and
    random steps elsewhere."""
    steps = [(e, s) for e, s, _ in full]
    last_of_epoch0 = max(s for e, s in steps if e == 0)
    return [(0, 0), (0, last_of_epoch0), *rng.sample(steps[1:-1], 2)]


def assert_resumes_exactly(build: Callable[[], Pipeline], seed: int) -> int:
    full, _ = train(build)
    for epoch in range(EPOCHS):  # (small data: one window, so epochs differ in order only)
        digests = [d for e, _, d in full if e == epoch]
        assert len(set(digests)) == len(digests) > 4, "batches must be distinguishable"
    resumes, in_flight = 0, 0
    for stop in stop_points(full, random.Random(seed)):
        before, state = train(build, stop_at=stop)
        assert state is not None and before == full[: len(before)]
        in_flight = max(in_flight, state["in_flight"])
        after, _ = train(build, resume=state)
        assert before + after == full, f"resumed after {stop}"
        resumes += 1
    assert in_flight > 0, "no stop had prefetched batches in flight: the test would be too easy"
    return resumes


# ------------------------------------------------------------------------- pipelines
def shard_pipeline(root: Path, *, rank: int = 0, world: int = 1, **loader: Any) -> Pipeline:
    dataset = ShardDataset(root / "shards", fields=["verts"])
    sampler = BucketBatchSampler(
        dataset.sizes, max_tokens=6_000, seed=3, num_replicas=world, rank=rank, oversize="alone"
    )
    dl = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, **loader)
    return Pipeline(dl, sampler, sampler.set_epoch)


def folder_pipeline(root: Path, *, rank: int, world: int, **loader: Any) -> Pipeline:
    """Random transforms: a resumed epoch must draw the same random numbers per sample."""
    dataset = MeshFolder(
        root / "meshes",
        transform=transforms.build(["Center", {"RandomScale": {}}, {"Jitter": {"sigma": 0.02}}]),
        fields=["verts"],
        seed=11,
        index=None,
        progress=False,
    )
    sampler = BucketBatchSampler(
        dataset.sizes, max_tokens=6_000, seed=5, num_replicas=world, rank=rank, oversize="alone"
    )
    dl = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, **loader)

    def set_epoch(epoch: int) -> None:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)

    return Pipeline(dl, sampler, set_epoch)


# ------------------------------------------------------------------------- tests
def test_shards_with_workers_and_prefetching(data):
    resumes = assert_resumes_exactly(
        lambda: shard_pipeline(data, num_workers=2, prefetch_factor=4), seed=1
    )
    assert resumes == 4


@pytest.mark.parametrize("rank", [0, 1])
def test_each_ddp_rank_with_random_transforms_and_persistent_workers(data, rank):
    """Two ranks: each resumes its own column of the global plan; the transforms' random
    draws depend on (seed, epoch, sample) only, so they repeat after the resume."""

    def build():
        return folder_pipeline(
            data, rank=rank, world=2, num_workers=2, prefetch_factor=2, persistent_workers=True
        )

    assert assert_resumes_exactly(build, seed=10 + rank) == 4


def test_build_loader_pipeline(data):
    config = {
        "dataset": {"type": "ShardDataset", "path": str(data / "shards"), "fields": ["verts"]},
        "sampler": {"max_tokens": 6_000, "oversize": "alone", "seed": 9},
        "loader": {"num_workers": 2, "prefetch_factor": 3},
    }

    def build():
        loader = build_loader(config)
        return Pipeline(loader, loader.batch_sampler, loader.set_epoch)

    assert assert_resumes_exactly(build, seed=2) == 4


def test_a_checkpoint_of_other_data_is_refused(data):
    """(At another world size it resumes elastically: tests/test_elastic_resume.py.)"""
    _, state = train(lambda: shard_pipeline(data), stop_at=(0, 1))
    sizes = ShardDataset(data / "shards").sizes
    changed = BucketBatchSampler(sizes[:-1], max_tokens=6_000, seed=3, oversize="alone")
    with pytest.raises(ValueError, match="other sizes"):
        changed.load_state_dict(state["sampler"])
