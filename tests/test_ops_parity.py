"""One parity suite: every op case runs through the compiled kernels (``hetload/_C``) and through
the pure-torch path (:mod:`hetload.ops.torch_impl`, :mod:`hetload.ops.index_impl`, put in front
of the compiled kernels for the call), and both must give the same result, byte for byte, or the
same error: the same type and the same reason. A compiled kernel's message starts with its C++
source location (``check_offsets, cuda/pad_cpu.cpp:18, ``); that prefix is the only difference
allowed.

Cases: the raw ``torch.ops.hetload`` ops and the public wrappers (``hl.ops.*``, ``Ragged``), with
random valid arguments (every dtype, strided and offset storages, strided offsets, every fill a
dtype holds exactly) and one case per way an argument can be wrong.
"""

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
from hetload.ops import index_impl, torch_impl

pytestmark = pytest.mark.skipif(
    hl.ops.backend("cpu") != "compiled", reason="the compiled CPU kernels are not loaded"
)

PAD_OPS = ("packed_to_padded", "packed_to_padded_local", "padded_to_packed")


def long_form(examples: int) -> int:
    """``examples`` here, or the profile's count when larger (HYPOTHESIS_PROFILE=thorough: the
    campaign's long form, RELIABILITY.md)."""
    return max(examples, settings.default.max_examples)


@contextmanager
def torch_path(key: str = "CPU"):
    """The pure-torch implementations serve dispatch ``key`` inside the block (then the compiled
    kernels again)."""
    lib = torch.library.Library("hetload", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        for op in PAD_OPS:
            lib.impl(op, getattr(torch_impl, op), key)
        if key == "CPU":
            lib.impl("rebase_index_", index_impl.rebase_index_, key)
    try:
        yield
    finally:
        lib._destroy()


_LOCATION = re.compile(r"^\w+, \S+:\d+, ")


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """``("ok", result)`` or ``(exception type name, reason)``."""
    try:
        return "ok", call()
    except Exception as exc:  # the type is part of what is compared
        reason = str(exc).split("\n")[0]
        return type(exc).__name__, _LOCATION.sub("", reason)


def same_result(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(
                a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8)
            )
        )
    return a == b


def both_paths(
    call: Callable[[], Any], key: str = "CPU"
) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """Run ``call`` through each path serving ``key``; assert they agree."""
    compiled = outcome(call)
    with torch_path(key):
        pure = outcome(call)
    assert compiled[0] == pure[0], f"compiled {compiled}, torch {pure}"
    if compiled[0] == "ok":
        assert same_result(compiled[1], pure[1]), f"compiled {compiled[1]}, torch {pure[1]}"
    else:
        assert compiled[1] == pure[1], f"compiled says {compiled[1]!r}, torch {pure[1]!r}"
    return compiled, pure


def test_the_two_paths_are_really_different():
    def message() -> str:
        with pytest.raises(RuntimeError) as info:
            torch.ops.hetload.packed_to_padded(torch.zeros(3), torch.tensor([1, 3]), 3, 0.0)
        return str(info.value)

    compiled = message()
    with torch_path():
        pure = message()
    assert "pad_cpu.cpp" in compiled and "pad_cpu.cpp" not in pure


# --- valid arguments: the same bytes ----------------------------------------------------------

DTYPES = [
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
    torch.int8, torch.int16, torch.int32, torch.int64,
    torch.uint8, torch.uint16, torch.uint32, torch.uint64, torch.bool,
    torch.float8_e4m3fn,
]  # fmt: skip
INDEX_DTYPES = [d for d in DTYPES if not (d.is_floating_point or d.is_complex or d == torch.bool)]


def fills_for(dtype: torch.dtype) -> list[float]:
    if dtype == torch.bool:
        return [0.0, 1.0]
    if dtype.is_floating_point or dtype.is_complex:
        return [0.0, -0.0, 1.5, float("nan"), float("inf"), -1.0]
    info = torch.iinfo(dtype)
    return [0.0, 1.0, float(info.max) if info.max < 2**53 else 2.0**53, float(info.min)]


