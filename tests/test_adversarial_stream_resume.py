"""The adversarial pass on ShardStream's batch reads, continued (RELIABILITY.md, "The stream's
batch reads: an adversarial pass"): resume states saved on other data or under a batcher of
one's own with other settings, stop-anywhere / resume-anywhere against the uninterrupted epoch,
a resumed epoch whose consumed shard went missing, bad batching arguments and config values."""

from __future__ import annotations

import functools
import json
import shutil
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_adversarial_stream import labels, write
from torch.utils.data import DataLoader

from hetload.config import ConfigError, build_loader
from hetload.data import ShardStream
from hetload.data.batchers import fixed_batches, token_batches
from hetload.samplers.bucket_sampler import ResumeError
from hetload.shards import ShardIndex

# ------------------------------------------------------------------ resume states


def planned(stream) -> list[list[int]]:
    """Epoch 0's batches of the stream's plan, as sample numbers."""
    (batches,) = stream.plan(epoch=0).streams[0]
    return [batches.batch(b).tolist() for b in range(len(batches))]


def test_a_state_of_other_data_with_the_same_counts_and_sizes_is_refused(tmp_path):
    """Regression: the fingerprint held the per-shard counts and the sizes only, so a state of
    one dataset of fixed-size samples (point clouds of 1024 points) resumed on another, and an
    index with its shards reordered resumed on other samples (some twice, some never)."""
    write(tmp_path / "a", n=12, max_count=4, seed=0, rows=16)
    write(tmp_path / "b", n=12, max_count=4, seed=1, rows=16)
    shutil.copytree(tmp_path / "a", tmp_path / "reordered")
    data = json.loads((tmp_path / "reordered" / "index.json").read_text())
    data["shardlist"].reverse()
    (tmp_path / "reordered" / "index.json").write_text(json.dumps(data))
    a = ShardStream(tmp_path / "a", batch_size=3, seed=2)
    whole = labels(a)
    state = a.state_dict(step=2, num_workers=0)
    for other in ("b", "reordered"):
        stream = ShardStream(tmp_path / other, batch_size=3, seed=2)
        assert planned(stream) == planned(a)  # the same plan: only the data differs
        with pytest.raises(ResumeError, match="other shards"):
            stream.load_state_dict(state)
    # the same shards moved elsewhere (the same index, other URLs): resumed
    moved = tmp_path / "moved"
    moved.mkdir()
    urls = []
    for entry in ShardIndex.load(tmp_path / "a").shards:
        shutil.copy(tmp_path / "a" / entry.url, moved / entry.url)
        urls.append(str(moved / entry.url))
    resumed = ShardStream(urls, index=tmp_path / "a", batch_size=3, seed=2)
    resumed.load_state_dict(state)
    assert labels(resumed) == whole[2:]


def groups(items, n: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def by_partial(n: int):
    return functools.partial(lambda items, size_fn, seed, n: groups(items, n), n=n)


def by_lambda(n: int):
    return lambda items, size_fn, seed: groups(items, n)


class Every:
    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, items, size_fn, seed):
        return groups(items, self.n)


@pytest.mark.parametrize("make", [by_partial, by_lambda, Every])
def test_a_state_of_a_batcher_of_ones_own_with_other_settings_is_refused(tmp_path, make):
    """Regression: a batcher not made by hetload was described by its qualified name only, so
    two partials, lambdas or instances with other settings had one fingerprint and a state of
    one resumed on the other's batches (samples skipped or served twice, no record)."""
    write(tmp_path, n=12, max_count=4)
    state = ShardStream(tmp_path, batcher=make(2)).state_dict(step=2, num_workers=0)
    with pytest.raises(ResumeError, match="batcher"):
        ShardStream(tmp_path, batcher=make(3)).load_state_dict(state)
    again = ShardStream(tmp_path, batcher=make(2))  # the same settings: resumed
    again.load_state_dict(state)
    assert [len(b) for b in labels(again)] == [2, 2, 2, 2]


def test_a_batcher_that_refuses_the_probe_has_a_stable_fingerprint(tmp_path):
    """The probe's error text enters the fingerprint without object addresses (they differ
    from process to process, and every rank must agree)."""
    write(tmp_path, n=6, max_count=3)

    def picky(items, size_fn, seed):
        for item in items:
            if size_fn(item) > 1000:
                raise ValueError(f"too large for {object()}")
            yield [item]

    first = ShardStream(tmp_path, batcher=picky).fingerprint
    assert ShardStream(tmp_path, batcher=picky).fingerprint == first
    assert len(labels(ShardStream(tmp_path, batcher=picky))) == 6


