"""``torch.ops.hetload.grid_sample``: the compiled CPU kernel (``cuda/grid_cpu.cpp``) against the
pure-torch path (:mod:`hetload.ops.grid_impl`) and a Pointcept-logic reference written here, per
sample; the same result bit for bit, or the same error (type and reason, a compiled kernel's
C++ source location aside). Also the wrapper's refusals (naming the field) and the fake
implementation (``opcheck``)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hetload as hl
from hetload.batched import random as hrandom
from hetload.ops import grid_impl

GRID_STREAM = hrandom.STREAMS["grid"]
compiled_only = pytest.mark.skipif(
    not hl.ops.library.has_kernel("grid_sample", "CPU"),
    reason="the compiled CPU kernels are not loaded",
)


@contextmanager
def torch_path():
    """The pure-torch implementation serves ``grid_sample`` on the CPU inside the block."""
    lib = torch.library.Library("hetload", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        lib.impl("grid_sample", grid_impl.grid_sample, "CPU")
    try:
        yield
    finally:
        lib._destroy()


_LOCATION = re.compile(r"^\w+, \S+:\d+, ")


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # the type is part of what is compared
        return type(exc).__name__, _LOCATION.sub("", str(exc).split("\n")[0])


def both_paths(call: Callable[[], Any]) -> tuple[str, Any]:
    compiled = outcome(call)
    with torch_path():
        pure = outcome(call)
    assert compiled[0] == pure[0], f"compiled {compiled}, torch {pure}"
    if compiled[0] == "ok":
        assert len(compiled[1]) == len(pure[1])
        for a, b in zip(compiled[1], pure[1]):
            assert a.dtype == b.dtype and torch.equal(a, b), (a, b)
    else:
        assert compiled[1] == pure[1], f"compiled says {compiled[1]!r}, torch {pure[1]!r}"
    return compiled


def fnv(grid: np.ndarray) -> np.ndarray:
    """Pointcept's fnv_hash_vec on uint64."""
    h = np.full(len(grid), np.uint64(14695981039346656037))
    with np.errstate(over="ignore"):
        for j in range(grid.shape[1]):
            h = (h * np.uint64(1099511628211)) ^ grid[:, j].astype(np.uint64)
    return h


def pointcept_one(p: np.ndarray, grid_size: float, seed: int, train: bool):
    """Pointcept's GridSample on one sample: (kept local rows, their coords, inverse)."""
    dims = p.shape[1]
    if not len(p):
        return np.zeros(0, np.int64), np.zeros((0, dims), np.int64), np.zeros(0, np.int64)
    grid = np.floor(p.astype(np.float64) / grid_size).astype(np.int64)
    grid -= grid.min(0)
    key = fnv(grid)
    idx_sort = np.argsort(key, kind="stable")
    _, inverse, count = np.unique(key[idx_sort], return_inverse=True, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(count)[:-1]])
    select = starts.copy()
    if train:  # the counter-based draw of voxel j stands in for Pointcept's randint
        draws = hrandom.hash32(torch.tensor(seed), GRID_STREAM, torch.arange(len(count))).numpy()
        select += draws % count
    kept = idx_sort[select]
    inv = np.zeros(len(p), np.int64)
    inv[idx_sort] = inverse.reshape(-1)
    return kept, grid[kept], inv


def check_against_reference(items, out, offsets, grid_size, seeds, train):
    kept, coords, out_offsets, inverse = out
    for b, p in enumerate(items):
        want_kept, want_coord, want_inv = pointcept_one(p, grid_size, int(seeds[b]), train)
        lo, hi = int(out_offsets[b]), int(out_offsets[b + 1])
        assert (kept[lo:hi] - offsets[b]).tolist() == want_kept.tolist()
        np.testing.assert_array_equal(coords[lo:hi].numpy(), want_coord)
        assert inverse[offsets[b] : offsets[b + 1]].tolist() == want_inv.tolist()


# integer-ish coordinates make shared voxels and ties common; large ones exercise the hash
coordinate = st.one_of(
    st.integers(-6, 6).map(float),
    st.floats(-50, 50, allow_nan=False, width=32),
    st.floats(-1e9, 1e9, allow_nan=False, width=32),
)


