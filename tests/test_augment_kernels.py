"""The per-sample point transform ops (``hetload::per_sample_matmul``, ``per_sample_scale``,
``jitter_points``): the compiled CPU kernels (``cuda/augment_cpu.cpp``) against the pure-torch
path (:mod:`hetload.ops.augment_impl`): scaling bit for bit, rotation and jitter within float64
rounding (another summation order; the kernel's own ``log`` / ``cos``), the same refusals; and
the fake implementations (``opcheck``). The transforms' per-sample references are in
test_batched.py."""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hetload as hl
from hetload.batched import random as hrandom
from hetload.ops import augment_impl

OPS = ("per_sample_matmul", "per_sample_scale", "jitter_points")
pytestmark = pytest.mark.skipif(
    not all(hl.ops.library.has_kernel(op, "CPU") for op in OPS),
    reason="the compiled CPU kernels are not loaded",
)
JITTER = hrandom.STREAMS["jitter"]


@contextmanager
def torch_path():
    lib = torch.library.Library("hetload", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        for op in OPS:
            lib.impl(op, getattr(augment_impl, op), "CPU")
    try:
        yield
    finally:
        lib._destroy()


def both(call):
    compiled = call()
    with torch_path():
        pure = call()
    return compiled, pure


def packed(sizes, dims, dtype, seed=0):
    rng = np.random.default_rng(seed)
    items = [torch.from_numpy(rng.normal(size=(n, dims)) * 10) for n in sizes]
    return hl.Ragged.from_list(items, dtype=dtype)


sizes = st.lists(st.integers(0, 300), min_size=1, max_size=6)


@settings(max_examples=30, deadline=None)
@given(
    sizes=sizes,
    dims=st.sampled_from([3, 1, 2, 4]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernels_agree_with_the_torch_path(sizes, dims, dtype, seed):
    r = packed(sizes, dims, dtype, seed % 1000)
    batch = len(sizes)
    gen = torch.Generator().manual_seed(seed % 1000)
    mats = torch.randn(batch, dims, dims, generator=gen, dtype=torch.float64)
    factors = torch.randn(batch, dims, generator=gen, dtype=torch.float64)
    seeds = hl.batched.sample_seeds(list(range(batch)), seed=seed)
    a, b = both(lambda: torch.ops.hetload.per_sample_scale(r.values, r.offsets, factors))
    assert a.dtype == dtype and torch.equal(a, b)
    a, b = both(lambda: torch.ops.hetload.per_sample_matmul(r.values, r.offsets, mats))
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    for sigma, clip in ((0.5, 0.7), (2.0, 100.0), (0.0, 0.0)):
        a, b = both(
            lambda: JIT(
                r.values,
                r.offsets,
                seeds,
                JITTER,
                sigma,  # noqa: B023
                clip,  # noqa: B023
            )
        )
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_jitter_noise_equals_box_muller_of_the_draws_written_here():
    """The kernel's own log and cos against numpy's on 30,000 draws of each coordinate."""
    zeros = torch.zeros(10_000, 3, dtype=torch.float64)
    offsets = torch.tensor([0, 4_000, 10_000])
    seeds = hl.batched.sample_seeds(["a", "b"], seed=7)
    noise = JIT(zeros, offsets, seeds, JITTER, 1.0, 1e9).numpy()
    for b, (lo, hi) in enumerate([(0, 4_000), (4_000, 10_000)]):
        counters = torch.arange(3 * (hi - lo))
        u1 = hrandom.uniform(seeds[b], JITTER, 2 * counters).numpy()
        u2 = hrandom.uniform(seeds[b], JITTER, 2 * counters + 1).numpy()
        want = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
        np.testing.assert_allclose(noise[lo:hi].reshape(-1), want, rtol=1e-13, atol=1e-14)


_LOCATION = re.compile(r"^\w+, \S+:\d+, ")


def refusal(call):
    try:
        call()
    except Exception as exc:  # the type is part of what is compared
        return type(exc).__name__, _LOCATION.sub("", str(exc).split("\n")[0])
    return "ok", None


V = torch.zeros(5, 3)
OFF = torch.tensor([0, 2, 5])
S = torch.tensor([1, 2])
M = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1)
F = torch.ones(2, 3, dtype=torch.float64)
JIT = torch.ops.hetload.jitter_points
ERRORS = {
    "matmul int points": lambda: torch.ops.hetload.per_sample_matmul(V.long(), OFF, M),
    "matmul 1-D points": lambda: torch.ops.hetload.per_sample_matmul(V[:, 0], OFF, M),
    "matmul float32 matrices": lambda: torch.ops.hetload.per_sample_matmul(V, OFF, M.float()),
    "matmul matrix count": lambda: torch.ops.hetload.per_sample_matmul(V, OFF, M[:1]),
    "matmul offsets int32": lambda: torch.ops.hetload.per_sample_matmul(V, OFF.int(), M),
    "matmul offsets end": lambda: torch.ops.hetload.per_sample_matmul(
        V, torch.tensor([0, 2, 4]), M
    ),
    "matmul offsets order": lambda: torch.ops.hetload.per_sample_matmul(
        V, torch.tensor([0, 3, 2, 5]), M.repeat(2, 1, 1)[:3]
    ),
    "scale factor shape": lambda: torch.ops.hetload.per_sample_scale(V, OFF, F[:, :2]),
    "scale half points": lambda: torch.ops.hetload.per_sample_scale(V.half(), OFF, F),
    "jitter seeds count": lambda: JIT(V, OFF, S[:1], JITTER, 0.1, 0.1),
    "jitter seeds int32": lambda: JIT(V, OFF, S.int(), JITTER, 0.1, 0.1),
    "jitter sigma < 0": lambda: JIT(V, OFF, S, JITTER, -0.1, 0.1),
    "jitter clip nan": lambda: JIT(V, OFF, S, JITTER, 0.1, float("nan")),
    "jitter offsets 2-D": lambda: JIT(V, OFF[None], S, JITTER, 0.1, 0.1),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_kernels_refuse_bad_arguments_like_the_torch_path(case):
    compiled = refusal(ERRORS[case])
    with torch_path():
        pure = refusal(ERRORS[case])
    assert compiled[0] == "RuntimeError", compiled
    assert compiled == pure


def test_wrappers_take_half_precision_and_refuse_nan_sigma():
    r = packed([7, 0, 5], 3, torch.float16)
    seeds = hl.batched.sample_seeds([0, 1, 2])
    for fn in (hl.batched.random_rotation, hl.batched.random_scale, hl.batched.jitter):
        out = fn(r, seeds)
        assert out.dtype == torch.float16 and out.values.shape == r.values.shape
        wide = fn(hl.Ragged(r.values.double(), r.offsets), seeds)
        torch.testing.assert_close(out.values, wide.values.half())
    with pytest.raises(ValueError, match="sigma, clip >= 0"):
        hl.batched.jitter(r, seeds, sigma=float("nan"))


def test_fake_implementations_are_exact():
    for op, args in [
        (torch.ops.hetload.per_sample_matmul.default, (V + 1, OFF, M)),
        (torch.ops.hetload.per_sample_scale.default, (V + 1, OFF, F)),
        (torch.ops.hetload.jitter_points.default, (V, OFF, S, JITTER, 0.1, 0.2)),
    ]:
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("served_by", ["compiled", "torch"])
def test_transforms_stay_differentiable_in_the_points(served_by):
    r = packed([4, 0, 3], 3, torch.float64, seed=2)
    seeds = hl.batched.sample_seeds([0, 1, 2])
    values = r.values.clone().requires_grad_(True)
    steps = {
        "rotation": lambda v: torch.ops.hetload.per_sample_matmul(v, r.offsets, M3),
        "scale": lambda v: torch.ops.hetload.per_sample_scale(v, r.offsets, F3),
        "jitter": lambda v: JIT(v, r.offsets, seeds, JITTER, 0.1, 0.2),
    }
    for fn in steps.values():
        if served_by == "torch":
            with torch_path():
                assert torch.autograd.gradcheck(fn, (values,))
        else:
            assert torch.autograd.gradcheck(fn, (values,))
    out = hl.batched.jitter(hl.batched.random_rotation(hl.Ragged(values, r.offsets), seeds), seeds)
    out.values.sum().backward()
    assert values.grad is not None and values.grad.shape == values.shape


M3 = torch.randn(3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
F3 = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