def padded_plus(extra: int):
    """A cost function of one's own, made anew by each call (another object, another address)."""

    def cost(count, maxes, sums):
        return count * (maxes + extra)

    return cost


def test_a_token_batcher_with_a_cost_function_resumes_and_tells_settings_apart(tmp_path):
    """Regression: the fingerprint held ``repr(token_batches(..., cost=fn))``, the function's
    address included: every process (every rank, every restart) had another fingerprint, so no
    state resumed; and two costs of one name with other settings were not told apart."""
    write(tmp_path, n=12, max_count=4)
    state = ShardStream(tmp_path, batcher=token_batches(120, cost=padded_plus(0))).state_dict(
        step=1, num_workers=0
    )
    again = ShardStream(tmp_path, batcher=token_batches(120, cost=padded_plus(0)))
    again.load_state_dict(state)  # another function object, the same cost: resumed
    with pytest.raises(ResumeError, match="batcher"):
        ShardStream(tmp_path, batcher=token_batches(120, cost=padded_plus(30))).load_state_dict(
            state
        )


@pytest.mark.parametrize("reads", ["batch", "sequential"])
def test_a_resumed_epoch_does_not_report_what_was_served_before_the_checkpoint(tmp_path, reads):
    """Regression (batch reads): after a resume every shard of the worker was checked, so a
    shard consumed before the checkpoint and then removed was reported as "4 samples not
    served" and, under on_error="raise", stopped the resumed job. Only the shards with samples
    still due are checked, and only those samples are counted lost."""
    write(tmp_path, n=12, max_count=4)
    kwargs = {"batch_size": 2, "shuffle": False, "reads": reads}
    whole = labels(ShardStream(tmp_path, **kwargs))
    state = ShardStream(tmp_path, **kwargs).state_dict(step=2, num_workers=0)  # shard 0 served
    (tmp_path / "shard-000000.tar").unlink()
    resumed = ShardStream(tmp_path, **kwargs)  # on_error="raise"
    resumed.load_state_dict(state)
    assert labels(resumed) == whole[2:]
    # shard 1 half served, then cut short at its sample 5: samples 6 and 7 are lost, not 5
    state = ShardStream(tmp_path, **kwargs).state_dict(step=3, num_workers=0)
    entry = ShardIndex.load(tmp_path).shards[1]
    path = tmp_path / entry.url
    path.write_bytes(path.read_bytes()[: entry.start[1] + 700])
    resumed = ShardStream(tmp_path, on_error="skip", **kwargs)
    resumed.load_state_dict(state)
    got = [x for batch in labels(resumed) for x in batch]
    assert 6 not in got and 7 not in got and set(got) >= {8, 9, 10, 11}
    text = " ".join(e.reason for e in resumed.report)
    assert "2 samples not served (keys 000000006..000000007, those still due)" in text
    assert "keys 000000005" not in text and "(key 000000005" not in text  # served before


@pytest.mark.parametrize("reads", ["batch", "sequential"])
def test_resumed_where_only_unreadable_batches_are_due(tmp_path, reads):
    """Regression: resumed after its readable samples were served, a worker whose batches
    still due are all unreadable raised "no sample could be read" under on_error="skip": the
    index's first readable sample now stands in, marked."""
    write(tmp_path, n=4, max_count=1)
    kwargs = {"batch_size": 1, "shuffle": False, "reads": reads, "on_error": "skip"}
    state = ShardStream(tmp_path, **kwargs).state_dict(step=3, num_workers=0)
    (tmp_path / "shard-000003.tar").unlink()
    resumed = ShardStream(tmp_path, **kwargs)
    resumed.load_state_dict(state)
    batches = list(resumed)
    assert [b["label"].tolist() for b in batches] == [[0]]
    assert batches[0]["is_repeat"].tolist() == [True]
    reasons = " ".join(e.reason for e in resumed.report)
    assert "000000003" in reasons and "sample 000000000 stands in" in reasons