def random_bits(rng: np.random.Generator, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return torch.empty(shape, dtype=dtype)
    if dtype == torch.bool:
        return torch.from_numpy(rng.integers(0, 2, size=shape).astype(bool))
    size = torch.empty((), dtype=dtype).element_size()
    raw = rng.integers(0, 256, size=int(np.prod(shape, dtype=np.int64)) * size, dtype=np.uint8)
    return torch.from_numpy(raw).view(dtype).reshape(shape)


def layout(t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "strided" and t.dim() >= 2:
        return t.mT.contiguous().mT
    if kind == "offset":
        flat = torch.empty(t.numel() + 1, dtype=t.dtype)
        flat[1:] = t.reshape(-1)
        return flat[1:].view(t.shape)
    return t


def offsets_layout(offsets: list[int], strided: bool) -> torch.Tensor:
    if not strided:
        return torch.tensor(offsets)
    spread = torch.full((2 * len(offsets),), -7)
    spread[::2] = torch.tensor(offsets)
    return spread[::2]  # the compiled kernels refused this view; the torch path took it


@st.composite
def pad_cases(draw):
    lengths = draw(st.lists(st.integers(0, 6), max_size=5))
    dtype = draw(st.sampled_from(DTYPES))
    trailing = draw(st.sampled_from([(), (1,), (3,), (2, 2), (0,)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = layout(random_bits(rng, (sum(lengths), *trailing), dtype),
                    draw(st.sampled_from(["contiguous", "strided", "offset"])))  # fmt: skip
    offsets = [0, *np.cumsum(lengths, dtype=np.int64).tolist()]
    strided = draw(st.booleans())
    max_len = max(lengths, default=0) + draw(st.integers(0, 2))
    fill = draw(st.sampled_from(fills_for(dtype)))
    return values, offsets, strided, max_len, fill


@settings(max_examples=long_form(150), deadline=None)
@given(pad_cases())
def test_raw_ops_agree_on_valid_arguments(case):
    values, offsets, strided, max_len, fill = case

    def pad():
        return torch.ops.hetload.packed_to_padded(
            values, offsets_layout(offsets, strided), max_len, fill
        )

    (_, padded), _ = both_paths(pad)
    both_paths(lambda: PACK(
        padded, offsets_layout(offsets, strided), offsets[-1]))  # fmt: skip
    both_paths(lambda: hl.ops.packed_to_padded(
        values, offsets_layout(offsets, strided), max_len=max_len, fill=fill))  # fmt: skip


@settings(max_examples=long_form(100), deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5), max_size=5),
    dtype=st.sampled_from(INDEX_DTYPES),
    width=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**32 - 1),
    strided=st.booleans(),
    extra=st.integers(0, 2),
)
def test_local_padding_agrees(lengths, dtype, width, seed, strided, extra):
    rng = np.random.default_rng(seed)
    values = random_bits(rng, (sum(lengths), width), dtype)
    bases = [0, *np.cumsum(rng.integers(0, 300, size=len(lengths))).tolist()]
    offsets = [0, *np.cumsum(lengths, dtype=np.int64).tolist()]
    max_len = max(lengths, default=0) + extra
    fill = 0.0 if dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64) else -1.0
    both_paths(lambda: LOCAL(
        values, offsets_layout(offsets, strided), offsets_layout(bases, strided), max_len, fill
    ))  # fmt: skip


@settings(max_examples=long_form(100), deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5), min_size=1, max_size=5),
    dtype=st.sampled_from(INDEX_DTYPES),
    seed=st.integers(0, 2**32 - 1),
    bad=st.booleans(),
)
def test_rebase_index_agrees(lengths, dtype, seed, bad):
    rng = np.random.default_rng(seed)
    top = min(torch.iinfo(dtype).max, 50)
    counts = rng.integers(1, top + 1, size=len(lengths)).tolist()
    bases = [0, *np.cumsum(counts)[:-1].tolist()]
    if bases[-1] + counts[-1] - 1 > torch.iinfo(dtype).max:
        counts = [1] * len(lengths)
        bases = list(range(len(lengths)))
    samples = [torch.from_numpy(rng.integers(0, c, size=(n, 3))).to(dtype)
               for n, c in zip(lengths, counts)]  # fmt: skip
    if bad and samples[-1].numel():
        samples[-1][0, 0] = counts[-1]

    def rebase():
        out = torch.empty((sum(lengths), 3), dtype=dtype)
        found = torch.ops.hetload.rebase_index_(samples, out, bases, counts)
        return found if found >= 0 else out

    both_paths(rebase)


