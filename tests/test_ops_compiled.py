"""The compiled kernels from ``cuda/`` and the pure-torch fallback, side by side on the CPU.

Every test runs twice, once per implementation serving the ``CPU`` dispatch key: ``compiled``
(``hetload/_C``) and ``torch`` (:mod:`hetload.ops.torch_impl`, temporarily put in front of the
compiled kernel). The reference is a byte copy written here: padding moves rows of bytes, so
comparing bytes covers every dtype, NaN payloads and bool included.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import hetload as hl
from hetload.ops import library, torch_impl

OPS = ("packed_to_padded", "packed_to_padded_local", "padded_to_packed")
DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
]
INDEX_DTYPES = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8]
# row shapes whose byte widths hit every word width (1, 2, 4, 8, 16) and odd ones
TRAILING = [(), (1,), (3,), (2, 2), (5,), (16,), (2, 0)]


@contextmanager
def pure_torch_serving(dispatch_key: str):
    """Within the block, the pure-torch implementation serves ``dispatch_key`` even where a
    compiled kernel is loaded (the dispatcher restores the compiled one afterwards)."""
    if not library.has_kernel("packed_to_padded", dispatch_key):
        yield  # nothing compiled: the composite pure-torch kernel already serves
        return
    lib = torch.library.Library("hetload", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        for op in OPS:
            lib.impl(op, getattr(torch_impl, op), dispatch_key)
    try:
        yield
    finally:
        lib._destroy()


def compiled_serves(device: str) -> bool:
    """Both paths refuse offsets that do not start at 0 with the same reason, but only a
    compiled kernel's message carries its C++ source location (``check_offsets, .../pad_cpu.cpp:18,
    ...``): which message comes back tells which implementation serves."""
    values = torch.zeros(3, device=device)
    bad = torch.tensor([1, 3], device=device)
    if device != "cpu":
        return hl.ops.backend(device) == "compiled"
    try:
        torch.ops.hetload.packed_to_padded(values, bad, 3, 0.0)
    except RuntimeError as exc:
        return "pad_cpu.cpp" in str(exc)
    return False


@contextmanager
def serving(path: str, device: str = "cpu"):
    """Make ``path`` (``"compiled"`` or ``"torch"``) serve ``device``; skip if not built."""
    key = {"cpu": "CPU", "cuda": "CUDA"}[device]
    if path == "compiled":
        if hl.ops.backend(device) != "compiled":
            pytest.skip(f"compiled kernels not loaded: {hl.ops.extension_status()}")
        yield
        return
    with pure_torch_serving(key):
        yield


@pytest.fixture(scope="class", params=["compiled", "torch"])
def path(request):
    with serving(request.param):
        assert compiled_serves("cpu") == (request.param == "compiled")
        yield request.param


# --- the reference: rows of bytes ------------------------------------------------------------


def as_bytes(t: torch.Tensor, leading: int) -> np.ndarray:
    """``t`` as uint8 ``[*t.shape[:leading], row_bytes]``."""
    t = t.contiguous()
    row = t.element_size() * int(np.prod(t.shape[leading:], dtype=np.int64))
    return t.view(-1).view(torch.uint8).numpy().reshape(*t.shape[:leading], row)


def fill_bytes(dtype: torch.dtype, fill: float, row_bytes: int) -> np.ndarray:
    one = torch.full((1,), fill, dtype=dtype).view(torch.uint8).numpy()
    return np.tile(one, row_bytes // one.size) if one.size else one


def ref_pad(values: torch.Tensor, offsets: list[int], max_len: int, fill: float) -> np.ndarray:
    rows = as_bytes(values, 1)
    batch = len(offsets) - 1
    out = np.empty((batch, max_len, rows.shape[1]), dtype=np.uint8)
    out[:] = fill_bytes(values.dtype, fill, rows.shape[1])
    for i in range(batch):
        item = rows[offsets[i] : offsets[i + 1]]
        out[i, : len(item)] = item
    return out


def ref_pack(padded: torch.Tensor, offsets: list[int]) -> np.ndarray:
    items = as_bytes(padded, 2)
    chunks = [items[i, : offsets[i + 1] - offsets[i]] for i in range(len(offsets) - 1)]
    return np.concatenate(chunks) if chunks else np.zeros((0, items.shape[2]), np.uint8)


def random_values(rng: np.random.Generator, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """Random bit patterns of ``dtype`` (NaNs and all), bools 0/1."""
    if dtype == torch.bool:
        return torch.from_numpy(rng.integers(0, 2, size=shape).astype(bool))
    count = int(np.prod(shape, dtype=np.int64))
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    raw = rng.integers(0, 256, size=count * itemsize, dtype=np.uint8)
    return torch.from_numpy(raw).view(dtype).reshape(shape)


def with_layout(values: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values stored contiguously, strided, or at an odd storage offset (so the widest
    aligned word is narrower than the row)."""
    if layout == "strided" and values.dim() >= 2:
        return values.mT.contiguous().mT
    if layout == "offset":
        flat = torch.empty(values.numel() + 1, dtype=values.dtype)
        flat[1:] = values.reshape(-1)
        return flat[1:].view(values.shape)
    return values


