"""The worker-to-main handoff through each worker's ring of reused segments must never hand out
wrong data: a slot is rewritten only once every tensor of the batch carved from it is gone.

Every test holds batches (whole, as views, moved, converted) while the loader keeps running and
later compares each one, bit for bit, with ``hl.collate`` of the same samples in this process.
"""

from __future__ import annotations

import gc
import io
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

import hetload as hl
from hetload import arena, handoff

pytestmark = pytest.mark.skipif(
    not hasattr(os, "memfd_create") or not Path("/proc/self/fd").is_dir(),
    reason="the ring needs Linux (memfd_create, /proc)",
)


class Items(Dataset):
    """Sample ``i`` is a deterministic function of ``i``: mesh sizes vary so slots must grow."""

    def __init__(self, n: int, die_at: int = -1, k: int = 0) -> None:
        self.n, self.die_at, self.k = n, die_at, k

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if i == self.die_at and torch.utils.data.get_worker_info() is not None:
            os._exit(3)  # a worker killed mid-epoch
        rng = np.random.default_rng(i)
        k = self.k or int(rng.integers(5, 400))
        return {
            "verts": rng.standard_normal((k, 3)).astype(np.float32),
            "faces": rng.integers(0, k, size=(self.k or int(rng.integers(1, 2 * k)), 3)),
            "idx": i,
            "name": f"s{i}",
            **({"colors": rng.random((k, 3)).astype(np.float32)} if i % 3 else {}),
        }


@pytest.fixture(autouse=True)
def _collect():
    """Loaders with persistent workers end when collected: none outlives its test."""
    yield
    gc.collect()


def reference(ds: Items, batch: hl.HeteroBatch) -> hl.HeteroBatch:
    return hl.collate([ds[i] for i in batch.idx.tolist()])


def assert_same(batch: hl.HeteroBatch, ref: hl.HeteroBatch) -> None:
    assert list(batch.keys()) == list(ref.keys())
    for name, value in ref.items():
        got = batch[name]
        if isinstance(value, hl.Ragged):
            assert torch.equal(got.values, value.values), name
            assert torch.equal(got.offsets, value.offsets), name
        elif isinstance(value, torch.Tensor):
            assert torch.equal(got, value), name
        else:
            assert got == value, name
    for name in ref.keys():  # noqa: SIM118 (iterating a batch gives samples)
        assert torch.equal(batch.present(name), ref.present(name))


def loader(ds, **kw) -> DataLoader:
    kw.setdefault("batch_size", 4)
    kw.setdefault("num_workers", 2)
    return DataLoader(ds, collate_fn=hl.collate, **kw)


@pytest.mark.parametrize(("persistent", "in_order"), [(True, True), (False, True), (True, False)])
def test_held_batches_and_views_stay_intact_while_slots_are_reused(persistent, in_order):
    ds = Items(96)
    dl = loader(ds, persistent_workers=persistent, in_order=in_order, shuffle=True)
    before = handoff.stats()
    rnd = random.Random(0)
    held, views, moved = [], [], []
    for _ in range(6):
        for batch in dl:
            roll = rnd.random()
            if roll < 0.3:  # kept whole (72 batches per run would pin every slot: keep some)
                held.append(batch)
            elif roll < 0.45:  # only a view of 4 rows is kept: it alone must keep the slot
                views.append((batch.idx.tolist(), batch.verts.values[3:7]))
            elif roll < 0.55:  # index fields keep their dtype and storage under .to(float64)
                moved.append(batch.to(torch.float64))
            # the rest is dropped at once: its slot goes back and is rewritten
    after = handoff.stats()
    received = after["received"] - before["received"]
    assert received > 0, "the ring was not used"
    # some batches came in a segment mapped before (held ones pin their slots, so not most)
    assert after["mapped"] - before["mapped"] < received
    assert len(held) + len(views) + len(moved) >= 50
    for batch in held:
        assert_same(batch, reference(ds, batch))
    for idx, view in views:
        ref = hl.collate([ds[i] for i in idx])
        assert torch.equal(view, ref.verts.values[3:7])
    for batch in moved:
        ref = reference(ds, batch).to(torch.float64)
        assert torch.equal(batch.verts.values, ref.verts.values)
        assert torch.equal(batch.faces.values, ref.faces.values)