# --- bad arguments: the same error, the same reason ---------------------------------------------

z4 = torch.zeros(4)
o = torch.tensor
I64 = torch.int64
PAD = torch.ops.hetload.packed_to_padded
LOCAL = torch.ops.hetload.packed_to_padded_local
PACK = torch.ops.hetload.padded_to_packed
REBASE = torch.ops.hetload.rebase_index_


def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype)


RAW_ERRORS = {
    "offsets int32": lambda: PAD(z4, o([0, 4], dtype=torch.int32), 4, 0.0),
    "offsets 2-D": lambda: PAD(z4, o([[0, 4]]), 4, 0.0),
    "offsets empty": lambda: PAD(z4, o([], dtype=I64), 4, 0.0),
    "values scalar": lambda: PAD(torch.zeros(()), o([0]), 0, 0.0),
    "max_len negative": lambda: PAD(z4, o([0, 4]), -1, 0.0),
    "offsets[0] not 0": lambda: PAD(z4, o([1, 4]), 4, 0.0),
    "offsets decreasing": lambda: PAD(z4, o([0, 3, 2, 4]), 4, 0.0),
    "item beyond max_len": lambda: PAD(z4, o([0, 4]), 3, 0.0),
    "offsets end": lambda: PAD(z4, o([0, 3]), 4, 0.0),
    "strided bad offsets": lambda: PAD(z4, o([0, 9, 5, 9])[::2], 5, 0.0),
    "fill 300 uint8": lambda: PAD(zeros(1, dtype=torch.uint8), o([0, 1]), 2, 300.0),
    "fill -1 uint8": lambda: PAD(zeros(1, dtype=torch.uint8), o([0, 1]), 2, -1.0),
    "fill 0.5 int32": lambda: PAD(zeros(1, dtype=torch.int32), o([0, 1]), 2, 0.5),
    "fill nan int64": lambda: PAD(zeros(1, dtype=I64), o([0, 1]), 2, float("nan")),
    "fill 2**63 int64": lambda: PAD(zeros(1, dtype=I64), o([0, 1]), 2, 2.0**63),
    "fill 2**64 uint64": lambda: PAD(zeros(1, dtype=torch.uint64), o([0, 1]), 2, 2.0**64),
    "fill 2 bool": lambda: PAD(zeros(1, dtype=torch.bool), o([0, 1]), 2, 2.0),
    "fill 1e10 float16": lambda: PAD(zeros(1, dtype=torch.float16), o([0, 1]), 2, 1e10),
    "fill 1e39 float32": lambda: PAD(torch.zeros(1), o([0, 1]), 2, 1e39),
    "fill 1e300 complex64": lambda: PAD(zeros(1, dtype=torch.complex64), o([0, 1]), 2, 1e300),
    "fill 500 float8 (saturates)": lambda: PAD(
        zeros(1, dtype=torch.float8_e4m3fn), o([0, 1]), 2, 500.0
    ),
    "bad fill, empty output": lambda: PAD(zeros(0, dtype=torch.uint8), o([0]), 0, 300.0),
    "local float values": lambda: LOCAL(torch.zeros(2, 3), o([0, 2]), o([0, 3]), 2, -1.0),
    "local base count": lambda: LOCAL(zeros(2, 3, dtype=I64), o([0, 2]), o([0, 3, 6]), 2, -1.0),
    "local base int32": lambda: LOCAL(
        zeros(2, 3, dtype=I64), o([0, 2]), o([0, 3], dtype=torch.int32), 2, -1.0
    ),
    "local fill -1 uint16": lambda: LOCAL(
        zeros(1, 3, dtype=torch.uint16), o([0, 1, 1]), o([0, 3, 6]), 1, -1.0
    ),
    "local offsets end": lambda: LOCAL(zeros(2, 3, dtype=I64), o([0, 1]), o([0, 3]), 2, -1.0),
    "pack padded 1-D": lambda: PACK(z4, o([0, 4]), 4),
    "pack item count": lambda: PACK(torch.zeros(3, 2), o([0, 1]), 1),
    "pack total negative": lambda: PACK(torch.zeros(1, 2), o([0, 1]), -1),
    "pack item beyond L": lambda: PACK(torch.zeros(2, 2), o([0, 3, 4]), 4),
    "pack total mismatch": lambda: PACK(torch.zeros(2, 3), o([0, 1, 2]), 5),
    "rebase counts": lambda: REBASE([zeros(1, 3, dtype=I64)], zeros(1, 3, dtype=I64), [0, 1], [3]),
    "rebase float out": lambda: REBASE([torch.zeros(1, 3)], torch.zeros(1, 3), [0], [3]),
    "rebase strided out": lambda: REBASE(
        [zeros(3, 2, dtype=I64)], zeros(2, 3, dtype=I64).T, [0], [3]
    ),
    "rebase sample dtype": lambda: REBASE(
        [zeros(1, 3, dtype=torch.int32)], zeros(1, 3, dtype=I64), [0], [3]
    ),
    "rebase trailing": lambda: REBASE([zeros(1, 2, dtype=I64)], zeros(1, 3, dtype=I64), [0], [3]),
    "rebase dims": lambda: REBASE([zeros(3, dtype=I64)], zeros(1, 3, dtype=I64), [0], [3]),
    "rebase negative base": lambda: REBASE(
        [zeros(1, 3, dtype=I64)], zeros(1, 3, dtype=I64), [-1], [3]
    ),
    "rebase base overflow": lambda: REBASE(
        [zeros(1, 3, dtype=torch.int8)], zeros(1, 3, dtype=torch.int8), [120], [10]
    ),
    "rebase total": lambda: REBASE([zeros(1, 3, dtype=I64)], zeros(2, 3, dtype=I64), [0], [3]),
}


