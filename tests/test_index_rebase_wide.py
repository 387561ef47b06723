"""The compiled re-base loops on samples long enough for their vector bodies, for every index
dtype, in both builds that x86-64 carries (cuda/rebase_loops.h): the AVX2 loops this process
takes where the CPU has AVX2, and the baseline loops (``HETLOAD_SIMD=baseline``, in a child
process). The hypothesis cases of test_index_rebase.py hold at most 32 elements per sample,
which the AVX2 loops run mostly in their scalar tails."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hetload.ops import library

DTYPES = [torch.int8, torch.int16, torch.int32, torch.int64,
          torch.uint8, torch.uint16, torch.uint32, torch.uint64]  # fmt: skip
# rows per sample: empty, one, both sides of 32 and 64 bytes of int8..int64, and a long one
ROWS = [0, 1, 5, 11, 32, 33, 100, 1031]


def _np(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


def _batch(dtype: torch.dtype, seed: int):
    """Samples ``[rows, 3]`` of local indices below their counts, the counts and the bases (as
    collate makes them, capped so every packed index fits the dtype)."""
    rng = np.random.default_rng(seed)
    top = min(torch.iinfo(dtype).max, 2**63 - 1)
    counts = [int(min(rng.integers(1, 120), top // len(ROWS))) for _ in ROWS]
    samples = [rng.integers(0, c, size=(n, 3)).astype(_np(dtype)) for c, n in zip(counts, ROWS)]
    bases = [int(b) for b in np.cumsum([0, *counts[:-1]])]
    return samples, counts, bases


def _run(samples, counts, bases, dtype):
    out = torch.full((sum(len(s) for s in samples), 3), 7, dtype=dtype)
    tensors = [torch.from_numpy(s.copy()) for s in samples]
    return torch.ops.hetload.rebase_index_(tensors, out, bases, counts), out


@pytest.fixture(autouse=True)
def _compiled():
    if not library.has_kernel("rebase_index_", "CPU"):
        pytest.skip("compiled kernels not loaded")


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_samples_are_rebased_and_checked_in_every_position(dtype):
    samples, counts, bases = _batch(dtype, seed=DTYPES.index(dtype))
    bad, out = _run(samples, counts, bases, dtype)
    assert bad == -1
    want = np.concatenate([s.astype(np.int64) + b for s, b in zip(samples, bases)])
    np.testing.assert_array_equal(out.numpy().astype(np.int64), want)
    info = torch.iinfo(dtype)
    # one index out of range, at the start, in the body or at the end of the longest sample,
    # or in a shorter one: the first bad sample is reported, whatever lane holds it
    last = len(ROWS) - 1
    for i, flat_at in [(last, 0), (last, 1500), (last, 3 * ROWS[last] - 1), (4, 95), (5, 50)]:
        for value in (counts[i], info.max, *([-1, info.min] * dtype.is_signed)):
            broken = [s.copy() for s in samples]
            broken[i].reshape(-1)[flat_at] = value
            assert _run(broken, counts, bases, dtype)[0] == i, (i, flat_at, value)


def test_the_baseline_loops_pass_the_same_tests():
    """The same tests with the AVX2 copies switched off (on a CPU without AVX2, or off x86-64,
    the run above already took the baseline loops)."""
    env = {**os.environ, "HETLOAD_SIMD": "baseline"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "long_samples"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{len(DTYPES)} passed" in result.stdout