def test_steady_state_maps_no_new_segment(monkeypatch):
    """Batches of one size, dropped at once: each slot is mapped once, then reused forever."""
    monkeypatch.setenv("HETLOAD_RING_SLOTS", "3")  # fork: the workers see it
    ds = Items(64, k=100)
    dl = loader(ds, persistent_workers=True)
    before = handoff.stats()
    n = 0
    for _ in range(5):
        for batch in dl:
            assert_same(batch, reference(ds, batch))
            n += 1
    del batch
    after = handoff.stats()
    assert after["mapped"] - before["mapped"] <= 2 * 3  # workers x slots, whatever the count
    assert after["received"] - before["received"] >= n // 2


def test_every_batch_held_falls_back_to_fresh_segments_without_waiting():
    ds = Items(200)
    held = list(loader(ds, batch_size=2))  # 100 batches held: far more than the rings' slots
    assert len(held) == 100
    for batch in held:
        assert_same(batch, reference(ds, batch))


def test_numpy_arrays_and_torch_save_of_a_batch_outlive_the_loader(tmp_path):
    ds = Items(40)
    arrays, path = [], tmp_path / "batch.pt"
    for k, batch in enumerate(loader(ds, persistent_workers=True)):
        arrays.append((batch.idx.tolist(), batch.faces.values.numpy()))
        if k == 2:
            torch.save(batch, path)
            saved = batch.idx.tolist()
    gc.collect()
    for idx, faces in arrays:
        assert np.array_equal(faces, hl.collate([ds[i] for i in idx]).faces.values.numpy())
    back = torch.load(path, weights_only=False)  # self-contained: no worker, no segment
    assert_same(back, hl.collate([ds[i] for i in saved]))
    assert back.faces.index_base is back.verts.offsets


def test_spawned_workers():
    """In a fresh interpreter: a spawn context leaves multiprocessing's resource tracker
    process running for the rest of the process (other tests count child processes)."""
    run_scenario("spawned_workers_scenario")


def spawned_workers_scenario() -> None:
    ds = Items(48)
    dl = loader(ds, multiprocessing_context="spawn", persistent_workers=True)
    held = []
    for epoch in range(3):
        for k, batch in enumerate(dl):
            if k % 3 == epoch:
                held.append(batch)
    assert handoff.stats()["received"] > 0
    for batch in held:
        assert_same(batch, reference(ds, batch))


def run_scenario(name: str) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_handoff as t; "
        f"t.{name}(); print('scenario ok', flush=True)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # (torch may still report a dead worker from an exit handler: the exit code is noise)
    assert "scenario ok" in done.stdout, done.stderr[-3000:]


def shm_names() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def test_a_killed_worker_leaves_held_batches_intact_and_nothing_behind():
    """Run in a fresh interpreter: torch's SIGCHLD handler raises, at any later point of the
    process, for a worker that died, which would land in another test."""
    run_scenario("killed_worker_scenario")


def killed_worker_scenario() -> None:
    ds = Items(60, die_at=50)
    fds, shm = len(os.listdir("/proc/self/fd")), shm_names()
    held, it = [], iter(loader(ds, batch_size=2, timeout=60))
    pids = {os.getpid(), *(w.pid for w in it._workers)}
    try:
        for batch in it:
            held.append(batch)
    except RuntimeError as exc:  # torch's message, or ours when it died mid-send
        assert "exited" in str(exc)
    except (ConnectionError, EOFError, pickle.UnpicklingError):
        pass  # it died while its queue thread was writing a batch: torch's own path
    else:
        pytest.fail("the worker did not die")
    # torch's SIGCHLD handler would raise again for the dead worker whenever another child
    # exits (the other worker, as it is shut down here): it only reports, so turn it off
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    it._shutdown_workers()
    del it
    gc.collect()
    assert held
    # workers started again for the next epoch of another loader: the held batches stay
    again = iter(loader(Items(24), persistent_workers=False))
    pids |= {w.pid for w in again._workers}
    more = list(again)
    del again
    for batch in held:
        assert_same(batch, reference(ds, batch))
    for batch in more:
        assert_same(batch, reference(Items(24), batch))
    del held, more, batch
    # a closed queue's feeder thread closes its pipe a moment after the loop ends
    for thread in threading.enumerate():
        if thread.name == "QueueFeederThread":
            thread.join(60)
    gc.collect()
    handoff.release_idle()
    for _ in range(100):  # and torch's pin/worker threads end a moment after shutdown
        if len(os.listdir("/proc/self/fd")) <= fds:
            break
        time.sleep(0.1)
    left = {fd: what for fd, what in _fd_targets().items() if int(fd) > 2}
    # what this test is about: no ring segment (memfd, /dev/shm) is kept by the main process.
    # Under load torch's crash path can leave one descriptor of its own: its SIGCHLD handler
    # raises asynchronously, e.g. inside the ten NamedTemporaryFiles DataLoader opens to probe
    # the descriptor limit when a worker died (seen: '/tmp/tmpibndfulb'), or in
    # multiprocessing's fd-passing handshake (a socket, a pipe)
    segments = {fd: what for fd, what in left.items() if "memfd" in what or "/dev/shm" in what}
    assert not segments, segments
    torchs = ("socket:", "pipe:", os.path.join(tempfile.gettempdir(), "tmp"))
    others = [what for what in left.values() if not what.startswith(torchs)]
    assert len(left) <= fds - 3 + 1 and len(others) <= fds - 3, left
    # named segments of this process or its workers only: other processes on the machine (a
    # parallel test run) create and unlink their own
    leaked = {name for name in shm_names() - shm if shm_owner(name) in pids}
    assert not leaked, f"shared-memory segments outlived their worker: {sorted(leaked)}"