@st.composite
def packed_cases(draw):
    lengths = draw(st.lists(st.integers(0, 9), min_size=0, max_size=6))
    trailing = draw(st.sampled_from(TRAILING))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = random_values(rng, (sum(lengths), *trailing), dtype)
    values = with_layout(values, draw(st.sampled_from(["contiguous", "strided", "offset"])))
    offsets = [0, *np.cumsum(lengths).tolist()]
    max_len = max(lengths, default=0) + draw(st.integers(0, 3))
    fill = draw(st.sampled_from([0.0, 1.0] if dtype == torch.bool else [0.0, 1.0, 7.0]))
    return values, offsets, max_len, fill


# --- correctness against the reference, both paths -------------------------------------------


class TestBothPaths:
    """Each test runs with the compiled kernels serving the CPU, then with the fallback."""

    @given(packed_cases())
    def test_packed_to_padded_matches_byte_reference(self, path, case):
        values, offsets, max_len, fill = case
        out = torch.ops.hetload.packed_to_padded(values, torch.tensor(offsets), max_len, fill)
        assert out.dtype == values.dtype
        assert out.shape == (len(offsets) - 1, max_len, *values.shape[1:])
        np.testing.assert_array_equal(as_bytes(out, 2), ref_pad(values, offsets, max_len, fill))

    @given(packed_cases())
    def test_padded_to_packed_matches_byte_reference(self, path, case):
        values, offsets, max_len, fill = case
        padded = random_values(np.random.default_rng(0), (len(offsets) - 1, max_len), values.dtype)
        padded = padded.reshape(*padded.shape, *([1] * (values.dim() - 1))).expand(
            -1, -1, *values.shape[1:]
        )
        out = torch.ops.hetload.padded_to_packed(padded, torch.tensor(offsets), offsets[-1])
        assert out.dtype == values.dtype and out.shape == values.shape
        np.testing.assert_array_equal(as_bytes(out, 1), ref_pack(padded, offsets))
        back = torch.ops.hetload.padded_to_packed(
            torch.ops.hetload.packed_to_padded(values, torch.tensor(offsets), max_len, fill),
            torch.tensor(offsets),
            offsets[-1],
        )
        np.testing.assert_array_equal(as_bytes(back, 1), as_bytes(values, 1))

    @given(
        lengths=st.lists(st.integers(0, 7), min_size=0, max_size=5),
        width=st.sampled_from([1, 2, 3]),
        dtype=st.sampled_from(INDEX_DTYPES),
        extra=st.integers(0, 2),
        seed=st.integers(0, 2**32 - 1),
    )
    def test_local_indices_subtract_each_items_base(self, path, lengths, width, dtype, extra, seed):
        rng = np.random.default_rng(seed)
        bases = [0, *np.cumsum(rng.integers(0, 20, size=len(lengths))).tolist()]
        local = [rng.integers(0, 20, size=(n, width)) for n in lengths]
        faces = (
            np.concatenate([f + b for f, b in zip(local, bases)]) if lengths else np.zeros((0, 3))
        )
        values = torch.from_numpy(faces.reshape(-1, width)).to(dtype)
        offsets = torch.tensor([0, *np.cumsum(lengths).tolist()])
        max_len = max(lengths, default=0) + extra
        fill = 0.0 if dtype == torch.uint8 else -1.0
        out = torch.ops.hetload.packed_to_padded_local(
            values, offsets, torch.tensor(bases), max_len, fill
        )
        expected = np.full((len(lengths), max_len, width), fill)
        for i, f in enumerate(local):
            expected[i, : len(f)] = f
        assert out.dtype == dtype
        np.testing.assert_array_equal(out.numpy(), expected.astype(out.numpy().dtype))

    def test_local_indices_wrap_like_the_dtype(self, path):
        values = torch.tensor([[0, 5], [-128, 127]], dtype=torch.int8)
        out = torch.ops.hetload.packed_to_padded_local(
            values, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), 1, -1.0
        )
        assert out.tolist() == [[[0, 5]], [[127, 126]]]

    def test_empty_batch_and_empty_items(self, path):
        values = torch.zeros(0, 3)
        assert torch.ops.hetload.packed_to_padded(values, torch.tensor([0]), 0, 0.0).shape == (
            0,
            0,
            3,
        )
        padded = torch.ops.hetload.packed_to_padded(values, torch.tensor([0, 0, 0]), 2, 5.0)
        assert padded.shape == (2, 2, 3) and bool((padded == 5).all())
        packed = torch.ops.hetload.padded_to_packed(padded, torch.tensor([0, 0, 0]), 0)
        assert packed.shape == (0, 3)

    def test_items_spread_over_threads(self, path):
        # large enough that the CPU kernel splits the batch into several parallel tasks
        lengths = np.random.default_rng(1).integers(0, 3000, size=97)
        offsets = [0, *np.cumsum(lengths).tolist()]
        values = torch.randn(offsets[-1], 3)
        out = torch.ops.hetload.packed_to_padded(values, torch.tensor(offsets), 3000, -1.0)
        np.testing.assert_array_equal(as_bytes(out, 2), ref_pad(values, offsets, 3000, -1.0))

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("fill", [0.5, -1.0, 1e10, -0.0, float("nan"), 1.0, 2.0**53])
    def test_fill_is_stored_exactly_or_refused(self, path, dtype, fill):
        values = torch.zeros(1, 2, dtype=dtype)
        offsets = torch.tensor([0, 1, 1])
        exact = not (dtype.is_floating_point or dtype.is_complex)
        if exact:
            low, high = (
                (0, 1) if dtype == torch.bool else (torch.iinfo(dtype).min, torch.iinfo(dtype).max)
            )
            if not (fill == fill and float(fill).is_integer() and low <= fill <= high):
                with pytest.raises(RuntimeError, match="cannot be stored exactly in"):
                    torch.ops.hetload.packed_to_padded(values, offsets, 2, fill)
                return
        wide = torch.tensor([fill], dtype=torch.float64)
        if (
            not exact
            and fill == fill
            and not torch.isfinite(
                wide.to(dtype).to(torch.complex128 if dtype.is_complex else torch.float64)
            ).all()
        ):
            with pytest.raises(RuntimeError, match="overflows"):
                torch.ops.hetload.packed_to_padded(values, offsets, 2, fill)
            return
        expected = wide.to(dtype).expand(2)
        out = torch.ops.hetload.packed_to_padded(values, offsets, 2, fill)
        assert torch.equal(
            out[1].reshape(-1, 2)[0].view(torch.uint8), expected.contiguous().view(torch.uint8)
        )

    def test_gradients_and_opcheck(self, path):
        offsets = torch.tensor([0, 2, 2, 5])
        values = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda v: hl.ops.packed_to_padded(v, offsets, max_len=4), (values,)
        )
        padded = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda p: hl.ops.padded_to_packed(p, offsets), (padded,))
        torch.library.opcheck(torch.ops.hetload.packed_to_padded.default, (values, offsets, 4, 0.0))
        torch.library.opcheck(torch.ops.hetload.padded_to_packed.default, (padded, offsets, 5))
        faces = torch.tensor([[0, 1, 2], [3, 4, 5], [4, 5, 3]])
        torch.library.opcheck(
            torch.ops.hetload.packed_to_padded_local.default,
            (faces, torch.tensor([0, 1, 3]), torch.tensor([0, 3, 6]), 2, -1.0),
        )

    def test_torch_compile_traces_the_op(self, path):
        offsets = torch.tensor([0, 2, 5])
        values = torch.randn(5, 2)
        compiled = torch.compile(
            lambda v: torch.ops.hetload.packed_to_padded(v, offsets, 3, 0.0) * 2, backend="eager"
        )
        assert torch.equal(compiled(values), hl.ops.packed_to_padded(values, offsets) * 2)


