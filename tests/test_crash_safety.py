"""Crash-safe preprocessing: ``hetload preprocess`` killed anywhere, or out of disk space, and
restarted, ends with exactly the shards and index of an uninterrupted run.

- every durable step: a forked run is SIGKILLed just before its k-th file-system step (a data
  write into a shard, an fsync, a rename, a journal append, an unlink), for every k of a whole
  run; after each kill no final-named file is incomplete, and the restart finishes it;
- chains of kills: several kills in a row at random steps before one restart finishes;
- the real command line with a process pool, SIGKILLed at random moments;
- a full disk: simulated at each kind of write (shard data, journal, index), and a real tiny
  tmpfs (where this process may mount one), gives an error naming the folder and telling
  that a rerun resumes, keeps nothing half-written under a final name, and resumes.

(``tests/test_preprocess.py`` holds the plain resume tests: KeyboardInterrupt after n files, a
torn journal line, three CLI kills timed by journal lines.)
"""

from __future__ import annotations

import errno
import importlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import hetload.io as hio
from hetload.data import ShardDataset
from hetload.shards import index as shard_index
from hetload.shards import journal as shard_journal
from hetload.shards.index import write_atomic
from hetload.shards.preprocess import preprocess
from hetload.shards.writer import ShardWriter

# the module that writes the final index and errors.jsonl (preprocess's run state)
shard_resume = importlib.import_module("hetload.shards.resume")

REPO = Path(__file__).resolve().parents[1]
MAX_COUNT = 3


