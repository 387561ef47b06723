"""Adversarial pass over what surrounds the batch read: ``PackedSamples`` used as a user would
(collated twice, under other schemas, values added, pickled, copied), ``ThreadedLoader`` under
any thread count, failing samples, samplers of its own kind and early exits, the transform path
with transforms that alias or keep their input, and batches handed from DataLoader workers
that are held, copied, sent on to another process or resized. The reference is always the
per-sample path (``getitems`` then ``hetload.collate``) or ``DataLoader(num_workers=0)``."""

from __future__ import annotations

import copy
import gc
import os
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp
from hypothesis import given
from hypothesis import strategies as st
from test_adversarial_batch_read import assert_same_batches, outcome
from test_batch_read import assert_same_samples, shard_examples
from torch.utils.data import DataLoader

import hetload
from hetload.data import ShardDataset, ThreadedLoader, batch_read
from hetload.data.substitute import getitems
from hetload.packed import PackedSamples
from hetload.schema import DEFAULT_SCHEMA, Field, Schema
from hetload.shards.writer import write_shards
from hetload.transforms import Transform


def mesh_data(count=40, seed=3, top=300):
    rng = np.random.default_rng(seed)
    data = []
    for i, n in enumerate(rng.integers(0, top, size=count).tolist()):
        sample = {
            "verts": rng.standard_normal((n, 3)).astype(np.float32),
            "faces": rng.integers(0, max(n, 1), (n // 2, 3)).astype(np.int32 if i % 2 else "i8"),
            "label": i % 4,
        }
        if i % 3:
            sample["colors"] = rng.random((n + 1, 3)).astype(np.float32)
        data.append(sample)
    return data


@pytest.fixture
def shards(tmp_path):
    data = [dict(s, faces=s["faces"].astype(np.int64)) for s in mesh_data()]
    write_shards(data, tmp_path, max_count=7)
    return tmp_path


# ------------------------------------------------------------------------------ PackedSamples
SCHEMAS = {
    "default": None,
    "faces-ragged": DEFAULT_SCHEMA.extend({"faces": "ragged"}),
    "faces-into-colors": DEFAULT_SCHEMA.extend({"faces": "index:colors"}),
    "inferred": Schema(),
}


@pytest.mark.parametrize("second", sorted(SCHEMAS))
@pytest.mark.parametrize("first", sorted(SCHEMAS))
def test_two_collates_of_one_packed_batch_under_any_two_schemas(shards, read_path, first, second):
    """The second collate of one ``PackedSamples`` under another schema returned the first
    schema's batch (faces re-based into verts where the second schema says ragged): each must
    be the plain collate under its own schema, and the first batch must not change."""
    ds = ShardDataset(shards)
    indices = [5, 0, 2, 9, 4]
    want = getitems(ShardDataset(shards), indices)
    packed = ds.__getitems__(indices)
    assert isinstance(packed, PackedSamples)
    a = outcome(lambda: hetload.collate(packed, SCHEMAS[first]))
    b = outcome(lambda: hetload.collate(packed, SCHEMAS[second]))
    for got, schema in ((a, first), (b, second)):
        plain = outcome(lambda s=schema: hetload.collate(want, SCHEMAS[s]))
        assert got[0] == plain[0], (got, plain)
        if plain[0] == "raise":
            assert got[1:] == plain[1:]
        else:
            assert_same_batches(got[1], plain[1])
    if a[0] == "ok":  # the first batch after the second collate, and the items
        assert_same_batches(a[1], hetload.collate(want, SCHEMAS[first]))
        if first == second:
            assert b[1] is a[1]
    assert_same_samples(list(packed), want)


class FacesRagged(Schema):
    """A schema deciding in code of its own: faces ragged when ``flat``."""

    def __init__(self, flat: bool) -> None:
        super().__init__(DEFAULT_SCHEMA.fields)
        self.flat = flat

    def field(self, name, value):
        if self.flat and name == "faces":
            return Field("ragged")
        return super().field(name, value)


def test_a_schema_subclass_is_the_same_schema_only_as_the_same_object(shards, read_path):
    ds = ShardDataset(shards)
    want = getitems(ShardDataset(shards), [1, 2, 4])
    packed = ds.__getitems__([1, 2, 4])
    first = hetload.collate(packed, FacesRagged(False))
    second = hetload.collate(packed, FacesRagged(True))  # equal fields, other decisions
    assert_same_batches(first, hetload.collate(want, FacesRagged(False)))
    assert_same_batches(second, hetload.collate(want, FacesRagged(True)))
    assert second["faces"].index_base is None


def test_packed_samples_used_as_a_list(shards, read_path):
    """``with_value``, pickling, copies, slices and refusals, before and after a collate."""
    ds = ShardDataset(shards)
    indices = [3, 1, 3, 8]
    want = getitems(ShardDataset(shards), indices)
    packed = ds.__getitems__(indices)
    assert isinstance(packed, PackedSamples)
    assert packed.with_value("is_repeat", True) is packed
    want = [{**s, "is_repeat": True} for s in want]
    assert_same_samples(list(packed), want)
    assert_same_samples(packed[1:3], want[1:3])
    assert_same_samples([packed[-1]], [want[-1]])
    for copied in (pickle.loads(pickle.dumps(packed)), copy.deepcopy(packed), copy.copy(packed)):
        assert type(copied) is list
        assert_same_samples(copied, want)
    with pytest.raises(ValueError, match="'verts' is an array field"):
        packed.with_value("verts", 1)
    # the repeated sample holds a place of its own: changing one item changes no other
    item = packed[0]
    item["verts"] += 1
    assert_same_samples([packed[2], packed[0]], [want[2], want[0]])
    batch = hetload.collate(packed)
    assert_same_batches(batch, hetload.collate(want))
    assert_same_samples(list(packed), want)  # items after the collate: stored indices
    assert_same_samples(pickle.loads(pickle.dumps(packed)), want)
    with pytest.raises(ValueError, match="collated"):
        packed.with_value("other", 1)
    with pytest.raises(RuntimeError, match="re-based or collated"):
        packed.stored_item(0)
    # an unknown name under Schema(unknown="error"): the plain collate's error, by name
    strict = Schema({"verts": "ragged"}, unknown="error")
    got, plain = (outcome(lambda s=s: hetload.collate(s, strict)) for s in (packed, want))
    assert got[0] == plain[0] == "raise" and got[1:] == plain[1:]


# ------------------------------------------------------------------------------ ThreadedLoader
def readers() -> int:
    return sum(t.name.startswith("hetload-reader") for t in threading.enumerate())


def warm(ds: ShardDataset) -> ShardDataset:
    """Learn every shard's field layouts in this thread before threads read ``ds``: the first
    read of a layout parses a ``.npy`` header with numpy's parser (``ast.literal_eval``), which
    on CPython 3.11 can raise a spurious ``SystemError: AST constructor recursion depth
    mismatch`` when threads parse at once (a defect of ``batch_read._field_info``, reported;
    these tests are about the loader, and must not be flaky)."""
    batch_read.read_stored(ds, range(len(ds)))
    return ds


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else set()


class Steps:
    """A batch sampler whose ``state_dict`` takes no ``consumed``: its state is how far its
    iterator has gone (as a sampler that knows nothing of read-ahead reports it)."""

    def __init__(self, batches):
        self.batches = batches
        self.at = 0
        self.start = 0

    def __iter__(self):
        self.at = self.start
        self.start = 0
        while self.at < len(self.batches):
            self.at += 1
            yield self.batches[self.at - 1]

    def __len__(self):
        return len(self.batches) - self.start

    def state_dict(self):
        return {"at": self.at}

    def load_state_dict(self, state):
        self.start = state["at"]


@pytest.mark.parametrize("threads", [1, 3])
def test_resume_with_a_sampler_that_does_not_count_consumed_batches(shards, threads):
    """The sampler's own state runs ahead by the batches read ahead: ``state_dict`` gave it,
    and a resume skipped those batches. Now it is the state when the last consumed batch was
    drawn, as ``DataLoader(num_workers=0)`` would report."""
    ds = warm(ShardDataset(shards))
    batches = [[i, (i * 7) % 40] for i in range(0, 40, 3)]
    plain_sampler = Steps(batches)
    plain = DataLoader(ds, batch_sampler=plain_sampler, collate_fn=hetload.collate)
    loader = ThreadedLoader(ds, Steps(batches), threads=threads, prefetch=5)
    for k in (0, 1, 4):
        states = []
        it, plain_it = iter(loader), iter(plain)
        for _ in range(k):
            assert_same_batches(next(it), next(plain_it))
        states.append((loader.state_dict(), plain_sampler.state_dict()))
        assert states[-1][0] == states[-1][1] == {"at": k}
        it.close()
        resumed = ThreadedLoader(ds, Steps(batches), threads=threads, prefetch=5)
        resumed.load_state_dict(loader.state_dict())
        rest = list(resumed)
        assert len(rest) == len(batches) - k
        for got, indices in zip(rest, batches[k:], strict=True):
            assert_same_batches(got, hetload.collate(getitems(ds, indices)))
        assert resumed.state_dict() == {"at": len(batches)}
    assert readers() == 0


class Picky(Transform):
    """Refuses (ValueError) samples with an odd number of verts; shifts the rest in place."""

    def apply(self, sample, rng):
        if len(sample["verts"]) % 2:
            raise ValueError("odd vertex count")
        sample["verts"] += np.float32(rng.normal())
        return sample


@shard_examples(12)
@given(
    threads=st.integers(1, 5),
    prefetch=st.integers(1, 6),
    max_open=st.integers(1, 3),
    transform=st.booleans(),
    seed=st.integers(0, 3),
)
def test_any_thread_count_gives_the_batches_of_one_process(
    shards, threads, prefetch, max_open, transform, seed
):
    """Same batches, order and report as ``DataLoader(num_workers=0)`` whatever the threads,
    read-ahead and descriptor cache (``max_open=1``: every read may evict another thread's
    shard), with samples failing inside the threads under ``on_error="skip"``; then no reader
    thread and no descriptor is left once the dataset closes."""
    from hetload.samplers import BucketBatchSampler

    def make():
        return ShardDataset(
            shards, max_open=max_open, on_error="skip", transform=Picky() if transform else None
        )

    def sampler(ds):
        return BucketBatchSampler(ds.sizes, 1200, seed=seed, max_batch_size=6)

    before = open_fds()
    ref = make()
    want = list(DataLoader(ref, batch_sampler=sampler(ref), collate_fn=hetload.collate))
    ds = warm(make())
    got = list(ThreadedLoader(ds, sampler(ds), threads=threads, prefetch=prefetch))
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert_same_batches(a, b)
    assert sorted((e.source, e.reason) for e in ds.report) == sorted(
        (e.source, e.reason) for e in ref.report
    )
    assert readers() == 0
    ds.close()
    ref.close()
    del ds, ref, got, want
    gc.collect()
    assert open_fds() <= before


def test_a_sample_failing_in_a_thread_under_raise(shards):
    """A transform refusing a sample under ``on_error="raise"`` (inside a reader thread): the
    loop raises the per-sample path's error, noting the batch; threads are joined."""
    ds = warm(ShardDataset(shards, transform=Picky()))
    odd = next(i for i in range(len(ds)) if int(ds.sizes[i]) % 2)
    even = [i for i in range(len(ds)) if int(ds.sizes[i]) % 2 == 0][:4]
    batches = [even[:2], [even[2], odd], even[2:]]
    want = outcome(lambda: getitems(ShardDataset(shards, transform=Picky()), batches[1]))
    assert want[0] == "raise"
    it = iter(ThreadedLoader(ds, batches, threads=3))
    assert len(next(it)) == 2
    with pytest.raises(want[1]) as info:
        next(it)
    assert str(info.value) == want[2]
    assert any("while loading the batch of samples" in n for n in info.value.__notes__)
    gc.collect()
    assert readers() == 0


def test_abandoned_iterators_and_loaders_leave_nothing_behind(shards):
    """An iterator dropped mid-epoch (never closed), one left by an exception in the loop body,
    a loader collected while its threads read: no reader thread, no leased descriptor."""
    ds = warm(ShardDataset(shards, max_open=1))
    batches = [[i, i + 1, i + 2] for i in range(0, 36, 3)]
    before = open_fds()
    it = iter(ThreadedLoader(ds, batches, threads=4, prefetch=8))
    next(it)
    del it
    gc.collect()
    assert readers() == 0

    def body():
        for k, _ in enumerate(ThreadedLoader(ds, batches, threads=2)):
            if k == 2:
                raise KeyError("user code failed")

    with pytest.raises(KeyError):
        body()
    gc.collect()
    assert readers() == 0
    for _ in range(3):  # started, then the whole loader dropped
        loader = ThreadedLoader(ds, batches, threads=3, prefetch=3)
        it = iter(loader)
        next(it)
        del loader, it
        gc.collect()
    assert readers() == 0
    ds.close()
    assert open_fds() <= before


# ---------------------------------------------------------------------------- transform path
class Aliasing(Transform):
    """Returns views of its input (a strided slice, one array under two names) and keeps a
    reference to every array it saw (a cache a user might write)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, np.ndarray]] = []

    def apply(self, sample, rng):
        verts = sample["verts"]
        self.seen.append((len(verts), verts))
        if len(verts) < 2:
            raise ValueError("too small")
        out = {k: v for k, v in sample.items() if k not in ("faces", "colors")}
        out["verts"] = verts[::2]
        out["copy_of_verts"] = verts
        out["verts"][:1] *= 2  # in place: also changes copy_of_verts's first row
        return out

    def out_size(self, n, field="verts"):
        return (np.asarray(n) + 1) // 2 if field == "verts" else n


def test_transforms_that_alias_or_keep_their_input(shards, read_path):
    """Stored samples of the transform path share one batch read: views returned, arrays kept
    by the transform across batches, repeated indices and refusals must give what reading
    each sample alone gives, and kept arrays must never change under the transform."""
    ds = ShardDataset(shards, transform=Aliasing(), on_error="skip")
    ref = ShardDataset(shards, transform=Aliasing(), on_error="skip")
    batches = [[0, 4, 0, 7], [7, 7, 1], [2, 3, 4, 5, 6], list(range(8, 30))]
    for indices in batches:
        got = outcome(lambda ids=indices: ds.__getitems__(ids))
        want = outcome(lambda ids=indices: getitems(ref, ids))
        assert got[0] == want[0]
        if want[0] == "ok":
            assert_same_samples(got[1], want[1])
            assert_same_batches(hetload.collate(got[1]), hetload.collate(want[1]))
    assert [(e.source, e.reason) for e in ds.report] == [(e.source, e.reason) for e in ref.report]
    # every array the transform kept still holds what it held when the transform returned
    assert len(ds.transform.seen) == len(ref.transform.seen)
    for (n, a), (m, b) in zip(ds.transform.seen, ref.transform.seen, strict=True):
        assert n == m and np.array_equal(a, b)


# --------------------------------------------------------------------------------- handoff
def _sum_in_child(queue, out):
    batch = queue.get()
    out.put((batch["verts"].values.double().sum().item(), batch["faces"].values.sum().item()))


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="the ring needs Linux")
def test_batches_from_workers_copied_sent_on_and_resized(shards):
    """Batches that came through the workers' rings (read straight into a slot): deep copies
    outlive their originals while the slots are reused; a batch sent on to another process
    arrives whole though the main process drops it; a tensor resized in place cannot grow
    over the slot, and one shrunk is refused by name by the kernels that read it."""
    from hetload import handoff

    ds = ShardDataset(shards)
    batches = [list(range(i, min(i + 4, 40))) for i in range(0, 40, 4)] * 3
    before = handoff.stats()["received"]
    loader = DataLoader(ds, batch_sampler=batches, num_workers=2, collate_fn=hetload.collate)
    # fork, not spawn: spawn starts multiprocessing's resource tracker, a child process that
    # outlives the test (the resource-hygiene tests count this process's children)
    ctx = mp.get_context("fork")
    queue, out = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_sum_in_child, args=(queue, out), daemon=True)
    child.start()
    copies = []
    for k, batch in enumerate(loader):
        if k == 1:
            queue.put(batch)  # then dropped here, its slot reused by later batches
        elif k % 3 == 0:
            copies.append((k, copy.deepcopy(batch)))
        elif k == 5:
            values = batch["verts"].values
            with pytest.raises(RuntimeError, match="not resizable"):
                values.resize_(values.numel() * 4 + 100)
            batch["verts"].values.resize_(0)
            with pytest.raises(RuntimeError, match="does not match"):
                batch["verts"].padded()
        del batch
    assert handoff.stats()["received"] > before, "the ring was not used"
    want = hetload.collate(getitems(ds, batches[1]))
    sums = out.get(timeout=120)
    child.join(timeout=60)
    assert not child.is_alive()
    assert sums == (want["verts"].values.double().sum().item(), want["faces"].values.sum().item())
    for k, held in copies:
        assert_same_batches(held, hetload.collate(getitems(ds, batches[k])))


def test_a_shard_replaced_while_threads_read_it(tmp_path):
    """A shard rewritten the documented way (a new file renamed over it) while threads read it,
    with ``max_open=1`` so that descriptors are dropped and reopened all along: every sample
    of every batch is wholly the old or wholly the new version (one positioned read through
    one descriptor per sample), never a mix, and the batch is the plain collate of them."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 200, size=24).tolist()

    def version(shift):
        return [
            {"verts": np.full((n, 3), i + shift, np.float32), "faces": np.full((n, 3), n - 1)}
            for i, n in enumerate(sizes)
        ]

    old, new = tmp_path / "old", tmp_path / "new"
    write_shards(version(0.0), old, max_count=8)
    write_shards(version(0.5), new, max_count=8)
    # same layout: only the values differ (one index serves both)
    a, b = ShardDataset(old), ShardDataset(new)
    assert np.array_equal(a._end, b._end)
    assert all(np.array_equal(a._offset[k], b._offset[k]) for k in a._offset)
    shutil.copytree(old, tmp_path / "old-ref")
    refs = {0.0: ShardDataset(tmp_path / "old-ref"), 0.5: ShardDataset(new)}
    target = sorted(old.glob("shard-*.tar"))[1]
    swaps = [sorted(new.glob("shard-*.tar"))[1].read_bytes(), target.read_bytes()]
    stop = threading.Event()

    def rewrite():
        k = 0
        while not stop.is_set():
            part = target.with_suffix(".part")
            part.write_bytes(swaps[k % 2])
            os.replace(part, target)
            k += 1

    ds = warm(ShardDataset(old, max_open=1, check=False))
    batches = [list(range(i, i + 3)) for i in range(0, 24, 3)] * 4
    writer = threading.Thread(target=rewrite, daemon=True)
    writer.start()
    try:
        got = list(ThreadedLoader(ds, batches, threads=3, prefetch=4))
    finally:
        stop.set()
        writer.join()
    seen = set()
    for batch, indices in zip(got, batches, strict=True):
        samples = []
        for j, i in enumerate(indices):
            verts = batch["verts"][j].numpy()
            shift = float(verts[0, 0]) - i if len(verts) else 0.0
            assert shift in (0.0, 0.5)
            seen.add(shift)
            samples.append(refs[shift][i])
        assert_same_batches(batch, hetload.collate(samples))
    assert 0.0 in seen  # (shards 0 and 2 are never rewritten)