# --- the compiled kernels' own checks ----------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: torch.ops.hetload.packed_to_padded(torch.zeros(4), torch.tensor([1, 4]), 4, 0.0),
         r"offsets\[0\] must be 0"),
        (lambda: torch.ops.hetload.packed_to_padded(torch.zeros(4), torch.tensor([0, 3, 2, 4]), 4,
                                                    0.0), "non-decreasing"),
        (lambda: torch.ops.hetload.packed_to_padded(torch.zeros(4), torch.tensor([0, 4]), 3, 0.0),
         "more than max_len=3"),
        (lambda: torch.ops.hetload.packed_to_padded(torch.zeros(4), torch.tensor([0, 3]), 4, 0.0),
         "does not match the 4 packed rows"),
        (lambda: torch.ops.hetload.packed_to_padded(torch.zeros(4), torch.tensor([0, 4],
                                                    dtype=torch.int32), 4, 0.0), "int64"),
        (lambda: torch.ops.hetload.packed_to_padded(torch.zeros(4), torch.tensor([[0, 4]]), 4, 0.0),
         "1-D"),
        (lambda: torch.ops.hetload.packed_to_padded_local(torch.zeros(2, 3), torch.tensor([0, 2]),
                                                          torch.tensor([0, 3]), 2, -1.0),
         "index field must be integer"),
        (lambda: torch.ops.hetload.packed_to_padded_local(torch.zeros(2, 3, dtype=torch.long),
                                                          torch.tensor([0, 2]),
                                                          torch.tensor([0, 3, 6]), 2, -1.0),
         "base has 3 entries"),
        (lambda: torch.ops.hetload.padded_to_packed(torch.zeros(2, 2), torch.tensor([0, 3, 4]), 4),
         "more than max_len=2"),
        (lambda: torch.ops.hetload.padded_to_packed(torch.zeros(3, 2), torch.tensor([0, 1]), 1),
         "offsets describe 1 items, padded has 3"),
    ],
)  # fmt: skip
def test_compiled_kernels_refuse_bad_arguments_with_a_reason(call, message):
    with serving("compiled"), pytest.raises(RuntimeError, match=message):
        call()