@pytest.mark.parametrize("case", sorted(RAW_ERRORS))
def test_raw_ops_refuse_bad_arguments_alike(case):
    compiled, _ = both_paths(RAW_ERRORS[case])
    assert compiled[0] == "RuntimeError", compiled


WRAPPER_ERRORS = {
    "fill 2**63 int64": (
        lambda: hl.ops.packed_to_padded(zeros(1, dtype=I64), o([0, 1, 1]), fill=2**63, name="f"),
        "cannot be stored exactly",
    ),
    "fill 0.5 int32": (
        lambda: hl.ops.packed_to_padded(
            zeros(1, dtype=torch.int32), o([0, 1, 1]), fill=0.5, name="f"
        ),
        "cannot be stored exactly",
    ),
    "fill 1e10 float16": (
        lambda: hl.ops.packed_to_padded(
            zeros(1, dtype=torch.float16), o([0, 1, 1]), fill=1e10, name="f"
        ),
        "overflows float16",
    ),
    "fill str": (lambda: hl.ops.packed_to_padded(z4, o([0, 4]), fill="0", name="f"), "real number"),
    "local fill 300 uint8": (
        lambda: hl.ops.packed_to_padded_local(
            zeros(1, 3, dtype=torch.uint8), o([0, 1, 1]), o([0, 3, 6]), fill=300, name="f"
        ),
        "cannot be stored exactly",
    ),
    "max_len float": (
        lambda: hl.ops.packed_to_padded(z4, o([0, 4]), max_len=4.5, name="f"),
        "max_len must be an integer",
    ),
    "max_len bool": (
        lambda: hl.ops.packed_to_padded(z4, o([0, 4]), max_len=True, name="f"),
        "max_len must be an integer",
    ),
    "max_len short": (
        lambda: hl.ops.packed_to_padded(z4, o([0, 4]), max_len=3, name="f"),
        "shorter than the longest",
    ),
    "max_len negative": (
        lambda: hl.ops.packed_to_padded(z4, o([0, 4]), max_len=-2, name="f"),
        ">= 0",
    ),
    "offsets float": (
        lambda: hl.ops.packed_to_padded(z4, torch.tensor([0.0, 4.0]), name="f"),
        "must be int64",
    ),
    "offsets decreasing": (
        lambda: hl.ops.packed_to_padded(z4, o([0, 3, 2, 4]), name="f"),
        "non-decreasing",
    ),
    "total float": (
        lambda: hl.ops.padded_to_packed(torch.zeros(1, 4), o([0, 4]), total=4.0, name="f"),
        "total must be an integer",
    ),
    "total wrong": (
        lambda: hl.ops.padded_to_packed(torch.zeros(1, 4), o([0, 4]), total=3, name="f"),
        "does not match",
    ),
    "Ragged max_len hint": (
        lambda: hl.Ragged(z4, o([0, 1, 4]), name="f", max_len=2).padded(),
        "max_len=2 is shorter than the longest item (3)",
    ),
    "Ragged lengths float": (
        lambda: hl.Ragged.from_padded(torch.zeros(2, 3), torch.tensor([1.5, 2.0]), name="f"),
        "lengths must be integers",
    ),
}


