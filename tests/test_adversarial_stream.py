"""An adversarial pass on ShardStream's batch reads and their seams (RELIABILITY.md, "The
stream's batch reads: an adversarial pass"): damaged shards under both reads, several ranks and
DataLoader workers, a worker left without a readable sample, empty shards, samples beyond the
budget (resume states, arguments and configs: test_adversarial_stream_resume.py). The reference
is written here: every shard's members read with ``tarfile`` and ``numpy.load``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from hetload.data import ShardStream
from hetload.data.batchers import token_batches
from hetload.shards import ShardError, ShardIndex
from hetload.shards.writer import write_shards

# ------------------------------------------------------------------ data and the reference


def write(root: Path, n: int, max_count: int, seed: int = 0, rows: int | None = None) -> None:
    """``n`` samples (``label`` = position) in shards of ``max_count``; ``rows`` fixes every
    sample's verts rows (then shards of equal counts have equal byte sizes)."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        k = rows if rows is not None else int(rng.integers(1, 40))
        samples.append({"verts": rng.standard_normal((k, 3)).astype(np.float32), "label": i})
    write_shards(samples, root, max_count=max_count)


def reference(root: Path) -> dict[str, np.ndarray]:
    """``{key: verts}`` of every sample of every shard the index lists, by ``tarfile``."""
    out = {}
    for entry in ShardIndex.load(root).shards:
        with tarfile.open(root / entry.url) as tar:
            for member in tar.getmembers():
                key, _, suffix = member.name.partition(".")
                if suffix == "verts.npy":
                    out[key] = np.load(io.BytesIO(tar.extractfile(member).read()))
    return out


def named(report, key: str) -> bool:
    """Whether a report entry names sample ``key``, alone or in a range ``keys a..b``."""
    for entry in report:
        text = f"{entry.source} {entry.reason}"
        if key in text:
            return True
        if any(a <= key <= b for a, b in re.findall(r"keys (\d+)\.\.(\d+)", text)):
            return True
    return False


def serve(root, world: int, workers: int = 0, **kwargs) -> tuple[list[list], list]:
    """Every rank's batches (lists of sample dicts) and the reports of all ranks."""
    ranks, report = [], []
    for rank in range(world):
        stream = ShardStream(root, rank=rank, world_size=world, collate_fn=None, **kwargs)
        planned = stream.num_batches(workers)
        loader = DataLoader(stream, batch_size=None, num_workers=workers) if workers else stream
        ranks.append(list(loader))
        assert len(ranks[-1]) == planned, "a rank stepped other than planned"
        report += list(stream.report)
    return ranks, report


def assert_served_once_or_reported(ranks: list[list], report: list, want: dict) -> None:
    """The stream's promise under on_error="skip": every sample served is the bytes its shard
    holds; a sample served again is marked is_repeat; every sample not served is named in the
    report; every rank steps the same number of times."""
    fresh: Counter = Counter()
    for batches in ranks:
        for batch in batches:
            assert batch, "an empty batch"
            for sample in batch:
                key = f"{int(sample['label']):09d}"
                assert np.asarray(sample["verts"]).tobytes() == want[key].tobytes(), key
                fresh[key] += not sample["is_repeat"]
    assert max(fresh.values(), default=0) <= 1, "a sample served twice unmarked"
    unserved = [key for key in want if not fresh[key] and not named(report, key)]
    assert not unserved, f"lost without a report: {unserved}"
    assert len({len(batches) for batches in ranks}) == 1, "ranks step unequally"


# ------------------------------------------------------------------ damaged shards

KINDS = [
    "missing",
    "folder",
    "fifo",
    "cut at a header",
    "cut mid-member",
    "cut at the end",
    "npy header",
    "appended",
    "index rows",
    "index size",
    "same-size other shard",
    "listed twice",
]


