"""Guards at the I/O seams: every path where a file is expected refuses a FIFO, a device or a
folder with an error naming it (never blocks); error text is bounded (a YAML alias bomb is never
expanded); config numbers are range-checked before use; seeds, epochs and sampler sizes at the
edges of their integer types are ValueErrors."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import hetload as hl
from hetload.cli import main
from hetload.config import SCHEMA, ConfigError, build_loader, load_config
from hetload.data import MeshFolder, ShardStream
from hetload.guards import NotRegularFile, check_seed, open_regular, shown
from hetload.io import ReadError
from hetload.samplers import BucketBatchSampler
from hetload.shards.writer import write_shards

GOOD_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def _alias_bomb(levels: int = 9) -> str:
    """A YAML list of ``levels`` anchors, each 9 aliases of the one before: ~400 bytes that
    expand to 9**9 (387 million) strings."""
    anchors = ['&a ["xxxxxxxx", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels):
        previous, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        anchors.append(f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "[" + ", ".join(anchors) + "]"


# ------------------------------------------------------------------ shown
def test_shown_is_bounded_and_lazy():
    bomb = yaml.safe_load(_alias_bomb())  # shared lists: cheap in memory, huge under repr
    start = time.process_time()
    text = shown(bomb, 80)
    assert len(text) <= 83 and text.endswith("...") and text.startswith("[['xxxxxxxx'")
    assert time.process_time() - start < 1.0  # a reference repr() would not finish
    assert shown("y" * 10**6, 20).endswith("...") and len(shown("y" * 10**6, 20)) <= 23
    assert shown(10**5000) == "<an int of 16610 bits>"  # str() of it raises ValueError
    assert shown({"a": [1, 2]}) == repr({"a": [1, 2]})
    assert shown((1,)) == "(1,)" and shown((1, "a")) == "(1, 'a')" and shown({3}) == "{3}"
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert len(shown(deep)) < 90  # no RecursionError


# ------------------------------------------------------------------ regular files
@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.obj"
    os.mkfifo(path)
    return path


def test_open_regular_refuses_without_blocking(fifo, tmp_path):
    with pytest.raises(NotRegularFile, match=r"pipe\.obj: is a FIFO \(named pipe\)"):
        open_regular(fifo)
    with pytest.raises(NotRegularFile, match="is a folder"):
        open_regular(tmp_path)
    with pytest.raises(NotRegularFile, match="is a character device"):
        open_regular("/dev/null")
    (tmp_path / "ok.obj").write_text(GOOD_OBJ)
    with open_regular(tmp_path / "ok.obj") as fh:
        assert fh.read() == GOOD_OBJ.encode()


def test_io_load_and_scan_refuse_non_regular_files(fifo, tmp_path):
    for fn in (hl.io.load, hl.io.scan):
        with pytest.raises(ReadError, match=r"pipe\.obj: is a FIFO"):
            fn(fifo)
        with pytest.raises(ReadError, match="is a character device"):
            fn("/dev/zero")  # would never end
        (tmp_path / "dir.obj").mkdir(exist_ok=True)
        with pytest.raises(ReadError, match="is a folder"):
            fn(tmp_path / "dir.obj")


def test_mesh_folder_names_a_fifo_and_skips_it(fifo):
    (fifo.parent / "ok.obj").write_text(GOOD_OBJ)
    (fifo.parent / "sub.obj").mkdir()  # a folder named like a mesh is not a candidate
    with pytest.raises(ReadError, match=r"pipe\.obj: is a FIFO"):
        MeshFolder(fifo.parent, index=None, progress=False)
    ds = MeshFolder(fifo.parent, on_error="skip", index=None, progress=False)
    assert [p.name for p in ds.files] == ["ok.obj"]
    assert [Path(s.source).name for s in ds.report] == ["pipe.obj"]


def test_check_lists_a_fifo_as_a_bad_file(fifo, capsys):
    (fifo.parent / "ok.obj").write_text(GOOD_OBJ)
    assert main(["check", str(fifo.parent)]) != 0
    out = capsys.readouterr().out
    assert "pipe.obj" in out and "FIFO" in out


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocked open() of a FIFO."""

    def expired(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_preprocess_skips_a_fifo_instead_of_blocking(fifo, tmp_path, capsys):
    """Regression: `hetload preprocess` opened a FIFO named *.obj and blocked forever, even
    with --on-error skip."""
    (fifo.parent / "ok.obj").write_text(GOOD_OBJ)
    dst = tmp_path / "out"
    with _deadline(60):
        assert main(["preprocess", str(fifo.parent), str(dst), "--on-error", "skip"]) == 0
        errors = (dst / "errors.jsonl").read_text()
        assert "pipe.obj" in errors and "FIFO" in errors
        assert main(["preprocess", str(fifo.parent), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "pipe.obj" in err and "FIFO" in err and "Traceback" not in err


def test_config_files_that_are_not_regular_are_refused(fifo, tmp_path):
    with pytest.raises(ConfigError, match=r"pipe\.obj: is a FIFO .*expected a YAML config"):
        load_config(fifo)
    write_shards([{"verts": np.zeros((2, 3), np.float32)}], tmp_path / "shards")
    index = tmp_path / "shards" / "index.json"
    index.unlink()
    os.mkfifo(index)
    with pytest.raises(ConfigError, match=r"index\.json: is a FIFO"):
        build_loader({"dataset": {"type": "ShardDataset", "path": str(index)}})


# ------------------------------------------------------------------ config values
def _config(tmp_path: Path, body: str) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "m.obj").write_text(GOOD_OBJ)
    path = tmp_path / "cfg.yaml"
    path.write_text("dataset:\n  type: MeshFolder\n  root: data\n" + body)
    return path


BOMB_PLACES = [
    ("sampler:\n  max_tokens: {bomb}\n", "sampler.max_tokens"),
    ("sampler:\n  max_tokens: {{verts: {bomb}}}\n", "sampler.max_tokens"),
    ("transforms: {bomb}\n", "transforms[0]"),
    ("transforms:\n  - Jitter: {bomb}\n", "transforms[0]"),
    ("device:\n  pad: {bomb}\n", "device.pad"),
    ("collate:\n  schema: {{verts: {bomb}}}\n", "collate.schema"),
    ("loader: {bomb}\n", "loader"),
    ("distributed:\n  rank: {bomb}\n", "distributed.rank"),
]


@pytest.mark.parametrize("body, key", BOMB_PLACES)
def test_a_yaml_alias_bomb_is_never_expanded_in_messages(tmp_path, body, key):
    """Regression: the validators' messages called repr() on the value, which expands a
    600-byte alias bomb to gigabytes (MemoryError at a 3 GB limit)."""
    path = _config(tmp_path, body.format(bomb=_alias_bomb()))
    assert path.stat().st_size < 700
    start = time.process_time()
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")) as info:
        load_config(path)
    assert len(str(info.value)) < 400
    assert time.process_time() - start < 5.0


NUMBERS = [
    ("sampler:\n  max_tokens: 1.0e+30\n", "sampler.max_tokens", "more than 2[*][*]63 - 1"),
    ("sampler:\n  max_tokens: {verts: 1.0e+30}\n", "sampler.max_tokens", "more than 2[*][*]63"),
    ("sampler:\n  max_tokens: .nan\n", "sampler.max_tokens", "got nan"),
    ("sampler:\n  max_batch_size: 1.0e+300\n", "sampler.max_batch_size", "more than"),
    ("sampler:\n  seed: -1\n", "sampler.seed", "got -1"),
    ("sampler:\n  seed: 1.0e+19\n", "sampler.seed", "more than 2[*][*]63 - 1"),
    ("sampler:\n  windows: 1.0e+30\n", "sampler.windows", "more than"),
    ("loader:\n  num_workers: 1000000\n", "loader.num_workers", r"in \[0, 1024\]"),
    ("loader:\n  timeout: 1.0e+300\n", "loader.timeout", r"in \[0, 31536000\]"),
    ("distributed:\n  world_size: 9.0e+18\n", "distributed.world_size", r"in \[1, 1048576\]"),
]


@pytest.mark.parametrize("body, key, reason", NUMBERS)
def test_numbers_out_of_range_are_config_errors_naming_the_key(tmp_path, body, key, reason):
    """Regression: max_tokens: 1.0e+30 passed validation, then raised OverflowError."""
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')}: .*{reason}"):
        build_loader(_config(tmp_path, body))


@pytest.mark.parametrize("value", ["abc", "-2", "1e30", "99999999999999999999"])
def test_world_size_from_the_environment_is_checked(tmp_path, monkeypatch, value):
    monkeypatch.setenv("WORLD_SIZE", value)
    with pytest.raises(ConfigError, match=r"distributed\.world_size: auto reads \$WORLD_SIZE"):
        build_loader(_config(tmp_path, ""))


def test_bench_prints_one_line_for_a_config_error(tmp_path):
    """Regression: `hetload bench` printed a traceback (OverflowError)."""
    path = _config(tmp_path, "sampler:\n  max_tokens: 1.0e+30\n")
    result = subprocess.run(
        [sys.executable, "-m", "hetload", "bench", str(path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sampler.max_tokens" in lines[0]


def test_an_override_bomb_is_bounded_too(tmp_path):
    path = _config(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(path, [f"sampler.max_tokens={_alias_bomb()}"])
    assert len(str(info.value)) < 1200  # the override text itself is shown cut short


# ------------------------------------------------------------------ seeds, epochs, sizes
@pytest.mark.parametrize("value", [-1, 2**63, 2**64, 1.5, 3.0, float("nan"), True, "1", None])
def test_seeds_and_epochs_out_of_range_are_value_errors(tmp_path, value):
    with pytest.raises(ValueError, match="seed must be"):
        check_seed(value, "seed")
    write_shards([{"verts": np.zeros((2, 3), np.float32)}], tmp_path / "s")
    with pytest.raises(ValueError, match="ShardStream: seed must be"):
        ShardStream(tmp_path / "s", batch_size=1, seed=value)
    with pytest.raises(ValueError, match="ShardStream: epoch must be"):
        ShardStream(tmp_path / "s", batch_size=1).set_epoch(value)
    with pytest.raises(ValueError, match="BucketBatchSampler: seed must be"):
        BucketBatchSampler([1, 2], max_tokens=4, seed=value)
    with pytest.raises(ValueError, match="BucketBatchSampler: epoch must be"):
        BucketBatchSampler([1, 2], max_tokens=4).set_epoch(value)
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "a.obj").write_text(GOOD_OBJ)
    with pytest.raises(ValueError, match="MeshFolder: seed must be"):
        MeshFolder(tmp_path / "m", seed=value, index=None)
    with pytest.raises(ValueError, match="MeshFolder: epoch must be"):
        MeshFolder(tmp_path / "m", index=None).set_epoch(value)


def test_largest_seed_and_epoch_work():
    sampler = BucketBatchSampler([1, 2, 3], max_tokens=4, seed=2**63 - 1)
    sampler.set_epoch(2**63 - 1)
    assert sorted(i for batch in sampler for i in batch) == [0, 1, 2]


SIZES = [
    ([3, -1], "sizes must be >= 0"),
    (np.array([2**63], dtype=np.uint64), "at most 2[*][*]48"),
    ([2**64 + 1], r"in \[0, 2\*\*63\)"),  # numpy keeps it as an object
    ([1.5, 2.0], "must be integers"),
    ([float("nan")], "must be integers"),
    ([True, False], "must be integers"),
    ([2**49], "at most 2[*][*]48"),
    ([2**47] * 40_000, "add up to 2[*][*]62 or more"),
    ([[1, 2], [3]], "sizes must be"),
]


@pytest.mark.parametrize("sizes, expected", SIZES)
def test_sampler_sizes_at_the_edges_of_integer_types(sizes, expected):
    with pytest.raises(ValueError, match=expected):
        BucketBatchSampler(sizes, max_tokens=2**61)


@pytest.mark.parametrize("budget", [1e30, float("nan"), 10**400, 2**62 + 1, "100", True, 0, -5])
def test_sampler_budgets_out_of_range(budget):
    with pytest.raises(ValueError, match="max_tokens: limits must be positive integers"):
        BucketBatchSampler([1, 2, 3], max_tokens=budget)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--workers", "100000000"], r"workers must be in \[1, 1024\]"),
        (["--seed", "-1"], "--seed must be in"),
        (["--seed", "99999999999999999999999"], "--seed must be in"),
    ],
)
def test_preprocess_refuses_worker_counts_and_seeds_out_of_range(tmp_path, capsys, args, expected):
    """Regression: --workers 100000000 tried to start 10**8 processes (hung), and a negative
    seed was taken (then every file failed its transform's generator)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.obj").write_text(GOOD_OBJ)
    assert main(["preprocess", str(tmp_path / "src"), str(tmp_path / "dst"), *args]) == 2
    assert re.search(expected, capsys.readouterr().err)
    assert not (tmp_path / "dst" / "index.json").exists()


def test_mesh_folder_and_check_bound_their_workers(tmp_path, capsys):
    (tmp_path / "a.obj").write_text(GOOD_OBJ)
    with pytest.raises(ValueError, match="scan_workers must be in"):
        MeshFolder(tmp_path, scan_workers=10**9, index=None)
    assert main(["check", str(tmp_path), "--workers", "100000"]) == 2
    assert "--workers must be in [1, 1024]" in capsys.readouterr().err


_ODD_VALUES = [
    *(None, True, -1, 0, 2**63, 10**30, 1.5, 1e30, float("nan"), float("inf"), -1e300),
    *("", "x", "auto", "os:system", "\x00", "/dev/zero", [], [1], ["verts"], {}, {"verts": 1}),
]


@pytest.mark.parametrize("section", sorted(SCHEMA))
def test_every_config_key_takes_odd_values_as_config_errors(tmp_path, section):
    """Every key of every section set to values of other types and ranges: building the
    loader either works or raises a ConfigError of bounded length; nothing else escapes."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.obj").write_text(GOOD_OBJ)
    for key in SCHEMA[section]:
        for value in _ODD_VALUES:
            config = {"dataset": {"type": "MeshFolder", "root": str(tmp_path / "data")}}
            config.setdefault(section, {})[key] = value
            try:
                build_loader(config)
            except ConfigError as exc:
                assert len(str(exc)) < 600, (section, key, value)


def test_a_fifo_as_report_or_size_cache_never_blocks(fifo, tmp_path):
    (tmp_path / "ok.obj").write_text(GOOD_OBJ)
    with pytest.raises(NotRegularFile, match=r"pipe\.obj: is a FIFO"):
        MeshFolder(tmp_path, index=None, report_path=fifo, on_error="skip")
    other = tmp_path / "cache.json"
    os.mkfifo(other)
    with _deadline(60):  # the size cache is a FIFO: read as a miss, never opened blocking
        ds = MeshFolder(tmp_path, index=other, on_error="skip", progress=False)
    assert [p.name for p in ds.files] == ["ok.obj"]
