"""A batch read's index look-ups (hetload.data.batch_index, the positions of read_batch): the
stacked and the column-by-column gathers, and any index the per-sample path takes or refuses,
give what the per-sample path gives."""

from __future__ import annotations

import numpy as np
import pytest
from test_batch_read import assert_same_collate, assert_same_samples, per_sample

from hetload.data import ShardDataset, batch_index
from hetload.data.batch_read import read_batch
from hetload.packed import PackedSamples
from hetload.shards.writer import write_shards

#: every test runs with both batch reads (the read_path fixture of conftest.py)
pytestmark = pytest.mark.usefixtures("read_path")


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    data = []
    for i in range(23):
        n = int(rng.integers(0, 9))
        sample = {"verts": rng.standard_normal((n, 3)).astype(np.float32), "label": i % 4}
        if i % 3:
            sample["faces"] = rng.integers(0, max(n, 1), size=(2 if n else 0, 3)).astype(np.int32)
        data.append(sample)
    write_shards(data, tmp_path, max_count=5)
    return tmp_path


@pytest.mark.parametrize("stacked", [True, False])
def test_both_gathers_read_what_the_per_sample_path_reads(shards, monkeypatch, stacked):
    if not stacked:  # an index too large to stack: gathered column by column
        monkeypatch.setattr(batch_index, "STACK_MAX", 0)
    ds = ShardDataset(shards)
    for indices in ([0, 1, 2], [22, 3, 17, 3, 9, 0], list(range(23))[::-1], [-1, -23, 5]):
        got = read_batch(ds, indices)
        assert isinstance(got, PackedSamples)
        want = per_sample(ds, indices)
        assert_same_samples(got, want)
        assert_same_collate(got, want)
    assert (batch_index._LAYOUTS[ds].stacked is None) != stacked


def test_numpy_integer_indices_read_alike(shards):
    ds = ShardDataset(shards)
    indices = [np.int64(4), np.int32(-2), 7, np.uint8(1)]
    got = read_batch(ds, indices)
    assert isinstance(got, PackedSamples)
    assert_same_samples(got, per_sample(ds, indices))


@pytest.mark.parametrize(
    "indices", [[0, 23], [-24, 1], [True, 1], [1, 2.0], [10**30], [1, "2"], [1, None]]
)
def test_indices_the_per_sample_path_refuses_are_left_to_it(shards, indices):
    ds = ShardDataset(shards)
    assert read_batch(ds, indices) is None
    with pytest.raises((IndexError, TypeError)):
        ds.__getitems__(indices)
