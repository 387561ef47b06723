"""ShardHandles: at most max_open descriptors kept, a pinned one never closed under its reader
(by an eviction or close()), nothing pinned after a failed pin, a fork's child starts afresh."""

from __future__ import annotations

import os

import numpy as np
import pytest
from threads import run_threads

from hetload.data import ShardDataset
from hetload.data.shard_handles import ShardHandles
from hetload.shards import ShardError
from hetload.shards.writer import write_shards


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def files(tmp_path):
    paths = []
    for k in range(4):
        path = tmp_path / f"f{k}"
        path.write_bytes(bytes([k]) * 10)
        paths.append(str(path))
    return paths


def test_a_pinned_descriptor_outlives_eviction_and_close(files):
    handles = ShardHandles(max_open=1)
    first = handles.pin([0], files.__getitem__)[0]
    other = handles.pin([1, 2], files.__getitem__)  # evicts nothing pinned
    assert len(handles) == 3 and all(is_open(fd) for fd in [first, *other.values()])
    handles.unpin(other.values())
    assert len(handles) == 1 and is_open(first)  # back to max_open, the pinned one kept
    assert os.pread(first, 1, 0) == b"\x00"
    handles.close()
    assert is_open(first)  # closed at its last unpin, not under its reader
    handles.unpin([first])
    assert not is_open(first) and len(handles) == 0
    again = handles.pin([0], files.__getitem__)[0]  # reopened on the next read
    assert os.pread(again, 1, 0) == b"\x00"
    handles.unpin([again])
    handles.close()


def test_a_failed_pin_leaves_nothing_pinned(files, tmp_path):
    handles = ShardHandles(max_open=8)
    urls = [*files[:2], str(tmp_path / "missing")]
    with pytest.raises(ShardError, match="listed in the index but missing"):
        handles.pin([0, 1, 2], urls.__getitem__)
    assert handles._pins == {}
    handles.close()
    assert len(handles) == 0


def test_threads_reading_through_one_descriptor_each_with_max_open_1(tmp_path):
    """Many threads, every read evicting another shard's handle: each read gets its shard's
    bytes (a closed or reused descriptor would read another file or fail)."""
    samples = [{"verts": np.full((k + 1, 3), k, np.float32)} for k in range(24)]
    write_shards(samples, tmp_path, max_count=2)  # 12 shards
    ds = ShardDataset(tmp_path, max_open=1)

    def read(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for i in rng.integers(0, 24, size=150).tolist():
            assert (ds[i]["verts"] == i).all()
            batch = ds.__getitems__(rng.integers(0, 24, size=5).tolist())
            for sample in batch:
                k = len(sample["verts"]) - 1
                assert (sample["verts"] == k).all()

    run_threads(read, [(s,) for s in range(4)])  # raises the first thread's failure
    assert len(ds._handles) <= 1 and ds._handles._pins == {}
    ds.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own(files):
    handles = ShardHandles(max_open=4)
    parent = handles.pin([0], files.__getitem__)[0]
    pid = os.fork()
    if pid == 0:  # the child: the parent's descriptors are not its handles
        ok = len(handles) == 0
        mine = handles.pin([0], files.__getitem__)[0]
        ok = ok and os.pread(mine, 1, 0) == b"\x00"
        handles.unpin([mine])
        handles.close()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert is_open(parent) and len(handles) == 1
    handles.unpin([parent])
    handles.close()
