"""``scripts/gpu_check.sh --dry-run``: the one-shot GPU check rehearsed end to end on the CPU,
so it is known to work before a GPU is lent (the build is skipped here to keep CI fast; CI
builds the kernels itself)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


@pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None,
    reason="needs bash and coreutils' timeout",
)
def test_dry_run_runs_every_step_and_writes_one_results_file(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "BUDGET_S": "400"}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--no-build"],
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["gpu-results.txt"]
    text = (tmp_path / "gpu-results.txt").read_text()
    for step in (
        "environment",
        "imports",
        "kernel status",
        "pytest -m gpu --collect-only",
        "bench_pad_gpu (tiny, cpu)",
        "bench_device_ops (tiny, cpu)",
    ):
        assert f"=== {step}: ok" in text, step
    assert "=== pytest -m gpu: skipped: no CUDA device" in text
    assert "=== GPU benchmarks: skipped: no CUDA device" in text
    assert "gpu_check: all steps passed" in text
    assert '"rows"' in text  # the benchmark's raw numbers are in the one file


def test_without_a_gpu_the_real_mode_refuses_and_points_at_the_dry_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2 and "--dry-run" in done.stderr


def test_unknown_arguments_are_refused():
    done = subprocess.run(
        ["bash", str(SCRIPT), "--fast"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and "unknown argument --fast" in done.stderr
