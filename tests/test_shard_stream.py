"""ShardStream: what comes out equals what went in; ranks x workers disjoint, covering, with equal
batch counts; shard order by (seed, epoch); pipe: and fsspec sources; bad shards never hang."""

from __future__ import annotations

import itertools
import re
import shutil

import fsspec
import numpy as np
import pytest
from torch.utils.data import DataLoader

import hetload
from hetload.data import ShardDataset, ShardStream
from hetload.shards import ShardError
from hetload.shards.writer import write_shards


def make_samples(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        nv = int(rng.lognormal(3, 1)) % 400
        out.append(
            {
                "verts": rng.standard_normal((nv, 3)).astype(np.float32),
                "faces": rng.integers(0, max(nv, 1), size=(nv // 2 if nv else 0, 3)),
                "label": i,  # identifies the sample in a batch
            }
        )
    return out


def labels_of(stream: ShardStream, num_workers: int) -> list[list[int]]:
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers)
    return [batch["label"].tolist() for batch in loader]


def test_stream_returns_the_samples_bit_for_bit(tmp_path):
    samples = make_samples(30)
    write_shards(samples, tmp_path, max_count=7)
    stream = ShardStream(tmp_path, batch_size=4, shuffle=False)
    seen = []
    for batch in stream:
        assert isinstance(batch, hetload.HeteroBatch)
        for sample in batch:
            original = samples[int(sample["label"])]
            assert sample["verts"].numpy().tobytes() == original["verts"].tobytes()
            assert sample["faces"].dtype == hetload.collate([original])["faces"].values.dtype
            assert sample["faces"].numpy().tobytes() == original["faces"].tobytes()
            seen.append(int(sample["label"]))
    assert seen == list(range(30))  # shuffle=False, one stream: the index order
    lists = list(ShardStream(tmp_path, batch_size=30, shuffle=False, collate_fn=None))
    # every streamed sample carries its key (the source the writer recorded, here "sample-<i>")
    # and whether it repeats one already served this epoch
    assert [sorted(s) for s in lists[0]] == [sorted([*s, "key", "is_repeat"]) for s in samples]
    assert [s["key"] for s in lists[0]] == [f"sample-{i}" for i in range(30)]
    assert not any(s["is_repeat"] for s in lists[0])


def test_two_ranks_two_workers_disjoint_covering_equal(tmp_path):
    # 8 shards of 5 samples, batches of 5: every stream yields whole shards, so truncation
    # drops nothing and the ranks cover the dataset exactly
    write_shards(make_samples(40, seed=1), tmp_path, max_count=5)
    per_rank = []
    for rank in range(2):
        stream = ShardStream(tmp_path, batch_size=5, rank=rank, world_size=2, seed=3)
        stream.set_epoch(1)
        per_rank.append(labels_of(stream, num_workers=2))
    assert len(per_rank[0]) == len(per_rank[1]) == 4
    flat = [sorted(label for batch in batches for label in batch) for batches in per_rank]
    assert not set(flat[0]) & set(flat[1])
    assert sorted(flat[0] + flat[1]) == list(range(40))


@pytest.mark.parametrize("even", ["exact", "truncate", "pad"])
def test_uneven_shards_still_give_equal_batch_counts(tmp_path, even):
    write_shards(make_samples(37, seed=2), tmp_path, max_count=5)  # 8 shards, the last short
    counts, seen = [], []
    for rank in range(2):
        stream = ShardStream(tmp_path, max_tokens=600, rank=rank, world_size=2, even=even)
        plan = stream.plan(num_workers=2)
        assert sum(plan.counts[0]) != sum(plan.counts[1])  # the ranks' streams differ...
        batches = labels_of(stream, num_workers=2)
        assert len(batches) == stream.num_batches(num_workers=2)
        counts.append(len(batches))
        seen.append([label for batch in batches for label in batch])
    assert counts[0] == counts[1]  # ...what they yield does not
    assert not set(seen[0]) & set(seen[1])  # ranks never share a sample
    if even == "pad":  # every sample at least once, repeats only to pad
        assert set(seen[0]) | set(seen[1]) == set(range(37))
    if even == "exact":  # every sample exactly once (no rank is short of samples here)
        assert sorted(seen[0] + seen[1]) == list(range(37))


def test_token_budget_batches_fit(tmp_path):
    samples = make_samples(50, seed=4)
    write_shards(samples, tmp_path, max_count=10)
    stream = ShardStream(tmp_path, max_tokens=2000, buffer_size=16, even="pad")
    seen = []
    for batch in stream:
        lengths = batch["verts"].lengths
        assert len(batch) * int(lengths.max()) <= 2000  # padded cost within the budget
        seen += batch["label"].tolist()
    assert sorted(seen) == list(range(50))


def test_epochs_reshuffle_shards_deterministically(tmp_path):
    write_shards(make_samples(40, seed=5), tmp_path, max_count=4)
    stream = ShardStream(tmp_path, batch_size=4, seed=11)
    orders = {}
    for epoch in (0, 1, 0):
        stream.set_epoch(epoch)
        orders.setdefault(epoch, []).append([b["label"].tolist() for b in stream])
    assert orders[0][0] == orders[0][1]
    assert orders[0][0] != orders[1][0]
    assert sorted(itertools.chain(*orders[1][0])) == list(range(40))
    # without set_epoch, each new iteration is the next epoch (persistent workers rely on it)
    stream.set_epoch(0)
    assert [b["label"].tolist() for b in stream] == orders[0][0]
    assert [b["label"].tolist() for b in stream] == orders[1][0]
    loader = DataLoader(stream, batch_size=None, num_workers=2, persistent_workers=True)
    stream.set_epoch(0)
    first, second = [[b["label"].tolist() for b in loader] for _ in range(2)]
    assert first != second
    assert sorted(itertools.chain(*first)) == sorted(itertools.chain(*second)) == list(range(40))


def test_pipe_and_fsspec_sources(tmp_path):
    write_shards(make_samples(12, seed=6), tmp_path, max_count=5)
    shards = sorted(tmp_path.glob("shard-*.tar"))
    piped = ShardStream([f"pipe:cat {p}" for p in shards], index=tmp_path, batch_size=12)
    assert sorted(next(iter(piped))["label"].tolist()) == list(range(12))
    braced = ShardStream(
        str(tmp_path / "shard-{000000..000002}.tar"), index=tmp_path, batch_size=12
    )
    assert sorted(next(iter(braced))["label"].tolist()) == list(range(12))

    memory = fsspec.filesystem("memory")
    for path in tmp_path.iterdir():
        memory.pipe(f"/hetload-test/{path.name}", path.read_bytes())
    try:
        remote = ShardStream("memory://hetload-test/index.json", batch_size=12)
        assert sorted(next(iter(remote))["label"].tolist()) == list(range(12))
        ds = ShardDataset("memory://hetload-test/index.json")
        assert ds[7]["verts"].tobytes() == ShardDataset(tmp_path)[7]["verts"].tobytes()
    finally:
        memory.rm("/hetload-test", recursive=True)


def test_bad_shards_raise_or_are_skipped_never_hang(tmp_path):
    write_shards(make_samples(20, seed=7), tmp_path, max_count=5)
    shard = tmp_path / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])  # cut inside a member
    # the shard's size is compared with the index when the shard is opened
    with pytest.raises(
        ShardError, match=r"shard-000001\.tar: is 3000 bytes, the index says \d+: truncated"
    ):
        list(ShardStream(tmp_path, batch_size=2, shuffle=False))
    skipping = ShardStream(tmp_path, batch_size=2, shuffle=False, on_error="skip", even="pad")
    batches = list(skipping)
    assert len(batches) == skipping.num_batches()  # the planned count, every batch non-empty
    assert all(len(b) for b in batches)
    assert skipping.report and all(
        "shard-000001.tar" in s.source or "stands in for it (is_repeat=True)" in s.reason
        for s in skipping.report
    )
    fresh = [
        label
        for b in batches
        for label, again in zip(b["label"].tolist(), b["is_repeat"].tolist())
        if not again
    ]
    assert len(fresh) == len(set(fresh))  # only marked repeats come twice
    assert set(range(5)) | set(range(10, 20)) <= set(fresh)
    # the samples the cut lost are named, by key, in the report
    reasons = " ".join(s.reason for s in skipping.report)
    assert "is 3000 bytes" in reasons
    assert re.search(r"samples not served \(keys 00000000\d\.\.000000009\)", reasons)

    missing = tmp_path / "gone"
    shutil.copytree(tmp_path, missing)
    (missing / "shard-000000.tar").unlink()
    with pytest.raises(ShardError, match=r"shard-000000\.tar: cannot open"):
        list(ShardStream(missing, batch_size=2, shuffle=False))


