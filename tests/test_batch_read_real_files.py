"""The batch read over shards of real files (``../shared/data``, written by other tools): every
batch equals the per-sample path and its plain collate, bit for bit, with both reads."""

from __future__ import annotations

import numpy as np
import pytest
from test_batch_read import assert_same_collate, assert_same_samples

from hetload.data import ShardDataset, batch_read
from hetload.data.substitute import getitems
from hetload.ops.library import has_kernel
from hetload.packed import PackedSamples
from hetload.shards.preprocess import preprocess


@pytest.fixture(scope="module")
def real_shards(shared_meshes, tmp_path_factory):
    dst = tmp_path_factory.mktemp("real-shards")
    # small shards: batches cross shard boundaries; unreadable files are skipped and recorded
    preprocess(shared_meshes, dst, shard_size="2MB", on_error="skip", progress=False)
    return dst


@pytest.mark.parametrize("path", ["compiled", "python"])
def test_real_file_batches_equal_the_per_sample_path(real_shards, path, monkeypatch):
    if path == "compiled" and not has_kernel("read_members_", "CPU"):
        pytest.skip("the compiled extension is not built")
    if path == "python":
        monkeypatch.setattr(batch_read, "_compiled", lambda: False)
    ds = ShardDataset(real_shards)
    assert len(ds) > 20
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ds)).tolist()
    packed = 0
    for start in range(0, len(order), 7):
        indices = order[start : start + 7]
        got = ds.__getitems__(indices)
        want = getitems(ds, indices)
        packed += isinstance(got, PackedSamples)
        assert_same_samples(list(got), want)
        # fields the default schema cannot batch together: the same refusal
        if assert_same_collate(got, want):
            assert_same_samples(list(got), want)  # items after collate: the stored indices
    assert packed >= len(order) // 7 // 2, packed  # the fast path served most real batches