def damage(root: Path, kind: str, k: int, p: int) -> list[str] | None:
    """Damage shard ``k`` (at its sample ``p``) as ``kind`` says; returns the URLs to stream
    where the damage is in the list of URLs (else ``None``: the index's)."""
    index = ShardIndex.load(root)
    entry = index.shards[k]
    path = root / entry.url
    blob = path.read_bytes()
    first = min(int(column[p]) for column in entry.offset.values() if column[p] >= 0)
    other = (k + 1) % len(index.shards)
    if kind == "missing":
        path.unlink()
    elif kind == "folder":
        path.unlink()
        path.mkdir()
    elif kind == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif kind == "cut at a header":
        path.write_bytes(blob[: first - 512])
    elif kind == "cut mid-member":
        path.write_bytes(blob[: first + 3])
    elif kind == "cut at the end":
        path.write_bytes(blob[:-1024])  # the tar's two end blocks
    elif kind == "npy header":
        at = int(entry.offset["verts.npy"][p]) + 12
        path.write_bytes(blob[:at] + b"((((((" + blob[at + 6 :])
    elif kind == "appended":
        path.write_bytes(blob + b"x" * 700)
    elif kind in ("index rows", "index size"):
        data = json.loads((root / "index.json").read_text())
        shard = data["shardlist"][k]
        if kind == "index rows":
            shard["rows"]["verts"][p] += 1
        else:
            shard["members"]["verts.npy"]["size"][p] -= 4  # (more would leave the sample)
        (root / "index.json").write_text(json.dumps(data))
    elif kind == "same-size other shard":
        shutil.copy(root / index.shards[other].url, path)
    elif kind == "listed twice":
        urls = index.shard_urls()
        urls[k] = urls[other]
        return urls
    return None


@settings(max_examples=36)
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(4, 16),
    per_shard=st.integers(1, 5),
    world=st.integers(1, 3),
    at=st.floats(0, 1, exclude_max=True),
    batch_size=st.integers(1, 4),
    even=st.sampled_from(["exact", "pad"]),
    seed=st.integers(0, 3),
)
def test_damaged_shards_lose_only_their_samples_each_reported(
    tmp_path_factory, kind, n, per_shard, world, at, batch_size, even, seed
):
    """Regression: a rank (or worker) whose every shard was damaged raised "no sample could be
    read" under on_error="skip", stopping the job; it now borrows a substitute."""
    root = tmp_path_factory.mktemp("damaged")
    same_size = kind in ("same-size other shard", "listed twice")
    # at least 2 shards: one damaged, one readable (with none readable it is a named error)
    per_shard = n // 2 if same_size else min(per_shard, n // 2)
    write(root, n, per_shard, seed=seed, rows=7 if same_size else None)
    want = reference(root)
    index = ShardIndex.load(root)
    shards = len(index.shards)
    world = min(world, shards)  # (every rank needs a shard)
    k = int(at * shards)
    urls = damage(root, kind, k, int(at * 1000) % index.shards[k].nsamples)
    source = urls if urls is not None else root
    options = {"index": root} if urls is not None else {}
    for reads in ("batch", "sequential"):
        ranks, report = serve(
            source,
            world,
            batch_size=batch_size,
            seed=seed,
            on_error="skip",
            reads=reads,
            even=even,
            **options,
        )
        assert_served_once_or_reported(ranks, report, want)
        assert report, f"{kind}: nothing reported"


@pytest.mark.parametrize("reads", ["batch", "sequential"])
def test_a_worker_without_a_readable_sample_borrows_one_and_says_so(tmp_path, reads):
    write(tmp_path, n=8, max_count=4)
    want = reference(tmp_path)
    (tmp_path / "shard-000001.tar").unlink()
    stream = ShardStream(
        tmp_path, batch_size=2, shuffle=False, on_error="skip", reads=reads, collate_fn=None
    )
    planned = stream.num_batches(num_workers=2)
    batches = list(DataLoader(stream, batch_size=None, num_workers=2))
    assert len(batches) == planned  # the rank keeps its step count
    assert_served_once_or_reported([batches], list(stream.report), want)
    served = sorted(int(s["label"]) for b in batches for s in b if not s["is_repeat"])
    assert served == [0, 1, 2, 3]
    stand_ins = [b for b in batches if all(s["is_repeat"] for s in b)]
    # worker 1's two batches: the first readable sample of the other shards, marked
    assert [[int(s["label"]) for s in b] for b in stand_ins] == [[0], [0]]
    notes = [e.reason for e in stream.report if "stands in" in e.reason]
    assert len(notes) == 2
    assert all("borrowed from" in r and "shard-000000.tar" in r for r in notes)
    # with every shard gone nothing can stand in: a named error, not a hang
    (tmp_path / "shard-000000.tar").unlink()
    with pytest.raises(ShardError, match="no sample could be read"):
        list(ShardStream(tmp_path, batch_size=2, on_error="skip", reads=reads))