def test_not_enough_shards_or_no_index_is_a_clear_error(tmp_path):
    write_shards(make_samples(6), tmp_path, max_count=5)  # 2 shards
    with pytest.raises(ValueError, match="2 shards cannot feed 3 ranks"):
        ShardStream(tmp_path, batch_size=2, rank=0, world_size=3).num_batches()
    with pytest.raises(ValueError, match="needs the shard index"):
        ShardStream([str(tmp_path / "shard-000000.tar")], batch_size=2)
    with pytest.raises(ValueError, match="exactly one of"):
        ShardStream(tmp_path, batch_size=2, max_tokens=100)
    with pytest.raises(ValueError, match="both rank and world_size"):
        ShardStream(tmp_path, batch_size=2, rank=1)


def _jittered(stream: ShardStream, num_workers: int) -> dict[int, bytes]:
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers)
    out = {}
    for batch in loader:
        for sample in batch:
            out[int(sample["label"])] = sample["verts"].numpy().tobytes()
    return out


def test_transforms_are_seeded_per_sample_whatever_the_workers(tmp_path):
    from hetload.transforms import Jitter

    samples = make_samples(24)
    write_shards(samples, tmp_path, max_count=6)

    def stream(seed: int) -> ShardStream:
        return ShardStream(tmp_path, batch_size=4, seed=seed, transform=Jitter(0.1, 0.5))

    first = _jittered(stream(0), num_workers=0)
    assert len(first) == 24
    # the same (seed, epoch, sample) gives the same augmentation in any worker layout
    assert _jittered(stream(0), num_workers=2) == first
    moved = [i for i in first if len(samples[i]["verts"])]
    assert all(first[i] != samples[i]["verts"].tobytes() for i in moved)
    other_seed = _jittered(stream(1), num_workers=0)
    assert all(other_seed[i] != first[i] for i in moved)
    next_epoch = stream(0)
    next_epoch.set_epoch(1)
    assert all(_jittered(next_epoch, num_workers=0)[i] != first[i] for i in moved)