def write_meshes(root: Path, n: int, seed: int, max_verts: int = 60) -> None:
    """``n`` small OBJ / binary PLY meshes in two folders, plus one unreadable file."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        nv = int(rng.integers(3, max_verts))
        verts = rng.standard_normal((nv, 3)).astype(np.float32)
        faces = rng.integers(0, nv, size=(int(rng.integers(1, 2 * nv)), 3))
        path = root / ("ab"[i % 2]) / f"m{i:03d}.{'obj' if i % 3 else 'ply'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".obj":
            lines = [f"v {x!r} {y!r} {z!r}" for x, y, z in verts.astype(float).tolist()]
            lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces.tolist()]
            path.write_text("\n".join(lines) + "\n")
        else:
            header = (
                "ply\nformat binary_little_endian 1.0\n"
                f"element vertex {nv}\nproperty float x\nproperty float y\nproperty float z\n"
                f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
            )
            rows = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
            rows["n"], rows["i"] = 3, faces
            path.write_bytes(header.encode() + verts.tobytes() + rows.tobytes())
    (root / "b" / "broken.obj").write_text("v 1 2\nf 1 2 3\n")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run(src: Path, dst: Path, **kwargs):
    return preprocess(src, dst, max_count=MAX_COUNT, on_error="skip", progress=False, **kwargs)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("meshes")
    write_meshes(root, 14, seed=1)
    return root


@pytest.fixture(scope="module")
def reference(src, tmp_path_factory) -> dict[str, bytes]:
    dst = tmp_path_factory.mktemp("reference")
    run(src, dst)
    return tree(dst)


def assert_nothing_half_written(dst: Path, reference: dict[str, bytes]) -> None:
    """Whatever carries a final name is complete: shards byte-equal to the uninterrupted run's,
    and an ``index.json`` only when every shard it lists is there in full."""
    for path in dst.glob("shard-*.tar"):
        assert path.read_bytes() == reference[path.name], f"{path.name} is incomplete"
    if (dst / "index.json").exists():
        assert (dst / "index.json").read_bytes() == reference["index.json"]
        assert all((dst / name).exists() for name in reference if name.startswith("shard-"))


def assert_same_as_reference(dst: Path, reference: dict[str, bytes], ref_dir: Path) -> None:
    assert tree(dst) == reference
    got, want = ShardDataset(dst), ShardDataset(ref_dir)
    assert len(got) == len(want)
    for i in range(len(want)):
        a, b = got[i], want[i]
        assert got.key(i) == want.key(i) and a.keys() == b.keys()
        assert a.pop("key") == b.pop("key")
        for name in b:
            assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


# ------------------------------------------------------------------ kill at every step
class _Steps:
    """Counts file-system steps; at step ``kill_at`` the process SIGKILLs itself (buffered
    bytes not yet written are lost, as in a real kill)."""

    def __init__(self, kill_at: int | None) -> None:
        self.kill_at = kill_at
        self.count = 0

    def wrap(self, fn: Callable) -> Callable:
        def step(*args, **kwargs):
            self.count += 1
            if self.count == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)

        return step

    def patches(self) -> list:
        return [
            mock.patch.object(ShardWriter, "_write", self.wrap(ShardWriter._write)),
            mock.patch("os.fsync", self.wrap(os.fsync)),
            mock.patch("os.replace", self.wrap(os.replace)),
            mock.patch("os.write", self.wrap(os.write)),
            mock.patch("os.unlink", self.wrap(os.unlink)),
        ]


def run_forked(src: Path, dst: Path, kill_at: int | None) -> tuple[bool, int]:
    """Run ``preprocess`` in a forked child that dies at step ``kill_at``: ``(killed, steps
    the child counted)`` (the count is known only when it was not killed)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            steps = _Steps(kill_at)
            with ExitStack() as stack:
                for patch in steps.patches():
                    stack.enter_context(patch)
                run(src, dst)
            os.write(write, str(steps.count).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        counted = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True, -1
    assert os.WEXITSTATUS(status) == 0, "the child run failed"
    return False, int(counted)


@pytest.fixture(scope="module")
def steps_per_run(src, tmp_path_factory) -> int:
    killed, count = run_forked(src, tmp_path_factory.mktemp("count") / "dst", None)
    assert not killed and count > 50
    return count


def test_kill_before_every_step_then_restart(src, reference, steps_per_run, tmp_path):
    """One kill per run at each step k of a whole run (every shard data write, fsync, rename,
    journal append and unlink), then an uninterrupted restart."""
    ref_dir = tmp_path / "ref"
    run(src, ref_dir)
    killed_runs = 0
    for k in range(1, steps_per_run + 1):
        dst = tmp_path / f"k{k}"
        killed, _ = run_forked(src, dst, kill_at=k)
        assert killed, f"step {k} of {steps_per_run} was never reached"
        killed_runs += 1
        assert_nothing_half_written(dst, reference)
        # index.json appears only in the last steps (the journal and lock removals follow it)
        assert not (dst / "index.json").exists() or k > steps_per_run - 3
        run(src, dst)
        assert tree(dst) == reference, f"killed at step {k}"
        shutil.rmtree(dst)
    assert killed_runs == steps_per_run
    dst = tmp_path / "last"
    run_forked(src, dst, kill_at=steps_per_run // 2)
    run(src, dst)
    assert_same_as_reference(dst, reference, ref_dir)


def test_chains_of_kills_at_random_steps(src, reference, steps_per_run, tmp_path):
    """Several runs in a row, each killed at a random step, before one restart finishes."""
    rng = random.Random(11)
    ref_dir = tmp_path / "ref"
    run(src, ref_dir)
    kills = 0
    for chain in range(4):
        dst = tmp_path / f"chain{chain}"
        for _ in range(rng.randint(2, 6)):
            killed, _ = run_forked(src, dst, kill_at=rng.randint(1, steps_per_run // 3))
            kills += killed
            assert_nothing_half_written(dst, reference)
            if not killed:
                break
        run(src, dst)
        assert_same_as_reference(dst, reference, ref_dir)
    assert kills >= 8


def test_cli_with_a_process_pool_killed_at_random_moments(tmp_path):
    """``hetload preprocess --workers 2`` SIGKILLed (with its pool) at random times after it
    starts writing, four times, then run to the end: the result equals an uninterrupted run."""
    src = tmp_path / "src"
    write_meshes(src, 90, seed=5, max_verts=400)
    run(src, tmp_path / "ref")
    reference = tree(tmp_path / "ref")
    dst = tmp_path / "dst"
    command = [sys.executable, "-m", "hetload", "preprocess", str(src), str(dst), "--quiet"]
    command += ["--max-count", str(MAX_COUNT), "--workers", "2", "--on-error", "skip"]
    rng = random.Random(3)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        journal = dst / ".hetload-journal.jsonl"
        deadline = time.monotonic() + 60
        while proc.poll() is None and not journal.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert_nothing_half_written(dst, reference)
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert tree(dst) == reference
    assert kills >= 3


# ------------------------------------------------------------------ full disk
def _enospc(after: int, real: Callable) -> Callable:
    calls = [0]

    def write(*args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    return write


@pytest.mark.parametrize(
    "target, after",
    [
        ("shard data", 0),
        ("shard data", 40),
        ("journal", 2),
        ("index", 0),
        ("index", 1),
    ],
)
def test_full_disk_is_a_clear_error_and_resumes(src, reference, tmp_path, target, after):
    dst = tmp_path / "dst"
    patch = {
        "shard data": lambda: mock.patch.object(
            ShardWriter, "_write", _enospc(after, ShardWriter._write)
        ),
        "journal": lambda: mock.patch.object(
            shard_journal.Journal,
            "_append",
            staticmethod(_enospc(after, shard_journal.Journal._append)),
        ),
        # errors.jsonl, then index.json: one counter over both modules' name for the function
        "index": lambda: _patch_both(
            (shard_index, shard_resume), "write_atomic", _enospc(after, write_atomic)
        ),
    }[target]
    with patch(), pytest.raises(OSError) as caught:
        run(src, dst)
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC
    assert str(dst) in message and "rerun" in message, message
    assert_nothing_half_written(dst, reference)
    assert not (dst / "index.json").exists()
    assert not list(dst.glob("shard-*.partial")), "the unfinished shard was not dropped"
    run(src, dst)
    assert tree(dst) == reference


def _patch_both(modules, name: str, value) -> ExitStack:
    stack = ExitStack()
    for module in modules:
        stack.enter_context(mock.patch.object(module, name, value))
    return stack


def test_a_short_journal_write_is_completed(src, reference, tmp_path):
    """On a nearly full disk ``write`` may store only part of a line and return the count; the
    rest must still be written, or the next line lands after a torn one and the journal is
    unreadable on restart."""
    real_write, real_load, loads, writes = os.write, hio.load, [0], [0]

    def short_write(fd, data):
        writes[0] += 1  # the second journal line is cut in half, once
        cut = len(data) // 2 if writes[0] == 2 else len(data)
        return real_write(fd, bytes(data)[:cut])

    def dying_load(*args, **kwargs):
        loads[0] += 1
        if loads[0] > 13:  # after four journal lines
            raise KeyboardInterrupt
        return real_load(*args, **kwargs)

    with (
        mock.patch("os.write", short_write),
        mock.patch.object(hio, "load", dying_load),
        pytest.raises(KeyboardInterrupt),
    ):
        run(src, tmp_path / "dst")
    run(src, tmp_path / "dst")
    assert tree(tmp_path / "dst") == reference


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 40 KiB tmpfs mounted at ``tmp_path / "disk"``; skips where mounting is not allowed."""
    mount = shutil.which("mount")
    point = tmp_path / "disk"
    point.mkdir()
    if mount is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(point)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_real_full_disk_on_a_tiny_tmpfs(src, reference, tiny_tmpfs):
    total = sum(len(data) for data in reference.values())
    assert total > 2 * 40 * 1024, "the output must not fit the tmpfs"
    dst = tiny_tmpfs / "dst"
    command = [sys.executable, "-m", "hetload", "preprocess", str(src), str(dst), "--quiet"]
    command += ["--max-count", str(MAX_COUNT), "--on-error", "skip"]
    failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert failed.returncode == 2
    assert "No space left on device" in failed.stderr and "rerun" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert_nothing_half_written(dst, reference)
    assert not list(dst.glob("shard-*.partial")), "the unfinished shard still takes space"
    # free space (a bigger tmpfs), and the same command finishes the run
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_tmpfs)], check=True)
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert tree(dst) == reference