@pytest.mark.parametrize("reads", ["batch", "sequential"])
def test_ranks_and_workers_outnumbering_the_shards_with_one_shard_gone(tmp_path, reads):
    """2 ranks x 2 DataLoader workers over 3 shards, one of them missing: some workers hold
    nothing, one holds only the missing shard; every rank steps as planned, and every sample
    is served once or reported (the skips found in the workers reach the report)."""
    write(tmp_path, n=9, max_count=3)
    want = reference(tmp_path)
    (tmp_path / "shard-000002.tar").unlink()
    ranks, report = serve(tmp_path, 2, workers=2, batch_size=2, on_error="skip", reads=reads)
    assert_served_once_or_reported(ranks, report, want)
    assert any("shard-000002.tar" in entry.source for entry in report)


@pytest.mark.parametrize("scheme", ["pipe:cat ", "file://"])
def test_a_rank_whose_only_shard_is_gone_borrows_through_urls_too(tmp_path, scheme):
    """URLs and pipe: commands (read by WebDataset): the rank whose one shard is gone borrows
    the first readable sample of the others, as local shards do (it raised, stopping the job)."""
    write(tmp_path, n=8, max_count=4)
    want = reference(tmp_path)
    index = ShardIndex.load(tmp_path)
    urls = [f"{scheme}{tmp_path / entry.url}" for entry in index.shards]
    (tmp_path / "shard-000001.tar").unlink()
    ranks, report = serve(urls, 2, index=index, batch_size=2, shuffle=False, on_error="skip")
    assert_served_once_or_reported(ranks, report, want)
    assert [[int(s["label"]) for s in b] for b in ranks[1]] == [[0], [0]]
    assert any("borrowed from" in entry.reason for entry in report)


def test_a_key_in_two_shards_is_refused_when_the_index_loads(tmp_path):
    write(tmp_path, n=6, max_count=3)
    data = json.loads((tmp_path / "index.json").read_text())
    data["shardlist"][1]["keys"][0] = data["shardlist"][0]["keys"][0]
    (tmp_path / "index.json").write_text(json.dumps(data))
    with pytest.raises(ShardError, match="000000000"):
        ShardStream(tmp_path, batch_size=2)


def test_an_empty_shard_is_read_as_empty_by_both_reads(tmp_path):
    """A shard of 0 samples (a tar of its end blocks, listed in the index) even as the only
    shard of a rank: that rank repeats a sample, marked, and no sample is lost."""
    write(tmp_path, n=6, max_count=3)
    with tarfile.open(tmp_path / "empty.tar", "w", format=tarfile.USTAR_FORMAT):
        pass
    blob = (tmp_path / "empty.tar").read_bytes()
    data = json.loads((tmp_path / "index.json").read_text())
    empty = {"json": {"offset": [], "size": []}}
    data["shardlist"].insert(
        1,
        {
            **{"url": "empty.tar", "nsamples": 0, "filesize": len(blob)},
            **{"sha256": hashlib.sha256(blob).hexdigest(), "keys": [], "start": [], "end": []},
            **{"members": empty, "rows": {}},
        },
    )
    (tmp_path / "index.json").write_text(json.dumps(data))
    want = reference(tmp_path)
    got = {}
    for reads in ("batch", "sequential"):
        ranks, report = serve(tmp_path, 3, batch_size=2, shuffle=False, reads=reads)
        assert_served_once_or_reported(ranks, report, want)
        # the rank dealt the empty shard has nothing to serve: it repeats a sample, marked
        assert any(all(s["is_repeat"] for b in batches for s in b) for batches in ranks)
        got[reads] = [[[int(s["label"]) for s in b] for b in r] for r in ranks]
    assert got["batch"] == got["sequential"]


