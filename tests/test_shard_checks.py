"""Shards against their index: a malformed ``index.json`` is refused on load naming the file,
the entry and the column; ``ShardStream`` compares every shard it opens with the index (size,
sample keys, member names and sizes, sample count) and applies ``on_error``, so no sample is
served twice or lost without a report; field names that would not come back are refused when
written."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetload.data import ShardDataset, ShardStream
from hetload.shards import ShardError, ShardIndex
from hetload.shards.format import check_field_name
from hetload.shards.preprocess import preprocess
from hetload.shards.writer import write_shards


def _samples(n: int, seed: int = 0, offset: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "verts": rng.standard_normal((int(rng.integers(1, 60)), 3)).astype(np.float32),
            "label": offset + i,  # identifies the sample
        }
        for i in range(n)
    ]


@pytest.fixture
def shards(tmp_path) -> Path:
    """20 samples in 4 shards of 5."""
    write_shards(_samples(20), tmp_path, max_count=5)
    return tmp_path


def _labels(batches) -> Counter:
    return Counter(int(label) for batch in batches for label in batch["label"].tolist())


# ------------------------------------------------------------------ index.json validated on load
def _set(path: list, value):
    def mutate(index: dict) -> None:
        target = index
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


def _end_at_start(index: dict) -> None:
    entry = index["shardlist"][0]
    entry["end"][1] = entry["start"][1]


def _first(key: str):
    return ["shardlist", 0, key]


MALFORMED = [
    # (mutation, the words the error must contain)
    (_set(["shardlist", 0], 5), r"shardlist entry 0 is not a mapping"),
    (_set(_first("url"), 7), r"shardlist entry 0: 'url' must be a non-empty string"),
    (_set(_first("nsamples"), 5.0), r"entry 0: 'nsamples' must be a non-negative int, got 5\.0"),
    (_set(_first("nsamples"), "5"), r"entry 0: 'nsamples' must be a non-negative int, got '5'"),
    (_set(_first("nsamples"), -1), r"'nsamples' must be a non-negative int"),
    (_set(_first("nsamples"), True), r"'nsamples' must be a non-negative int"),
    (_set(_first("filesize"), "7"), r"'filesize' must be an int >= -1"),
    (_set(["shardlist", 0, "start", 1], 1536.0), r"column 'start' entry 1 is not an int: 1536\.0"),
    (_set(["shardlist", 0, "start", 1], None), r"column 'start' entry 1 is not an int: None"),
    (_set(["shardlist", 0, "end", 4], 2**70), r"column 'end' entry 4 is out of range"),
    (_set(["shardlist", 0, "start", 0], -3), r"column 'start' entry 0 is out of range: -3"),
    (_end_at_start, r"sample 1: 'end' \d+ is not after 'start' \d+"),
    (_set(["shardlist", 0, "start", 2], 600), r"sample 2 starts at 600, before sample 1 ends"),
    (_set(_first("filesize"), 1024), r"the last sample ends at byte \d+, past 'filesize' 1024"),
    (
        _set(["shardlist", 0, "members", "verts.npy", "offset", 0], 10**6),
        r"members\.verts\.npy of sample 0: offset 1000000, size \d+ do not lie inside",
    ),
    (
        _set(["shardlist", 0, "members", "verts.npy", "size", 1], -1),
        r"members\.verts\.npy of sample 1: offset \d+, size -1 do not lie inside",
    ),
    (_set(["shardlist", 0, "members", "json", "offset", 3], -1), r"sample 3 has no \.json member"),
    (_set(["shardlist", 0, "members", "bad"], {}), r"member suffix 'bad' is neither"),
    (_set(_first("members"), []), r"'members' and 'rows' must be mappings"),
    (_set(["shardlist", 0, "rows", "verts", 0], -5), r"column 'rows\.verts' entry 0 is out of"),
    (_set(["shardlist", 0, "rows", "verts", 0], -1), r"rows\.verts of sample 0 disagrees"),
    (_set(["shardlist", 0, "rows", "normals"], [1] * 5), r"rows of 'normals', a field without"),
    (_set(["shardlist", 0, "keys", 0], 5), r"'keys' entry 0 is not a valid sample key: 5"),
    (_set(["shardlist", 0, "keys", 0], "a.b"), r"'keys' entry 0 is not a valid sample key"),
    (_set(["shardlist", 0, "keys", 1], "000000000"), r"key '000000000' is listed twice"),
    (_set(["shardlist", 1, "keys", 0], "000000000"), r"key 000000000 is also in shard"),
    (_set(["hetload"], [1, 2]), r"'hetload' must be a mapping"),
    (_set(["name"], ["x"] * 10), r"'name' must be a string"),
]


@pytest.mark.parametrize("on_error", ["raise", "skip", "warn"])
@pytest.mark.parametrize("mutate, expected", MALFORMED)
def test_malformed_index_entries_are_refused_naming_file_and_entry(
    shards, mutate, expected, on_error
):
    index = json.loads((shards / "index.json").read_text())
    mutate(index)
    (shards / "index.json").write_text(json.dumps(index))
    # an index is the plan of every rank: it is refused whatever on_error says
    for make in (
        lambda: ShardDataset(shards, on_error=on_error),
        lambda: ShardStream(shards, batch_size=2, on_error=on_error),
    ):
        with pytest.raises(ValueError, match=expected) as info:
            make()
        assert str(shards / "index.json") in str(info.value)
        assert len(str(info.value)) < 400  # values are shown cut short


def test_an_index_listing_a_shard_twice_is_refused(shards):
    index = json.loads((shards / "index.json").read_text())
    again = dict(index["shardlist"][2], url="./" + index["shardlist"][2]["url"])
    index["shardlist"].append(again)
    (shards / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardError, match=r"entries 2 and 4 list the same shard"):
        ShardIndex.load(shards)
    with pytest.raises(ShardError, match=r"entries 2 and 4 list the same shard"):
        ShardStream(shards, batch_size=2, on_error="skip")


def test_huge_entry_is_shown_bounded(shards):
    index = json.loads((shards / "index.json").read_text())
    index["shardlist"][0] = ["x" * 1000] * 1000
    (shards / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="not a mapping") as info:
        ShardIndex.load(shards)
    assert len(str(info.value)) < 300


# ------------------------------------------------------------------ ShardStream sizing
def test_stream_without_its_size_field_sizes_from_the_index(shards):
    """Regression: with ``fields`` lacking ``verts`` every sample was sized 0 at run time, the
    budget ignored and each sample delivered 9 times per epoch with an empty report."""
    index = ShardIndex.load(shards)
    sizes = dict(zip(range(20), index.rows("verts").tolist()))
    stream = ShardStream(shards, max_tokens=120, fields=["label"], seed=1)
    batches = list(stream)
    assert len(batches) == stream.num_batches()
    assert _labels(batches) == Counter(range(20))  # each sample exactly once
    for batch in batches:
        labels = batch["label"].tolist()
        assert len(labels) * max(sizes[label] for label in labels) <= 120  # the budget held
    assert stream.report == []


def test_a_size_field_the_index_lacks_is_refused(shards):
    with pytest.raises(ValueError, match=r"size_field 'normals' is not a field of the index"):
        ShardStream(shards, max_tokens=100, size_field="normals")


# ------------------------------------------------------------------ shards checked when opened
def _replace_shard(shards: Path, tmp_path_factory, count: int = 5) -> None:
    """Shard 1 replaced by another valid shard of the same byte size and other keys."""
    other = tmp_path_factory.mktemp("other")
    samples = _samples(20, seed=0)
    # same arrays in the other order: the same byte size, keys 0-4 in shard 1's place
    write_shards(samples[5:10] + samples[:5] + samples[10:], other, max_count=count)
    shutil.copy(other / "shard-000000.tar", shards / "shard-000001.tar")


@pytest.mark.parametrize("reads", ["batch", "sequential"])
def test_replaced_shard_is_an_error_under_raise(shards, tmp_path_factory, reads):
    """Regression: a shard replaced by another valid one gave 6 samples twice and lost 6, with
    no error even under on_error="raise"."""
    _replace_shard(shards, tmp_path_factory)
    assert (
        os.path.getsize(shards / "shard-000001.tar") == ShardIndex.load(shards).shards[1].filesize
    )
    expected = {
        # a batch read finds the member named by the index replaced by another
        "batch": r"shard-000001\.tar, member 000000005\.\S+: the tar header at byte \d+ holds "
        r"member '000000000\.\S+' of \d+ bytes: the index does not match this shard",
        # the sequential read walks the tar and meets another key
        "sequential": r"shard-000001\.tar: does not match the index at sample 0",
    }
    with pytest.raises(ShardError, match=expected[reads]):
        list(ShardStream(shards, batch_size=2, shuffle=False, reads=reads))


@pytest.mark.parametrize("reads", ["batch", "sequential"])
def test_replaced_shard_under_skip_serves_no_sample_twice_and_reports_the_lost(
    shards, tmp_path_factory, reads
):
    _replace_shard(shards, tmp_path_factory)
    stream = ShardStream(shards, batch_size=5, shuffle=False, on_error="skip", reads=reads)
    batches = list(stream)
    assert len(batches) == stream.num_batches() == 4  # the planned count: ranks step equally
    fresh = Counter(
        int(label)
        for batch in batches
        for label, again in zip(batch["label"].tolist(), batch["is_repeat"].tolist())
        if not again
    )
    assert max(fresh.values()) == 1  # nothing twice from the shards
    assert set(fresh) == set(range(20)) - set(range(5, 10))  # shard 1's are not served
    # shard 1's batch had no readable sample: the last sample served stands in, marked
    assert batches[1]["label"].tolist() == [4] and batches[1]["is_repeat"].tolist() == [True]
    *entries, substitute = stream.report
    assert "batch 1 of its plan has no readable sample" in substitute.reason
    assert "sample 000000004 stands in" in substitute.reason  # ...is in the report
    assert all("shard-000001.tar" in entry.source for entry in entries)
    if reads == "sequential":  # the walk stops at the first difference: the rest, in one entry
        (entry,) = entries
        assert "key '000000000' where the index has 000000005" in entry.reason
        assert "5 samples not served (keys 000000005..000000009)" in entry.reason
    else:  # each sample located by the index and checked on its own: one entry each
        assert [entry.source.rsplit(":", 1)[-1][:9] for entry in entries] == [
            f"{k:09d}" for k in range(5, 10)
        ]
        assert all("the index does not match this shard" in entry.reason for entry in entries)


@pytest.mark.parametrize("reads", ["batch", "sequential"])
def test_shard_with_a_missing_or_resized_member_is_caught(shards, reads):
    """Members are compared with the index per sample: a shard rewritten without one field of
    one sample (the same byte size: tar pads to 10 KiB records) loses that sample and those the
    change moved, each reported (the sequential read: the rest of the shard, in one entry)."""
    path = shards / "shard-000002.tar"
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    rewritten = shards / "rewritten.tar"
    with tarfile.open(rewritten, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member, data in members:
            if member.name == "000000012.verts.npy":
                continue  # one field dropped from sample 12
            tar.addfile(member, io.BytesIO(data))
    os.replace(rewritten, path)
    assert os.path.getsize(path) == ShardIndex.load(shards).shards[2].filesize
    stream = ShardStream(shards, batch_size=5, shuffle=False, on_error="skip", reads=reads)
    seen = _labels(stream)  # 17 samples, 4 batches of at most 5: no repeat needed
    assert set(seen) == set(range(20)) - {12, 13, 14} and max(seen.values()) == 1
    reasons = " ".join(s.reason for s in stream.report)
    if reads == "sequential":
        assert (
            "sample 000000012 has members ['json'], the index lists ['json', 'verts.npy']"
            in reasons
        )
    else:
        sources = [s.source for s in stream.report]
        assert [source.rsplit(":", 1)[-1][:9] for source in sources] == [
            "000000012",
            "000000013",
            "000000014",
        ]
        assert reasons.count("the index does not match this shard") == 3
    with pytest.raises(ShardError, match=r"shard-000002\.tar"):
        list(ShardStream(shards, batch_size=5, shuffle=False, reads=reads))


def test_shard_cut_short_reports_every_sample_it_lost(shards):
    path = shards / "shard-000003.tar"
    path.write_bytes(path.read_bytes()[:2560])  # ~1 sample left
    stream = ShardStream(shards, batch_size=5, shuffle=False, on_error="skip")
    seen = _labels(stream)
    lost = set(range(15, 20)) - set(seen)
    assert lost and max(seen.values()) == 1
    reasons = " ".join(s.reason for s in stream.report)
    assert "is 2560 bytes, the index says" in reasons
    first = min(lost)
    assert f"not served (keys {first:09d}..000000019)" in reasons


def test_rows_that_differ_from_the_index_are_caught(shards):
    """A sample whose array has other rows than the index says (the plan was cut on them)."""
    index = json.loads((shards / "index.json").read_text())
    index["shardlist"][0]["rows"]["verts"][2] += 1
    (shards / "index.json").write_text(json.dumps(index))
    stream = ShardStream(shards, batch_size=5, shuffle=False, on_error="skip")
    seen = _labels(stream)
    assert 2 not in seen and max(seen.values()) == 1
    assert any("has" in s.reason and "rows, the index says" in s.reason for s in stream.report)


# ------------------------------------------------------------------ non-regular shards
def test_a_fifo_listed_as_a_shard_is_refused_without_blocking(shards):
    path = shards / "shard-000001.tar"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(
        ShardError, match=r"shard-000001\.tar: a FIFO \(named pipe\), not a regular"
    ):
        ShardDataset(shards)
    ds = ShardDataset(shards, on_error="skip")
    assert ds[5] is None and ds[0] is not None
    assert any("FIFO" in s.reason for s in ds.report)
    with pytest.raises(ShardError, match=r"is a FIFO \(named pipe\), not a regular file"):
        list(ShardStream(shards, batch_size=5, shuffle=False))


def test_an_index_that_is_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "index.json")
    with pytest.raises(ValueError, match=r"index\.json: is a FIFO"):
        ShardIndex.load(tmp_path)


def test_shard_dataset_refuses_bool_indices(shards):
    with pytest.raises(TypeError, match="indices are ints"):
        ShardDataset(shards)[True]


# ------------------------------------------------------------------ field names
@pytest.mark.parametrize("name", ["__x", "__key__", "__url__", "__", "a.b", "abc\n", "", "é"])
def test_field_names_that_would_not_round_trip_are_refused_when_written(tmp_path, name):
    """Regression: ``__x`` was written, then dropped by WebDataset's reader in ShardStream."""
    with pytest.raises(ValueError, match="cannot be stored in a shard"):
        check_field_name(name)
    with pytest.raises(ValueError, match="cannot be stored in a shard"):
        write_shards([{"verts": np.zeros((1, 3), np.float32), name: np.arange(2)}], tmp_path)


