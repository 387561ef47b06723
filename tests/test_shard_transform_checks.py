"""A transform's output is checked the same way by every dataset that applies one: more rows than
its ``out_size`` states (the sampler budgeted those) or per-point fields left misaligned by a crop
is an error naming the sample, whatever ``on_error`` says. MeshFolder had these checks; the shard
datasets and a config's mapped datasets now share them (hetload.transforms.check_transformed)."""

from __future__ import annotations

import numpy as np
import pytest

from hetload.config.wrappers import Mapped
from hetload.data import ShardDataset, ShardStream
from hetload.shards.writer import write_shards
from hetload.transforms import Jitter, check_transformed


def _clouds(sizes):
    rng = np.random.default_rng(0)
    return [
        {
            "verts": rng.standard_normal((n, 3)).astype(np.float32),
            "labels": np.arange(n, dtype=np.int64),
        }
        for n in sizes
    ]


def triple(sample):
    """Lies: no out_size, yet three times the rows."""
    return {**sample, "verts": np.concatenate([sample["verts"]] * 3)}


def crop_points_only(sample):
    """States its size (half) but leaves the per-point labels at full length."""
    n = len(sample["verts"]) // 2
    return {**sample, "verts": sample["verts"][:n]}


crop_points_only.out_size = lambda n, field: n // 2 if field == "verts" else n  # type: ignore[attr-defined]


def honest_half(sample):
    n = len(sample["verts"]) // 2
    return {**sample, "verts": sample["verts"][:n], "labels": sample["labels"][:n]}


honest_half.out_size = lambda n, field: n // 2  # type: ignore[attr-defined]


@pytest.fixture
def shards(tmp_path):
    write_shards(_clouds([4, 6, 8, 10]), tmp_path, max_count=2)
    return tmp_path


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_shard_dataset_refuses_a_transform_that_overruns_its_size(shards, on_error):
    ds = ShardDataset(shards, transform=triple, on_error=on_error)
    assert ds.sizes.tolist() == [4, 6, 8, 10]  # what the sampler budgets
    with pytest.raises(ValueError, match=r"ShardDataset sample 1 .*18 rows of 'verts'.* at most 6"):
        ds[1]


def test_shard_dataset_refuses_labels_left_behind_by_a_crop(shards):
    ds = ShardDataset(shards, transform=crop_points_only)
    with pytest.raises(ValueError, match=r"ShardDataset sample 2 .*labels"):
        ds[2]


def test_an_honest_transform_passes_everywhere(shards):
    ds = ShardDataset(shards, transform=honest_half)
    assert [len(ds[i]["verts"]) for i in range(4)] == [2, 3, 4, 5] == ds.sizes.tolist()
    stream = ShardStream(shards, batch_size=2, transform=honest_half, shuffle=False)
    got = sorted(len(s["verts"]) for batch in stream for s in batch)
    assert got == [2, 3, 4, 5]
    assert len(ShardDataset(shards, transform=Jitter(0.01))[3]["verts"]) == 10


def test_shard_stream_refuses_a_transform_that_overruns_its_size(shards):
    stream = ShardStream(shards, batch_size=2, transform=triple, shuffle=False)
    with pytest.raises(ValueError, match=r"ShardStream sample .*rows of 'verts'"):
        list(stream)


def test_config_mapped_dataset_refuses_a_misaligning_function(shards):
    mapped = Mapped(ShardDataset(shards), crop_points_only, seed=0)
    with pytest.raises(ValueError, match=r"ShardDataset sample 0.*labels"):
        mapped[0]
    assert len(Mapped(ShardDataset(shards), honest_half, seed=0)[0]["verts"]) == 2


def test_check_transformed_lets_dropped_samples_and_non_dicts_through():
    check_transformed(triple, {"verts": np.zeros((2, 3))}, None, "x")
    check_transformed(triple, None, None, "x")