def shm_owner(name: str) -> int | None:
    """The pid in torch's segment names (``torch_<pid>_<random>_<n>``), ``None`` in others."""
    parts = name.split("_")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "torch" and parts[1].isdigit() else None


def _fd_targets() -> dict[str, str]:
    """This process's descriptors and what each is (for a failure's message)."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError as exc:
            out[fd] = str(exc)
    return out


class SameBatchTwice(IterableDataset):
    """Yields each batch twice (the second pickling of a slot batch must copy), then the batch
    with one of its tensors beside it (that tensor is pickled first: it moves the storage)."""

    def __iter__(self):
        ds = Items(30)
        for start in range(0, 30, 3):
            batch = hl.collate([ds[i] for i in range(start, start + 3)])
            yield batch
            yield batch
            yield (batch.verts.values, batch)


def test_a_batch_sent_twice_or_with_its_own_tensor_beside_it():
    ds = Items(30)
    dl = DataLoader(SameBatchTwice(), batch_size=None, num_workers=1)
    firsts, pairs = [], []
    for k, item in enumerate(dl):
        if k % 3 == 1:
            firsts.append(item)  # keep the second copy; the first one is dropped
        elif k % 3 == 2:
            pairs.append(item)
    for batch in firsts:
        assert_same(batch, reference(ds, batch))
    for values, batch in pairs:
        ref = reference(ds, batch)
        assert_same(batch, ref)
        assert torch.equal(values, ref.verts.values)


def test_ring_off_by_environment(monkeypatch):
    monkeypatch.setenv("HETLOAD_RING", "0")
    ds = Items(24)
    before = handoff.stats()["received"]
    held = list(loader(ds))  # fork: the workers see the variable
    assert handoff.stats()["received"] == before
    for batch in held:
        assert_same(batch, reference(ds, batch))


def test_main_mappings_stay_bounded_when_workers_restart_every_epoch():
    ds = Items(64)
    dl = loader(ds, persistent_workers=False)
    counts = []
    for _ in range(6):
        for _batch in dl:
            pass
        del _batch
        counts.append(handoff.stats()["maps"])
    # each epoch's new workers replace the last epoch's segments: no growth epoch over epoch
    assert max(counts) <= 2 * arena.RING_SLOTS + 2 * arena.RING_SLOTS
    assert counts[-1] <= counts[1] + 2 * arena.RING_SLOTS
    gc.collect()
    handoff.release_idle()
    assert handoff.stats()["maps"] == handoff.stats()["held"] == 0


# ---------------------------------------------------------------------------- the ring alone
def test_ring_lends_a_slot_again_only_when_both_sides_let_go():
    ring = arena.Ring(2)
    try:
        a, b = ring.lend(100), ring.lend(5000)
        assert ring.lend(10) is None  # both busy: the caller falls back, never waits
        slot_a = ring.slot_of(a.untyped_storage())
        assert slot_a is not None and slot_a.capacity >= 100
        view = a[10:20]
        del a
        assert ring.lend(10) is None  # a view keeps the batch alive
        del view
        slot_a.map.set_byte(0, 1)  # sent: the main process holds it now
        assert ring.lend(10) is None
        slot_a.map.set_byte(0, 0)  # the main process let go
        c = ring.lend(10)
        assert ring.slot_of(c.untyped_storage()) is slot_a
        del b
        grown = ring.lend(100_000)  # a free slot too small: regrown, a new generation
        slot = ring.slot_of(grown.untyped_storage())
        assert slot.capacity >= 100_000 and slot.generation == ring.created
        del c, grown
    finally:
        for slot in ring.slots:
            slot.close()


def test_plain_pickling_outside_workers_is_self_contained():
    ds = Items(9)
    batch = hl.collate([ds[i] for i in range(9)])
    for back in (
        pickle.loads(pickle.dumps(batch)),
        pickle.loads(pickle.dumps(batch, protocol=2)),
        torch.load(_saved(batch), weights_only=False),
    ):
        assert_same(back, batch)
        assert back.faces.index_base is back.verts.offsets
    ragged = torch.load(_saved(batch.faces), weights_only=False)
    assert torch.equal(ragged.values, batch.faces.values)
    assert torch.equal(ragged.index_base, batch.verts.offsets)


def _saved(obj) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_a_reused_pid_never_gets_an_exited_workers_mapping():
    """(pid, slot, generation) names a segment only with the file it came with: a new worker
    that got an exited worker's pid sends another file, which is mapped anew."""
    from hetload.handoff import _Receiver
    from hetload.shm import memfd

    receiver = _Receiver()
    owner = (os.getpid(), 0, 0, 1)
    fds = [memfd("t", arena.HEADER + 4096) for _ in range(2)]
    first = None
    try:
        first = receiver.mapping(fds[0], owner)
        first.map.buffer[arena.HEADER] = 7
        assert receiver.mapping(None, owner) is first  # known: sent without a descriptor
        assert first.outstanding == 2
        second = receiver.mapping(fds[1], owner)
        assert second is not first and second.map.buffer[arena.HEADER] == 0
        assert first.stale and first.map.address  # still counted: stays mapped
        with pytest.raises(RuntimeError, match="has not mapped"):
            receiver.mapping(None, (os.getpid(), 0, 1, 1))
    finally:
        for fd in fds:
            os.close(fd)
        for m in [*receiver.maps.values(), first]:
            if m is not None:  # no tensor views these: unmapping is safe
                m.map.close()