@settings(max_examples=12)
@given(
    n=st.integers(4, 20),
    per_shard=st.integers(1, 5),
    worlds=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    workers=st.tuples(st.sampled_from([0, 2]), st.sampled_from([0, 2])),
    stop=st.floats(0, 1),
    reads=st.sampled_from(["batch", "sequential"]),
    lose=st.booleans(),
    even=st.sampled_from(["exact", "pad"]),
    seed=st.integers(0, 3),
)
def test_stop_anywhere_resume_anywhere_serves_the_uninterrupted_epoch(
    tmp_path_factory, n, per_shard, worlds, workers, stop, reads, lose, even, seed
):
    """Stop after any step (0, mid-shard, the epoch's end) at (W, K), resume at (W', K'),
    with or without a missing shard: the fresh samples of both parts are those of the
    uninterrupted run (each once), and at the same (W, K) the very same batches.

    Regression: resumed after its readable samples were served, a worker whose batches still
    due were all unreadable raised "no sample could be read" under on_error="skip" (the
    substitute was looked for among the samples due and the other workers' shards only)."""
    root = tmp_path_factory.mktemp("resume")
    write(root, n, per_shard, seed=seed)
    shards = len(ShardIndex.load(root).shards)
    (w1, w2), (k1, k2) = (min(w, shards) for w in worlds), workers
    if lose and shards > 1:
        (root / ShardIndex.load(root).shards[seed % shards].url).unlink()
    kwargs = {"max_tokens": 60, "buffer_size": 4, "seed": seed, "reads": reads, "even": even}
    kwargs["on_error"] = "skip"

    def run(world, k, state=None, steps=None):
        out = []
        for rank in range(world):
            stream = ShardStream(root, rank=rank, world_size=world, **kwargs)
            if state is not None:
                stream.load_state_dict(state)
            loader = DataLoader(stream, batch_size=None, num_workers=k) if k else stream
            got = []
            for batch in loader:
                if steps is not None and len(got) == steps:
                    break
                got.append(list(zip(batch["label"].tolist(), batch["is_repeat"].tolist())))
            out.append(got)
        return out, stream

    whole, _ = run(w1, k1)
    steps = int(stop * len(whole[0]))
    first, stream = run(w1, k1, steps=steps)
    state = stream.state_dict(step=steps, num_workers=k1)
    rest, _ = run(w2, k2, state=state)
    assert len({len(r) for r in rest}) == 1  # the ranks step equally after the resume

    def fresh(ranks):
        return Counter(x for r in ranks for b in r for x, again in b if not again)

    assert fresh(first) + fresh(rest) == fresh(whole)
    assert all(c == 1 for c in (fresh(first) + fresh(rest)).values())
    if (w1, k1) == (w2, k2) and not lose:
        assert [a + b for a, b in zip(first, rest)] == whole


# ------------------------------------------------------------------ arguments and config


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_tokens": 100, "buffer_size": 1}, "buffer_size"),
        ({"max_tokens": 100, "buffer_size": 2.5}, "buffer_size"),
        ({"max_tokens": 100, "buffer_size": True}, "buffer_size"),
        ({"max_tokens": 100, "buffer_size": "64"}, "buffer_size"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": "100"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": 2, "buffer_size": 64}, "buffer_size"),
        ({"batcher": fixed_batches(2), "buffer_size": 64}, "buffer_size"),
    ],
)
def test_bad_batching_arguments_are_refused_on_construction_naming_them(tmp_path, kwargs, name):
    """Regression: int() cut 1.5 to 1 and True to 1 and read "100" as 100; buffer_size 1 or 0
    was refused only when the first epoch was planned (naming the shards, not the argument);
    a buffer_size beside batch_size or a batcher was ignored without a word."""
    write(tmp_path, n=4, max_count=2)
    with pytest.raises(ValueError, match=rf"ShardStream: {name}"):
        ShardStream(tmp_path, **kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: token_batches(1.5),
        lambda: token_batches(100, buffer_size=1),
        lambda: token_batches(100, oversize="bogus"),
        lambda: fixed_batches(True),
        lambda: fixed_batches(2.0),
    ],
)
def test_bad_batcher_settings_are_refused_when_the_batcher_is_made(make):
    with pytest.raises(ValueError, match=r"max_tokens|buffer_size|oversize|batch_size"):
        make()


def test_the_stream_keys_of_a_config(tmp_path):
    """Regression: sampler.buffer_size 1 passed the config's check (min 1) and failed when
    the first epoch was planned, without naming the key."""
    write(tmp_path, n=8, max_count=2)
    base = {"dataset": {"type": "ShardStream", "urls": str(tmp_path)}}
    with pytest.raises(ConfigError, match=r"sampler\.buffer_size: expected an integer >= 2"):
        build_loader({**base, "sampler": {"max_tokens": 100, "buffer_size": 1}})
    with pytest.raises(ConfigError, match=r"dataset\.reads: expected one of: batch, sequential"):
        build_loader({"dataset": {**base["dataset"], "reads": "random"}})
    for reads, buffer in (("batch", 32_768), ("sequential", 2048)):
        dataset = {**base["dataset"], "reads": reads}
        sampler = {"max_tokens": 100, "buffer_size": None}
        stream = build_loader({"dataset": dataset, "sampler": sampler}).dataset
        assert stream.reads == reads and stream.batcher.buffer_size == buffer
