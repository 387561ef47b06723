"""ShardStream's batch reads (``reads="batch"``, the default for local shards) against its
sequential reads and against ShardDataset's per-sample path: the same batches, bit for bit,
under every batcher, rank, ``even``, field selection, transform and ``collate_fn``; a damaged
shard loses only the samples it damaged, each named in the report."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_batch_read import assert_same_batch, datasets, same_value, shard_examples
from torch.utils.data import DataLoader

import hetload
from hetload.data import ShardDataset, ShardStream
from hetload.data.substitute import getitems
from hetload.samplers.bucket_sampler import ResumeError
from hetload.shards import ShardIndex
from hetload.shards.writer import write_shards
from hetload.transforms import Transform

#: every test runs with both batch reads (the read_path fixture of conftest.py)
pytestmark = pytest.mark.usefixtures("read_path")


def assert_same_batches(got: list, want: list) -> None:
    assert len(got) == len(want)
    for x, y in zip(got, want):
        if isinstance(y, hetload.HeteroBatch):
            assert isinstance(x, hetload.HeteroBatch)
            assert_same_batch(x, y)
            continue
        assert len(x) == len(y)
        for a, b in zip(x, y):
            assert list(a) == list(b)
            for name in b:
                assert same_value(a[name], b[name]), name


class Jitter(Transform):
    """Seeded noise on verts (a new array: streamed arrays may be read-only)."""

    def apply(self, sample, rng):
        if "verts" in sample:
            sample = {**sample, "verts": sample["verts"] + np.float32(rng.normal())}
        return sample


def listed(samples: list) -> list:
    """A collate_fn other than hetload's: the samples as a list."""
    return list(samples)


def both(root, **kwargs) -> tuple[list | Exception, list | Exception]:
    """The rank's batches (or the ValueError raised) by batch reads and by sequential reads."""
    out: list = []
    for reads in ("batch", "sequential"):
        try:
            out.append(list(ShardStream(root, reads=reads, **kwargs)))
        except ValueError as exc:  # a collate refusing mixed value kinds: both must refuse
            out.append(exc)
    return out[0], out[1]


@shard_examples(25)
@given(data=datasets(), pick=st.data())
def test_batch_reads_serve_what_sequential_reads_serve(tmp_path_factory, data, pick):
    root = tmp_path_factory.mktemp("stream")
    write_shards(data, root, max_count=pick.draw(st.integers(1, 4)))
    shards = len(ShardIndex.load(root).shards)
    world = pick.draw(st.integers(1, min(3, shards)))
    kwargs = {
        "seed": pick.draw(st.integers(0, 3)),
        "shuffle": pick.draw(st.booleans()),
        "rank": pick.draw(st.integers(0, world - 1)),
        "world_size": world,
        "even": pick.draw(st.sampled_from(["exact", "pad", "truncate"])),
        "on_error": "skip",
    }
    if pick.draw(st.booleans()):
        kwargs["batch_size"] = pick.draw(st.integers(1, 5))
    else:
        kwargs["max_tokens"] = pick.draw(st.integers(30, 120))
    names = sorted({name for sample in data for name in sample})
    if pick.draw(st.booleans()) and names:
        kwargs["fields"] = pick.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    kwargs["collate_fn"] = pick.draw(st.sampled_from([hetload.collate, None, listed]))
    if pick.draw(st.booleans()):
        kwargs["transform"] = Jitter()
    got, want = both(root, **kwargs)
    if isinstance(want, Exception):
        assert type(got) is type(want) and str(got) == str(want)
        return
    assert_same_batches(got, want)


def write(root, n: int = 24, seed: int = 0, max_count: int = 6) -> list[dict]:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        nv = int(rng.integers(3, 60))
        samples.append(
            {
                "verts": rng.standard_normal((nv, 3)).astype(np.float32),
                "faces": rng.integers(0, nv, size=(nv, 3)).astype(np.int64),
                "label": i,
            }
        )
    write_shards(samples, root, max_count=max_count)
    return samples


def test_batch_reads_through_workers_and_resume(tmp_path):
    write(tmp_path, n=40)
    kwargs = {"max_tokens": 150, "seed": 3}
    stream = ShardStream(tmp_path, **kwargs)
    alone = [b["label"].tolist() for b in stream]
    loader = DataLoader(ShardStream(tmp_path, **kwargs), batch_size=None, num_workers=2)
    with_workers = [b["label"].tolist() for b in loader]
    # (the plan cuts each worker's batches apart: the same samples, other batches)
    assert sorted(x for b in with_workers for x in b) == sorted(x for b in alone for x in b)
    sequential = DataLoader(
        ShardStream(tmp_path, reads="sequential", **kwargs), batch_size=None, num_workers=2
    )
    assert [b["label"].tolist() for b in sequential] == with_workers
    # resumed after 3 steps: the rest, by batch reads
    state = stream.state_dict(step=3)
    resumed = ShardStream(tmp_path, **kwargs)
    resumed.load_state_dict(state)
    assert [b["label"].tolist() for b in resumed] == alone[3:]