def test_disabling_the_extension_serves_pure_torch():
    code = (
        "import torch, hetload as hl;"
        "print(hl.ops.backend('cpu'), hl.ops.extension_status()['cpu']);"
        "print(hl.ops.packed_to_padded(torch.arange(3.0), torch.tensor([0, 1, 3])).tolist())"
    )
    env = {**os.environ, "HETLOAD_DISABLE_EXTENSION": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "torch disabled by HETLOAD_DISABLE_EXTENSION"
    assert out[1] == "[[0.0, 0.0], [1.0, 2.0]]"


# --- the build ---------------------------------------------------------------------------------


def _extension_disabled() -> bool:
    return os.environ.get("HETLOAD_DISABLE_EXTENSION", "") not in ("", "0")


@pytest.mark.skipif(_extension_disabled(), reason="HETLOAD_DISABLE_EXTENSION is set")
@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler: pure-torch install")
def test_cpu_kernels_are_built_and_loaded_where_a_compiler_exists():
    assert hl.ops.backend("cpu") == "compiled", hl.ops.extension_status()["cpu"]


@pytest.mark.skipif(_extension_disabled(), reason="HETLOAD_DISABLE_EXTENSION is set")
@pytest.mark.skipif(
    torch.version.cuda is None or shutil.which("nvcc") is None,
    reason="needs a CUDA build of torch and nvcc",
)
def test_cuda_kernels_are_compiled_where_nvcc_exists():
    spec = importlib.util.find_spec("hetload._C_cuda")
    assert spec is not None and spec.origin, "hetload._C_cuda was not built although nvcc exists"
    binary = Path(spec.origin).read_bytes()
    # device code (the fatbinary section) and the kernels' names in it
    assert b".nv_fatbin" in binary
    for kernel in (b"pad_kernel", b"pad_local_kernel", b"pack_kernel"):
        assert kernel in binary
    assert hl.ops.backend("cuda") == "compiled", hl.ops.extension_status()["cuda"]


@pytest.mark.skipif(_extension_disabled(), reason="HETLOAD_DISABLE_EXTENSION is set")
def test_build_ext_check_reports_the_backends():
    done = subprocess.run(
        [sys.executable, "-m", "hetload", "build-ext", "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cpu_row = next(line for line in done.stdout.splitlines() if line.startswith("cpu "))
    assert cpu_row.split()[1] == hl.ops.backend("cpu")
