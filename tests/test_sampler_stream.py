"""The streaming bucketer: every sample once, the hard budget, a bounded buffer, seeded."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetload.samplers import FieldSize, StreamBucketer, stream_batches


def samples_of(sizes) -> list[dict]:
    return [{"__key__": f"s{i}", "n": int(n)} for i, n in enumerate(sizes)]


def size_n(sample: dict) -> int:
    return sample["n"]


def keys(batches) -> Counter:
    return Counter(s["__key__"] for b in batches for s in b)


@given(
    sizes=st.lists(st.integers(0, 300), max_size=300),
    budget=st.integers(300, 3000),
    buffer_size=st.integers(2, 64),
    seed=st.integers(0, 10**6),
)
def test_every_sample_once_within_budget(sizes, budget, buffer_size, seed):
    samples = samples_of(sizes)
    batches = list(
        stream_batches(iter(samples), size_n, budget, buffer_size=buffer_size, seed=seed)
    )
    assert keys(batches) == Counter(s["__key__"] for s in samples)
    for batch in batches:
        assert batch
        assert len(batch) * max(s["n"] for s in batch) <= budget


@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=200), buffer_size=st.integers(2, 40)
)
def test_drop_last_drops_at_most_the_final_batch(sizes, buffer_size):
    samples = samples_of(sizes)
    kept = list(stream_batches(samples, size_n, 1000, buffer_size=buffer_size, drop_last=True))
    full = list(stream_batches(samples, size_n, 1000, buffer_size=buffer_size))
    as_sets = Counter(frozenset(s["__key__"] for s in b) for b in full)
    as_sets.subtract(frozenset(s["__key__"] for s in b) for b in kept)
    assert min(as_sets.values()) >= 0, "drop_last keeps batches as they were"
    assert len(full) - len(kept) <= 1
    assert all(c == 1 for c in keys(kept).values())


def test_buffer_stays_bounded():
    pulled = 0

    def source():
        nonlocal pulled
        for s in samples_of(np.random.default_rng(0).integers(1, 500, 5000)):
            pulled += 1
            yield s

    emitted = 0
    for batch in stream_batches(source(), size_n, 2000, buffer_size=100, seed=1):
        emitted += len(batch)
        assert pulled - emitted <= 100
    assert emitted == 5000


def test_seeded_and_fresh_per_seed():
    samples = samples_of(np.random.default_rng(1).integers(1, 500, 2000))
    a = list(stream_batches(samples, size_n, 4000, buffer_size=256, seed=(3, 1)))
    b = list(stream_batches(samples, size_n, 4000, buffer_size=256, seed=(3, 1)))
    c = list(stream_batches(samples, size_n, 4000, buffer_size=256, seed=(3, 2)))
    assert a == b
    assert a != c


def test_pads_little_compared_with_arrival_order():
    sizes = np.clip(np.exp(np.random.default_rng(2).normal(7, 1, 4000)), 10, 20_000).astype(int)
    batches = list(stream_batches(samples_of(sizes), size_n, 60_000, buffer_size=1024))
    padded = sum(len(b) * max(s["n"] for s in b) for b in batches)
    assert sizes.sum() / padded > 0.9


def test_oversize_policies():
    samples = samples_of([10, 5000, 20])
    with pytest.raises(ValueError, match=r"sample 's1' of size \[5000\] exceeds"):
        list(stream_batches(samples, size_n, 100))
    stage = StreamBucketer(size_n, 100, oversize="skip")
    assert keys(stage(samples)) == Counter({"s0": 1, "s2": 1})
    assert stage.oversized == 1 and stage.samples == 3
    alone = list(stream_batches(samples, size_n, 100, oversize="alone"))
    assert [s["__key__"] for s in alone[0]] == ["s1"]
    assert keys(alone) == Counter({"s0": 1, "s1": 1, "s2": 1})


def test_several_limits_and_field_size():
    rng = np.random.default_rng(3)
    samples = [
        {"verts": np.zeros((int(v), 3)), "faces": np.zeros((int(f), 3))}
        for v, f in zip(rng.integers(1, 100, 300), rng.integers(1, 300, 300))
    ]
    batches = list(stream_batches(samples, FieldSize("verts", "faces"), [400, 900], buffer_size=50))
    assert sum(len(b) for b in batches) == 300
    for b in batches:
        assert len(b) * max(len(s["verts"]) for s in b) <= 400
        assert len(b) * max(len(s["faces"]) for s in b) <= 900
    with pytest.raises(KeyError, match="no field 'normals'"):
        FieldSize("normals")(samples[0])
    with pytest.raises(ValueError, match="expected 2 integer"):
        list(stream_batches(samples, FieldSize("verts"), [400, 900]))


def test_stage_is_picklable_and_works_in_a_webdataset_pipeline():
    wds = pytest.importorskip("webdataset")
    stage = pickle.loads(pickle.dumps(StreamBucketer(size_n, 1000, buffer_size=16)))
    samples = samples_of(np.random.default_rng(4).integers(1, 200, 100))
    pipeline = wds.DataPipeline(lambda: iter(samples), stage)
    batches = list(pipeline)
    assert sum(len(b) for b in batches) == 100
    assert stage.batches == len(batches)


@pytest.mark.parametrize("bad", [0, 1, 2.5, True])
def test_bad_buffer_size(bad):
    with pytest.raises(ValueError, match="buffer_size"):
        StreamBucketer(size_n, 100, buffer_size=bad)