@pytest.mark.parametrize("name", ["_x", "X", "1a", "x__", "a" * 64, "json", "key"])
def test_legal_field_names_round_trip_through_both_readers(tmp_path, name):
    write_shards([{"verts": np.zeros((3, 3), np.float32), name: np.arange(4)}] * 2, tmp_path)
    assert np.array_equal(ShardDataset(tmp_path)[1][name], np.arange(4))
    (first, _) = next(iter(ShardStream(tmp_path, batch_size=2, collate_fn=None)))
    assert np.array_equal(first[name], np.arange(4))


def test_preprocess_refuses_a_cast_to_an_unstorable_name_before_reading(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match=r"--cast a\.b=int32: field name 'a\.b' cannot be stored"):
        preprocess(tmp_path / "src", tmp_path / "dst", casts={"a.b": "int32"}, progress=False)


# ------------------------------------------------------------------ index fuzzing
_REPLACEMENTS = [None, True, -1, 0, 1, 2**31, 2**63, 2**70, 1.5, float("nan"), "x", "", [], {}, [1]]


def _leaves(node, path=()):
    """Every (path, value) of a JSON tree, containers included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))


@given(data=st.data())
def test_fuzzed_index_loads_consistently_or_is_refused_naming_the_file(fuzz_shards, data):
    """Any value of the index replaced by a value of another type or range: the index is
    refused with a ValueError naming the file, or it loads, and then every sample that
    ShardDataset or ShardStream serves is the one written, anything else being a ShardError
    (raised under "raise", reported under "skip")."""
    original, samples = fuzz_shards
    index = json.loads(original.read_text())
    leaves = [p for p, _ in _leaves(index) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(leaves))
        target = index
        for step in path[:-1]:  # an earlier replacement may have cut this path off
            inside = isinstance(target, dict) and step in target
            inside |= isinstance(target, list) and isinstance(step, int) and step < len(target)
            target = target[step] if inside else None
        last = path[-1]
        if isinstance(target, dict) or (
            isinstance(target, list) and isinstance(last, int) and last < len(target)
        ):
            target[last] = copy.deepcopy(data.draw(st.sampled_from(_REPLACEMENTS)))
    folder = original.parent
    path = folder / "fuzzed.json"
    path.write_text(json.dumps(index, allow_nan=True))
    try:
        loaded = ShardIndex.load(path)
    except ValueError as exc:
        assert str(path) in str(exc), exc
        return
    loaded.root = str(folder)
    for on_error in ("raise", "skip"):
        try:
            _read_all(loaded, samples, on_error)
        except ShardError:
            assert on_error == "raise"


def _read_all(index: ShardIndex, samples: list[dict], on_error: str) -> None:
    """Every sample ShardDataset and ShardStream serve from ``index`` is the one written."""
    ds = ShardDataset(index, on_error=on_error)
    served = [ds[i] for i in range(len(ds))]
    if not index.shards:
        return  # (an index without shards cannot be streamed: a ValueError says so)
    stream = ShardStream(index, batch_size=2, on_error=on_error, collate_fn=None)
    served += [sample for batch in stream for sample in batch]
    for sample in served:
        if sample is not None:
            assert np.array_equal(sample["verts"], samples[int(sample["label"])]["verts"])


@pytest.fixture(scope="module")
def fuzz_shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    samples = _samples(6)
    write_shards(samples, folder, max_count=3)
    return folder / "index.json", samples


def test_shard_dataset_size_field_the_index_lacks_is_refused(shards):
    """It would size every sample 0, and a sampler would then ignore the budget."""
    with pytest.raises(ValueError, match=r"size_field 'normals' is not a field of the index"):
        ShardDataset(shards, size_field="normals")


@pytest.mark.parametrize("fields", ["verts", b"verts", ["verts", "verts"], ["verts", ""], [3]])
def test_fields_that_are_not_a_list_of_names_are_refused(shards, fields):
    """Regression: fields="verts" selected the fields 'v', 'e', 'r', 't', 's'."""
    with pytest.raises(ValueError, match="ShardDataset: field"):
        ShardDataset(shards, fields=fields)
    with pytest.raises(ValueError, match="ShardStream: field"):
        ShardStream(shards, batch_size=2, fields=fields)