def test_a_bad_slot_count_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("HETLOAD_RING_SLOTS", "eight")
    monkeypatch.setattr(arena._state, "pid", -1)
    monkeypatch.setattr(arena._state, "ring", None)
    with pytest.raises(ValueError, match="HETLOAD_RING_SLOTS must be an integer"):
        arena._ring()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pin_memory needs an accelerator")
def test_pinned_batches_free_their_slot_at_once():
    """DataLoader(pin_memory=True): the pin thread copies each batch into page-locked memory
    and drops it, so its slot goes back with the next batch, whatever the user keeps."""
    ds = Items(64)
    before = handoff.stats()
    held = list(loader(ds, pin_memory=True, persistent_workers=True))
    after = handoff.stats()
    received = after["received"] - before["received"]
    assert received > len(held) // 2  # all kept, yet the slots kept coming back
    assert after["held"] - before["held"] <= 2
    for batch in held:
        assert batch.verts.values.is_pinned()
        assert_same(batch, reference(ds, batch))


def test_batch_reads_with_labels_arrive_in_the_slot_form(tmp_path):
    """A batch read straight into its buffer (hetload.packed) collates its labels and flags
    apart, in small storages: those travel inline beside the slot, so the batch still arrives
    without a new segment, and held batches stay intact while slots are reused."""
    from hetload.data import ShardDataset
    from hetload.samplers.repeats import MarkRepeats
    from hetload.shards.writer import write_shards

    rng = np.random.default_rng(0)
    samples = []
    for i in range(48):
        k = int(rng.integers(5, 300))
        samples.append(
            {
                "verts": rng.standard_normal((k, 3)).astype(np.float32),
                "faces": rng.integers(0, k, size=(k, 3)),
                "label": np.int64(i % 5),
            }
        )
    write_shards(samples, tmp_path, max_count=8)
    ds = ShardDataset(tmp_path)
    assert type(ds.__getitems__([0, 1])).__name__ == "PackedSamples"
    dl = DataLoader(MarkRepeats(ds), batch_size=4, num_workers=2, collate_fn=hl.collate)
    before = handoff.stats()
    held = []
    for _epoch in range(3):
        for j, batch in enumerate(dl):
            if j % 3 == 0:
                held.append(batch)
    after = handoff.stats()
    assert after["received"] - before["received"] == 36  # every batch, in the slot form
    position = {ds[i]["key"]: i for i in range(len(ds))}
    for batch in held:
        ref = hl.collate([ds[position[key]] for key in batch.key])
        assert torch.equal(batch.verts.values, ref.verts.values)
        assert torch.equal(batch.faces.values, ref.faces.values)
        assert torch.equal(batch.label, ref.label)