@st.composite
def batches(draw):
    dims = draw(st.sampled_from([3, 3, 1, 2, 4]))
    sizes = draw(st.lists(st.integers(0, 40), min_size=1, max_size=6))
    items = [
        np.asarray(
            draw(st.lists(coordinate, min_size=n * dims, max_size=n * dims)), np.float64
        ).reshape(n, dims)
        for n in sizes
    ]
    return items, draw(st.sampled_from([torch.float32, torch.float64]))


@compiled_only
@settings(max_examples=80, deadline=None)
@given(
    batch=batches(),
    grid_size=st.sampled_from([0.3, 1.0, 2.5, 1e-3, 7e5]),
    train=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernel_equals_torch_path_and_pointcept_reference(batch, grid_size, train, seed):
    items, dtype = batch
    r = hl.Ragged.from_list([torch.from_numpy(p) for p in items], dtype=dtype)
    seeds = hl.batched.sample_seeds(list(range(len(items))), seed=seed)
    _, out = both_paths(
        lambda: torch.ops.hetload.grid_sample(
            r.values, r.offsets, grid_size, seeds, GRID_STREAM, train
        )
    )
    # the reference sees what the op saw: the values in their dtype
    seen = [p.double().numpy() for p in r.unbind()]
    check_against_reference(seen, out, r.offsets, grid_size, seeds, train)


@compiled_only
def test_kernel_on_a_realistic_batch_equals_the_torch_path():
    rng = np.random.default_rng(0)
    items = [rng.normal(size=(int(n), 3)) for n in rng.integers(0, 3000, size=12)]
    r = hl.Ragged.from_list([torch.from_numpy(p) for p in items], dtype=torch.float32)
    seeds = hl.batched.sample_seeds([f"s{i}" for i in range(12)])
    for train in (True, False):
        _, out = both_paths(
            lambda: torch.ops.hetload.grid_sample(
                r.values,
                r.offsets,
                0.05,
                seeds,
                GRID_STREAM,
                train,  # noqa: B023
            )
        )
        assert out[0].numel() > 1000  # many voxels of several points each
        check_against_reference(
            [p.double().numpy() for p in r.unbind()], out, r.offsets, 0.05, seeds, train
        )


def _raw(values, offsets, grid_size=1.0, seeds=None, train=True):
    if seeds is None:
        seeds = torch.zeros(offsets.numel() - 1 if offsets.dim() == 1 else 1, dtype=torch.int64)
    return lambda: torch.ops.hetload.grid_sample(
        values, offsets, grid_size, seeds, GRID_STREAM, train
    )


def _with(value: float, row: int = 4) -> torch.Tensor:
    v = torch.zeros(6, 3)
    v[row, 1] = value
    return v


OFFS = torch.tensor([0, 2, 2, 6])
RAW_ERRORS = {
    "nan": (_raw(_with(float("nan")), OFFS), "sample 2 has a coordinate that is not finite"),
    "inf": (_raw(_with(float("-inf"), 0), OFFS), "sample 0 has a coordinate that is not finite"),
    "beyond 2**62 voxels": (_raw(_with(1e19), OFFS), "lies beyond 2**62 voxels"),
    "tiny grid": (_raw(_with(1.0), OFFS, grid_size=1e-300), "lies beyond 2**62 voxels"),
    "grid 0": (_raw(_with(0.0), OFFS, grid_size=0.0), "grid_size must be finite and > 0"),
    "grid nan": (_raw(_with(0.0), OFFS, grid_size=float("nan")), "grid_size must be finite"),
    "grid inf": (_raw(_with(0.0), OFFS, grid_size=float("inf")), "grid_size must be finite"),
    "int points": (
        _raw(torch.zeros(6, 3, dtype=torch.int64), OFFS),
        "points must be float32 or float64, got int64",
    ),
    "half points": (
        _raw(torch.zeros(6, 3, dtype=torch.float16), OFFS),
        "points must be float32 or float64, got float16",
    ),
    "1-D points": (_raw(torch.zeros(6), OFFS), "points must be [sum N_i, D]"),
    "offsets int32": (
        _raw(_with(0.0), OFFS.int(), seeds=torch.zeros(3, dtype=torch.int64)),
        "offsets must be int64, got int32",
    ),
    "offsets 2-D": (_raw(_with(0.0), OFFS[None]), "offsets must be 1-D"),
    "offsets end": (_raw(_with(0.0), torch.tensor([0, 2, 5])), "offsets must run from 0"),
    "offsets start": (_raw(_with(0.0), torch.tensor([1, 2, 6])), "offsets must run from 0"),
    "offsets decreasing": (
        _raw(_with(0.0), torch.tensor([0, 4, 2, 6])),
        "offsets must be non-decreasing",
    ),
    "seeds count": (
        _raw(_with(0.0), OFFS, seeds=torch.zeros(2, dtype=torch.int64)),
        "seeds must be int64 [B]",
    ),
    "seeds int32": (
        _raw(_with(0.0), OFFS, seeds=torch.zeros(3, dtype=torch.int32)),
        "seeds must be int64 [B]",
    ),
}


@compiled_only
@pytest.mark.parametrize("case", sorted(RAW_ERRORS))
def test_raw_op_refuses_bad_arguments_alike(case):
    call, reason = RAW_ERRORS[case]
    kind, message = both_paths(call)
    assert kind == "RuntimeError" and reason in message, (kind, message)


@compiled_only
def test_empty_batches_and_empty_samples_agree():
    for values, offsets, want in [
        (torch.zeros(0, 3), torch.tensor([0]), [0]),
        (torch.zeros(0, 3), torch.tensor([0, 0, 0]), [0, 0, 0]),
        (torch.ones(2, 3), torch.tensor([0, 0, 2, 2]), [0, 0, 1, 1]),
    ]:
        seeds = torch.arange(offsets.numel() - 1, dtype=torch.int64)
        _, (kept, coords, out_offsets, inverse) = both_paths(
            _raw(values, offsets, grid_size=0.5, seeds=seeds)
        )
        assert out_offsets.tolist() == want
        assert inverse.tolist() == [0] * values.shape[0]
        assert coords.shape == (kept.shape[0], 3) and kept.tolist() == values.shape[0] // 2 * [0]


def test_wrapper_names_the_field_and_refuses_bad_arguments():
    r = hl.Ragged.from_list([torch.zeros(2, 3), torch.tensor([[0.0, float("nan"), 1.0]])])
    r.name = "verts"
    with pytest.raises(ValueError, match=r"field 'verts': sample 1 has a coordinate that is not"):
        hl.batched.grid_sample(r, 0.1, mode="first")
    ok = hl.Ragged.from_list([torch.zeros(2, 3)])
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="grid_size must be finite and > 0"):
            hl.batched.grid_sample(ok, bad, mode="first")
    with pytest.raises(TypeError, match="grid_size must be a number"):
        hl.batched.grid_sample(ok, "0.1", mode="first")
    with pytest.raises(ValueError, match="needs seeds"):
        hl.batched.grid_sample(ok, 0.1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_points_give_the_float32_result(dtype):
    rng = np.random.default_rng(3)
    items = [torch.from_numpy(rng.normal(size=(n, 3))).to(dtype) for n in (50, 0, 80)]
    seeds = hl.batched.sample_seeds([0, 1, 2])
    low = hl.batched.grid_sample(hl.Ragged.from_list(items), 0.2, seeds)
    wide = hl.batched.grid_sample(hl.Ragged.from_list([x.float() for x in items]), 0.2, seeds)
    assert torch.equal(low.index.values, wide.index.values)
    assert torch.equal(low.grid_coord.values, wide.grid_coord.values)
    assert torch.equal(low.inverse, wide.inverse)


def test_fake_implementation_is_exact():
    values = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [2, 2, 2], [5, 5, 5], [5.1, 5, 5]])
    args = (values, torch.tensor([0, 3, 3, 5]), 1.0, torch.tensor([1, 2, 3]), GRID_STREAM, True)
    torch.library.opcheck(torch.ops.hetload.grid_sample.default, args)