@shard_examples(30)
@given(at=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255), seed=st.integers(0, 5))
def test_a_changed_byte_loses_only_what_it_damaged(tmp_path_factory, at, flip, seed):
    """One byte of a shard changed anywhere: every sample served is what ShardDataset's
    per-sample path reads from the same bytes (changed array data alike: shards carry no
    checksum), and every planned sample is served once or named in the report."""
    root = tmp_path_factory.mktemp("flip")
    write(root, n=12, seed=seed, max_count=4)
    index = ShardIndex.load(root)
    path = root / index.shards[seed % len(index.shards)].url
    blob = bytearray(path.read_bytes())
    blob[int(at * len(blob))] ^= flip
    path.write_bytes(bytes(blob))
    stream = ShardStream(root, batch_size=3, seed=seed, on_error="skip", collate_fn=None)
    batches = list(stream)
    assert len(batches) == stream.num_batches()
    reference = ShardDataset(root, on_error="skip", check=False)
    rows = index.rows("verts")
    # the per-sample path's samples of the same bytes whose rows are the index's (the plan was
    # cut on them); a changed .json may rename "label", so samples are matched by content
    readable = {}
    for j in range(12):
        (want,) = getitems(reference, [j])
        if want is not None and len(want.get("verts", ())) == rows[j]:
            readable[j] = want
    unmatched = dict(readable)
    for batch in batches:
        for sample in batch:
            if sample["is_repeat"]:
                continue
            content = {name: value for name, value in sample.items() if name != "is_repeat"}
            match = [
                j
                for j, want in unmatched.items()
                if list(want) == list(content)
                and all(same_value(content[name], want[name]) for name in want)
            ]
            assert match, "a served sample differs from every per-sample read"
            del unmatched[match[0]]  # each served once
    reported = " ".join(f"{s.source} {s.reason}" for s in stream.report)
    for j in set(range(12)) - (set(readable) - set(unmatched)):
        assert f"{j:09d}" in reported  # a sample not served is named


def test_a_first_batch_without_readable_samples_takes_the_next_readable_one(tmp_path):
    write(tmp_path, n=8, max_count=4)
    index = ShardIndex.load(tmp_path)
    path = tmp_path / index.shards[0].url
    blob = bytearray(path.read_bytes())
    for p in range(4):  # every tar header of shard 0's json members renamed
        at = int(index.shards[0].offset["json"][p]) - 512
        blob[at] ^= 0x20
    path.write_bytes(bytes(blob))
    stream = ShardStream(tmp_path, batch_size=4, shuffle=False, on_error="skip")
    batches = list(stream)
    assert [b["label"].tolist() for b in batches] == [[4], [4, 5, 6, 7]]
    assert batches[0]["is_repeat"].tolist() == [True]
    reasons = [s.reason for s in stream.report]
    assert len(reasons) == 5 and "sample 000000004 stands in" in reasons[-1]
    with pytest.raises(hetload.shards.ShardError, match=r"shard-000000\.tar"):
        list(ShardStream(tmp_path, batch_size=4, shuffle=False))


def test_urls_given_apart_from_the_index_are_the_ones_read(tmp_path):
    samples = write(tmp_path / "a", n=10, max_count=4)
    index = ShardIndex.load(tmp_path / "a")
    copies = tmp_path / "b"
    copies.mkdir()
    urls = []
    for shard in index.shards:
        shutil.copy(tmp_path / "a" / shard.url, copies / shard.url)
        urls.append(str(copies / shard.url))
    for shard in index.shards:  # the index's folder now holds other bytes
        (tmp_path / "a" / shard.url).write_bytes(b"\0" * 10)
    stream = ShardStream(urls, index=index, batch_size=5, shuffle=False)
    batches = list(stream)
    got = [s for b in batches for s in b]
    assert [int(s["label"]) for s in got] == list(range(10))
    for s in got:
        assert s["verts"].numpy().tobytes() == samples[int(s["label"])]["verts"].tobytes()


@pytest.mark.parametrize("reads", ["batch", "sequential"])
def test_a_missing_shard_loses_its_samples_and_is_reported(tmp_path, reads):
    write(tmp_path, n=12, max_count=4)
    index = ShardIndex.load(tmp_path)
    (tmp_path / index.shards[1].url).unlink()
    stream = ShardStream(tmp_path, batch_size=4, shuffle=False, on_error="skip", reads=reads)
    labels = sorted(int(x) for b in stream if not b["is_repeat"].any() for x in b["label"])
    assert labels == [0, 1, 2, 3, 8, 9, 10, 11]
    missing = " ".join(s.reason for s in stream.report if "shard-000001.tar" in s.source)
    assert "4 samples not served (keys 000000004..000000007)" in missing
    assert "cannot open" in missing
    with pytest.raises(hetload.shards.ShardError, match=r"shard-000001\.tar"):
        list(ShardStream(tmp_path, batch_size=4, shuffle=False, reads=reads))


