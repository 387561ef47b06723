"""ShardStream's large reads of local shards (hetload.data.stream_read): the same members as
WebDataset's tar reader on a good shard; on a damaged one (same size, any byte changed) the
same batches and the same report as the WebDataset-only path."""

from __future__ import annotations

import numpy as np
import pytest

from hetload.data import ShardStream
from hetload.data.stream_read import LocalShard
from hetload.shards.writer import write_shards


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(7)
    data = []
    for i, n in enumerate(rng.integers(0, 120, size=24).tolist()):
        sample = {"verts": rng.standard_normal((n, 3)).astype(np.float32), "label": i % 3}
        if i % 2:
            sample["faces"] = rng.integers(0, max(n, 1), (n // 2, 3)).astype(np.int64)
        data.append(sample)
    write_shards(data, tmp_path, max_count=8)
    return tmp_path


def stream_output(root, reference: bool, monkeypatch):
    """Every sample served (key and member bytes) and the report, with the large reads or
    with WebDataset's reader alone (the reference)."""
    with monkeypatch.context() as patch:
        if reference:
            patch.setattr(ShardStream, "_read_shard", ShardStream._read_tar)
        stream = ShardStream(root, batch_size=5, shuffle=False, collate_fn=None, on_error="skip")
        served = []
        for batch in stream:
            for sample in batch:
                served.append(
                    (
                        sample["key"],
                        sample["verts"].tobytes(),
                        sample.get("faces", np.zeros(0)).tobytes(),
                        sample["label"],
                        sample["is_repeat"],
                    )
                )
        return served, [(e.source, e.reason) for e in stream.report]


def test_local_reads_give_the_tar_readers_members(shards):
    stream = ShardStream(shards, batch_size=5, shuffle=False)
    for k, entry in enumerate(stream.index.shards):
        local = LocalShard(stream.urls[k], entry, chunk=3000)  # several chunks per shard
        fast = [{name: bytes(v) if name != "__key__" else v for name, v in raw.items()}
                for raw in local]  # fmt: skip
        assert local.complete and local.served == entry.nsamples
        slow = [
            {name: v for name, v in raw.items() if not name.startswith("__") or name == "__key__"}
            for raw in stream._read_tar(k)
        ]
        assert fast == slow


@pytest.mark.parametrize("seed", range(12))
def test_a_damaged_shard_is_served_and_reported_as_by_webdataset(shards, seed, monkeypatch):
    rng = np.random.default_rng(seed)
    path = sorted(shards.glob("shard-*.tar"))[int(rng.integers(3))]
    blob = bytearray(path.read_bytes())
    # a tar header byte (name, size, checksum, type) or any byte: the file keeps its size
    if seed % 2:
        where = int(rng.integers(0, len(blob) // 512)) * 512 + int(
            rng.choice([0, 3, 125, 130, 150, 156, 345])
        )
    else:
        where = int(rng.integers(len(blob)))
    blob[where] ^= 1 << int(rng.integers(8))
    path.write_bytes(bytes(blob))
    want = stream_output(shards, True, monkeypatch)
    got = stream_output(shards, False, monkeypatch)
    assert got == want