def labels(stream) -> list[list[int]]:
    return [batch["label"].tolist() for batch in stream]


# ------------------------------------------------------------------ edge sizes

SIZES = [3, 50, 7, 9, 200, 4, 5, 6, 30, 2]  # samples 1 and 4 exceed a budget of 40


def write_sizes(root: Path) -> None:
    samples = [{"verts": np.zeros((n, 3), np.float32), "label": i} for i, n in enumerate(SIZES)]
    write_shards(samples, root, max_count=3)


def test_a_sample_larger_than_the_budget_is_refused_on_construction_naming_it(tmp_path):
    """Regression: refused only when the first epoch was planned, as "sample #2 of size [200]"
    (its place in one worker's stream), naming neither its key nor its shard."""
    write_sizes(tmp_path)
    for budget in (40, 1):  # (1: a budget smaller than any sample)
        with pytest.raises(
            ValueError, match=r"sample 00000000\d of \S+shard-00000\d\.tar has size"
        ):
            ShardStream(tmp_path, max_tokens=budget)


@pytest.mark.parametrize("oversize", ["skip", "alone"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_oversized_samples_and_drop_last_by_both_reads(tmp_path, oversize, drop_last):
    write_sizes(tmp_path)
    got = {}
    for reads in ("batch", "sequential"):
        batcher = token_batches(40, buffer_size=2, oversize=oversize, drop_last=drop_last)
        stream = ShardStream(tmp_path, batcher=batcher, seed=1, reads=reads)
        dropped = stream.stats()["dropped"]
        batches = labels(stream)
        got[reads] = batches
        served = [x for b in batches for x in b]
        assert len(served) == len(set(served)) == len(SIZES) - dropped
        for batch in batches:  # the budget holds, but for a sample served alone
            assert len(batch) * max(SIZES[x] for x in batch) <= 40 or len(batch) == 1
        if oversize == "skip":
            assert not {1, 4} & set(served)
        elif not drop_last:
            assert [1] in batches and [4] in batches
        if dropped:  # the plan's note counts the samples left out
            assert f"{dropped} of {len(SIZES)} samples are not served" in stream.report[0].reason
    assert got["batch"] == got["sequential"]


@pytest.mark.parametrize("reads", ["batch", "sequential"])
@pytest.mark.parametrize("change", ["cut", "renamed over", "grown"])
def test_a_shard_changed_between_the_plan_and_the_read(tmp_path, reads, change):
    """After the first batch (the worker's checks done, a chunk or descriptor maybe open), a
    shard is cut, renamed over by another of its size, or grown: every sample served is the
    bytes the shard held, once, or reported."""
    write(tmp_path, n=16, max_count=8, rows=7)
    want = reference(tmp_path)
    index = ShardIndex.load(tmp_path)
    stream = ShardStream(
        tmp_path, batch_size=2, shuffle=False, reads=reads, on_error="skip", collate_fn=None
    )
    batches = iter(stream)
    served = [next(batches)]
    path = tmp_path / index.shards[0].url
    if change == "cut":
        os.truncate(path, index.shards[0].start[5])
    elif change == "renamed over":
        shutil.copy(tmp_path / index.shards[1].url, tmp_path / "new.tar")
        os.replace(tmp_path / "new.tar", path)
    else:
        with open(path, "ab") as f:
            f.write(b"\0" * 4096)
    served += list(batches)
    assert_served_once_or_reported([served], list(stream.report), want)


def test_an_epoch_of_a_single_batch(tmp_path):
    write(tmp_path, n=7, max_count=3)
    for reads in ("batch", "sequential"):
        (batch,) = labels(ShardStream(tmp_path, batch_size=100, shuffle=False, reads=reads))
        assert batch == list(range(7))
        ranks = [
            labels(ShardStream(tmp_path, batch_size=100, rank=r, world_size=2)) for r in (0, 1)
        ]
        assert [len(r) for r in ranks] == [1, 1]
        assert sorted(x for r in ranks for b in r for x in b) == list(range(7))
