"""``build_loader`` end to end on shards of a small demo set: every sample once per epoch, the
budget held, fresh batches per epoch, DDP ranks disjoint with equal step counts, worker processes,
stage timings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from hetload import demo
from hetload.config import build_loader
from hetload.data import ShardDataset
from hetload.shards.preprocess import preprocess


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("build")
    demo.generate(root / "demo", n=30, seed=4)
    preprocess(root / "demo", root / "shards", max_count=4, progress=False)
    return root / "shards"


def _fingerprint(verts: torch.Tensor) -> bytes:
    """Identifies a sample by its points (the demo's samples all differ)."""
    return verts.numpy().tobytes()


@pytest.fixture(scope="module")
def reference(shards: Path) -> Counter:
    """Every sample of the shards, read directly (one per entry)."""
    ds = ShardDataset(shards, fields=["verts"])
    return Counter(_fingerprint(torch.from_numpy(ds[i]["verts"])) for i in range(len(ds)))


def _seen(loader) -> tuple[Counter, list[list[int]]]:
    seen, shapes = Counter(), []
    for batch in loader:
        seen.update(_fingerprint(v) for v in batch.verts.unbind())
        shapes.append(batch.verts.lengths.tolist())
    return seen, shapes


def _config(shards: Path, **sampler) -> dict:
    return {
        "dataset": {"type": "ShardDataset", "path": str(shards), "fields": ["verts"]},
        "sampler": {"max_tokens": 40_000, "oversize": "alone", **sampler},
    }


def test_bucketed_epoch_covers_every_sample_under_budget(shards: Path, reference: Counter) -> None:
    loader = build_loader(_config(shards))
    seen, shapes = _seen(loader)
    assert seen == reference
    assert len(shapes) == len(loader)
    for lengths in shapes:
        assert len(lengths) * max(lengths) <= 40_000 or len(lengths) == 1
    loader.set_epoch(0)
    assert _seen(loader)[1] == shapes  # same seed and epoch: the same batches
    loader.set_epoch(1)
    again, other = _seen(loader)
    assert again == reference and other != shapes


def test_fixed_batches_split_across_ranks(shards: Path, reference: Counter) -> None:
    parts = []
    for rank in (0, 1):
        config = _config(shards)
        config["sampler"] = {"type": "fixed", "batch_size": 4, "seed": 3}
        config["distributed"] = {"world_size": 2, "rank": rank}
        loader = build_loader(config)
        seen, shapes = _seen(loader)
        assert all(len(lengths) <= 4 for lengths in shapes)
        parts.append((seen, len(shapes)))
    (first, n0), (second, n1) = parts
    assert n0 == n1
    assert first + second == reference  # 30 samples over 2 ranks: disjoint and covering


def test_workers_give_the_same_batches(shards: Path) -> None:
    plain = _seen(build_loader(_config(shards)))
    workers = _seen(
        build_loader(_config(shards), ["loader.num_workers=2", "loader.prefetch_factor=2"])
    )
    assert workers == plain


def test_stream_ranks_are_disjoint_with_equal_batch_counts(
    shards: Path, reference: Counter
) -> None:
    results = []
    for rank in (0, 1):
        config = {
            "dataset": {"type": "ShardStream", "urls": str(shards), "fields": ["verts"]},
            "sampler": {"max_tokens": 40_000, "buffer_size": 8},
            "distributed": {"world_size": 2, "rank": rank, "even": "truncate"},
        }
        loader = build_loader(config)
        seen, shapes = _seen(loader)
        assert len(shapes) == len(loader)
        results.append((seen, len(shapes)))
    (first, n0), (second, n1) = results
    assert n0 == n1 > 0
    assert not set(first) & set(second)
    assert set(first) | set(second) <= set(reference)


def test_timed_loader_records_stages_and_pads_on_request(shards: Path) -> None:
    loader = build_loader(_config(shards), ["device.pad=[verts]"], timed=True)
    batches = 0
    for batch in loader:
        padded = batch.verts.padded()
        assert padded.shape == (len(batch), batch.verts.max_len, 3)
        assert torch.equal(batch.verts.mask.sum(1), batch.verts.lengths)
        batches += 1
    times = loader.times
    assert times.batches == batches == len(loader)
    assert times.read > 0 and times.collate > 0
    if loader.device.type == "cpu":
        assert times.transfer == 0 and times.pad == 0
    assert repr(loader).startswith("Loader(ShardDataset, batches=")


def test_schema_from_the_config(shards: Path) -> None:
    config = _config(shards)
    config["collate"] = {"schema": {"verts": "meta"}}
    batch = next(iter(build_loader(config)))
    assert isinstance(batch.verts, list) and isinstance(batch.verts[0], np.ndarray)
    config["dataset"]["options"] = {"fields": ["verts"]}
    with pytest.raises(ValueError, match=r"dataset\.options\.fields: set it with dataset\.fields"):
        build_loader(config)


@pytest.mark.parametrize("reads", ["batch", "sequential"])
def test_dataset_reads_reaches_the_stream_only(shards: Path, reference: Counter, reads) -> None:
    from hetload.config import ConfigError

    config = {
        "dataset": {
            "type": "ShardStream",
            "urls": str(shards),
            "fields": ["verts"],
            "reads": reads,
        },
        "sampler": {"max_tokens": 40_000},
    }
    loader = build_loader(config)
    assert loader.dataset.reads == reads
    seen, _ = _seen(loader)
    assert seen == reference  # every sample once, either way
    config["dataset"]["type"] = "ShardDataset"
    config["dataset"]["path"] = config["dataset"].pop("urls")
    with pytest.raises(ConfigError, match=r"dataset\.reads"):
        build_loader(config)
