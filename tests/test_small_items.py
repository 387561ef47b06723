"""The small things a new user trips over: --version, build-ext's help, the sampler's default
windows in configs and Python, a short ShardIndex repr, warnings at the caller's line, PyG's y."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import hetload as hl
from hetload.config.schema import SCHEMA
from hetload.samplers import BucketBatchSampler
from hetload.shards import ShardIndex, write_shards

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hetload", *args], capture_output=True, text=True, timeout=120
    )


def test_version_and_build_ext_help():
    done = _cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"hetload {hl.__version__}"
    text = _cli("build-ext", "--help").stdout
    assert "``" not in text and ":func:" not in text, "raw RST markup in --help"
    assert "Compiled kernels" in text
    assert "## Compiled kernels" in (REPO / "README.md").read_text()


def test_windows_default_is_the_same_in_configs_and_python():
    python = inspect.signature(BucketBatchSampler).parameters["windows"].default
    assert SCHEMA["sampler"]["windows"].default == python


def test_shard_index_repr_is_short(tmp_path):
    samples = [{"verts": np.zeros((i, 3), np.float32)} for i in range(300)]
    write_shards(samples, tmp_path, max_count=50)
    index = ShardIndex.load(tmp_path)
    text = repr(index)
    assert len(text) < 300 and "shards=6" in text and "samples=300" in text, text
    assert len(repr(index.shards[0])) < 200


def test_skip_warnings_point_at_the_callers_line(tmp_path):
    (tmp_path / "bad.obj").write_text("v 1 2\nf 1 2 3\n")
    ds = hl.data.MeshFolder(tmp_path, on_error="warn", index=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        assert ds[0] is None
    (warning,) = [w for w in caught if issubclass(w.category, hl.errors.HetloadWarning)]
    assert (warning.filename, warning.lineno) == (__file__, line)


def test_to_pyg_maps_label_to_y():
    pytest.importorskip("torch_geometric")
    batch = hl.collate([{"verts": np.zeros((2, 3), np.float32), "label": i} for i in (3, 1)])
    data = hl.interop.to_pyg(batch)
    assert data.y.tolist() == [3, 1] and "label" not in data
    assert [d.y.item() for d in data.to_data_list()] == [3, 1]