@pytest.mark.parametrize("case", sorted(WRAPPER_ERRORS))
def test_wrappers_refuse_bad_arguments_alike_naming_the_field(case):
    call, reason = WRAPPER_ERRORS[case]
    compiled, _ = both_paths(call)
    assert compiled[0] == "ValueError" and "'f'" in compiled[1] and reason in compiled[1], compiled


def test_exact_int64_fill_agrees():
    values = zeros(1, dtype=I64)
    (_, out), _ = both_paths(lambda: hl.ops.packed_to_padded(values, o([0, 1, 1]), fill=2**53 + 1))
    assert out[1, 0].item() == 2**53 + 1


def test_autograd_agrees():
    offsets = o([0, 2, 2, 5])
    values = torch.randn(5, 3, dtype=torch.float64)

    def grads():
        v = values.clone().requires_grad_()
        padded = hl.ops.packed_to_padded(v, offsets, max_len=4)
        (padded * torch.arange(36.0, dtype=torch.float64).view(3, 4, 3)).sum().backward()
        return v.grad

    both_paths(grads)


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or hl.ops.backend("cuda") != "compiled",
    reason="needs a GPU and the compiled CUDA kernels",
)
@settings(max_examples=long_form(60), deadline=None)
@given(pad_cases())
def test_cuda_kernels_agree_with_the_torch_path_on_the_gpu(case):
    values, offsets, strided, max_len, fill = case
    values = values.cuda()

    def cuda_offsets():
        return offsets_layout(offsets, strided).cuda()

    (_, padded), _ = both_paths(
        lambda: torch.ops.hetload.packed_to_padded(values, cuda_offsets(), max_len, fill), "CUDA"
    )
    both_paths(
        lambda: torch.ops.hetload.padded_to_packed(padded, cuda_offsets(), offsets[-1]), "CUDA"
    )
    if not (
        values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool
    ):
        base = cuda_offsets()
        both_paths(
            lambda: torch.ops.hetload.packed_to_padded_local(
                values, cuda_offsets(), base, max_len, 0.0
            ),
            "CUDA",
        )
    both_paths(lambda: torch.ops.hetload.packed_to_padded(values, cuda_offsets(), -1, fill), "CUDA")
    # only argument errors found before any launch: bad offsets values on a GPU are the wrappers'
    # job (a device-side index error would poison the CUDA context)
    both_paths(
        lambda: torch.ops.hetload.packed_to_padded(values, cuda_offsets(), max_len, 1e300), "CUDA"
    )


@pytest.mark.parametrize("dtype", INDEX_DTYPES)
def test_the_device_rebase_path_agrees_with_the_host_one(dtype):
    """Off the CPU, rebase_index_ runs through torch, which has no add for uint16 / 32 / 64: it
    must give what the host path gives (exercised here on CPU tensors)."""
    from hetload.ops.index_impl import _rebase_numpy, _rebase_torch

    samples = [o([[0, 1, 2]], dtype=dtype), o([[1, 2, 3]], dtype=dtype)]
    for counts in ([3, 4], [3, 3]):
        host, device = torch.empty(2, 3, dtype=dtype), torch.empty(2, 3, dtype=dtype)
        found = _rebase_numpy(samples, host, [0, 3], counts)
        assert _rebase_torch(samples, device, [0, 3], counts) == found
        if found < 0:
            assert torch.equal(host, device) and device.tolist() == [[0, 1, 2], [4, 5, 6]]