def test_a_shard_of_another_size_is_reported_and_its_good_samples_served(tmp_path):
    """A shard with bytes appended: reported (raised under "raise"); by batch reads each of its
    samples is still checked where the index puts it, so all are served."""
    samples = write(tmp_path, n=8, max_count=4)
    index = ShardIndex.load(tmp_path)
    with open(tmp_path / index.shards[0].url, "ab") as f:
        f.write(b"\0" * 1024)
    stream = ShardStream(tmp_path, batch_size=4, shuffle=False, on_error="skip")
    got = [s for b in stream for s in b]
    assert [int(s["label"]) for s in got] == list(range(8))
    for s in got:
        assert s["verts"].numpy().tobytes() == samples[int(s["label"])]["verts"].tobytes()
    (entry,) = stream.report
    assert "the index says" in entry.reason and "shard-000000.tar" in entry.source
    with pytest.raises(hetload.shards.ShardError, match=r"the index says"):
        list(ShardStream(tmp_path, batch_size=4, shuffle=False))


def test_the_buffer_follows_the_reads_and_the_batcher_is_in_the_fingerprint(tmp_path):
    write(tmp_path, n=8, max_count=4)
    batched = ShardStream(tmp_path, max_tokens=500)
    sequential = ShardStream(tmp_path, max_tokens=500, reads="sequential")
    assert batched.batcher.buffer_size == 32_768 and sequential.batcher.buffer_size == 2048
    assert ShardStream(tmp_path, max_tokens=500, buffer_size=64).batcher.buffer_size == 64
    # a state saved under other batches is refused, not resumed on a different plan
    state = sequential.state_dict(step=1, num_workers=0)
    with pytest.raises(ResumeError, match="batcher"):
        batched.load_state_dict(state)
    ShardStream(tmp_path, max_tokens=500, buffer_size=2048).load_state_dict(state)


def test_the_reads_argument_is_checked(tmp_path):
    write(tmp_path, n=4)
    with pytest.raises(ValueError, match="reads must be one of"):
        ShardStream(tmp_path, batch_size=2, reads="random")


@pytest.mark.parametrize(
    "garbage", [b"{'descr': (((", b"{'descr': '<f4', 'fortran_order': 1, ", b"\x00\xff"]
)
def test_a_damaged_first_npy_header_of_a_shard_is_a_named_error(tmp_path, garbage):
    """Regression: the batch read learns a field's dtype from its first .npy header in a shard;
    numpy's header reader raised tokenize.TokenError (uncaught) on a damaged one. It now parses
    with the per-sample path's parser: the same named ShardError, handled by the policy."""
    write(tmp_path, n=8, max_count=4)
    index = ShardIndex.load(tmp_path)
    path = tmp_path / index.shards[0].url
    blob = bytearray(path.read_bytes())
    at = int(index.shards[0].offset["verts.npy"][0]) + 10  # the header text of sample 0
    blob[at : at + len(garbage)] = garbage
    path.write_bytes(bytes(blob))
    ds = ShardDataset(tmp_path, on_error="skip")
    got = ds.__getitems__([0, 1, 2, 5])
    assert [s is None for s in got] == [True, False, False, False]
    assert "000000000.verts.npy" in ds.report[0].source
    assert "bad .npy header" in ds.report[0].reason
    with pytest.raises(hetload.shards.ShardError, match=r"000000000\.verts\.npy"):
        ShardDataset(tmp_path).__getitems__([0, 1])
    stream = ShardStream(tmp_path, batch_size=4, shuffle=False, on_error="skip")
    assert sorted(int(x) for b in stream for x in b["label"]) == list(range(1, 8))


def test_a_damaged_sample_read_in_a_worker_reaches_the_report(tmp_path):
    write(tmp_path, n=16, max_count=4)
    index = ShardIndex.load(tmp_path)
    path = tmp_path / index.shards[2].url
    blob = bytearray(path.read_bytes())
    blob[int(index.shards[2].offset["verts.npy"][1]) - 512] ^= 0x20  # sample 9's tar name
    path.write_bytes(bytes(blob))
    stream = ShardStream(tmp_path, batch_size=3, on_error="skip")
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    labels = [int(x) for b in loader for x, again in zip(b["label"], b["is_repeat"]) if not again]
    assert sorted(labels) == [k for k in range(16) if k != 9]
    (entry,) = [s for s in stream.report if "000000009" in s.source]
    assert "shard-000002.tar" in entry.source and "the index does not match" in entry.reason
