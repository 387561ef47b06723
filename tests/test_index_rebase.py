"""``torch.ops.hetload.rebase_index_`` (collate's copy of an index field): the compiled CPU
kernel, the numpy fallback and the torch fallback against a plain-Python reference.

Each implementation must return the first sample holding an index outside ``[0, count)`` (or
-1) and, when there is none, write exactly ``sample + base`` for every element, for every
integer dtype, trailing shape, empty samples, strided samples and bases up to the dtype's limit.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import hetload as hl
from hetload.ops import index_impl, library

SIGNED = [torch.int8, torch.int16, torch.int32, torch.int64]
UNSIGNED = [torch.uint8, torch.uint16, torch.uint32, torch.uint64]
TRAILING = [(), (3,), (2, 2)]
INT64_MAX = 2**63 - 1


def reference(samples: list[np.ndarray], bases: list[int], counts: list[int], dtype):
    """(first bad sample or -1, the packed re-based rows as a numpy array or None)."""
    for i, (s, count) in enumerate(zip(samples, counts)):
        if any(not 0 <= int(v) < count for v in s.ravel().tolist()):
            return i, None
    rows = [[int(v) + base for v in s.ravel().tolist()] for s, base in zip(samples, bases)]
    flat = np.array([v for row in rows for v in row], dtype=dtype)
    return -1, flat


def compiled(samples, out, bases, counts):
    if not library.has_kernel("rebase_index_", "CPU"):
        pytest.skip(f"compiled kernels not loaded: {hl.ops.extension_status()}")
    return torch.ops.hetload.rebase_index_(samples, out, bases, counts)


def torch_path(samples, out, bases, counts):
    """The fallback's path for devices other than the CPU, run here on CPU tensors."""
    index_impl._check(samples, out, bases, counts)
    return index_impl._rebase_torch(samples, out, bases, counts)


IMPLS = {
    "compiled": compiled,
    "numpy": index_impl.rebase_index_,  # on CPU tensors: the numpy path
    "torch": torch_path,
}


def _np_dtype(dtype: torch.dtype):
    return torch.empty(0, dtype=dtype).numpy().dtype


def _top(dtype: torch.dtype) -> int:
    """The largest packed index the op accepts (bases are int64 in its schema)."""
    return min(torch.iinfo(dtype).max, INT64_MAX)


@st.composite
def cases(draw, dtypes):
    """Samples of local indices, their bases and counts, maybe one corrupted index."""
    dtype = draw(st.sampled_from(dtypes))
    trailing = draw(st.sampled_from(TRAILING))
    batch = draw(st.integers(0, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    counts = [draw(st.integers(0, 20)) for _ in range(batch)]
    total = sum(counts)
    # where the packed numbering starts: 0 (collate), anywhere, or ending at the dtype's limit
    start = draw(st.sampled_from(["zero", "random", "top"]))
    room = _top(dtype) - max(total, 1) + 1
    first = {"zero": 0, "random": int(rng.integers(0, room, endpoint=True)), "top": room}[start]
    # a sample after the last rows may start one past the limit (the schema caps it at int64)
    bases = [min(first + sum(counts[:i]), INT64_MAX) for i in range(batch)]
    samples = []
    for count in counts:
        rows = draw(st.integers(0, 8))
        samples.append(rng.integers(0, max(count, 1), size=(rows, *trailing)))
    samples = [s.astype(_np_dtype(dtype)) for s in samples]
    holders = [i for i, s in enumerate(samples) if s.size]
    if holders and draw(st.booleans()):
        i = draw(st.sampled_from(holders))
        info = torch.iinfo(dtype)
        # counts are <= 20, so each of these is representable and out of range
        value = draw(st.sampled_from([counts[i], info.max, *([-1, info.min] * dtype.is_signed)]))
        flat = samples[i].reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = value
    strided = draw(st.booleans())
    return dtype, trailing, samples, bases, counts, strided


def _tensors(samples: list[np.ndarray], strided: bool) -> list[torch.Tensor]:
    """The samples as tensors; ``strided``: 2-D ones as transposed (non-contiguous) views."""
    out = []
    for s in samples:
        if strided and s.ndim == 2:
            out.append(torch.from_numpy(np.ascontiguousarray(s.T)).T)
        else:
            out.append(torch.from_numpy(s.copy()))
    return out


def _run(impl: str, dtype, trailing, samples, bases, counts, strided):
    tensors = _tensors(samples, strided)
    rows = sum(s.shape[0] for s in samples)
    out = torch.full((rows, *trailing), 7, dtype=dtype)
    return IMPLS[impl](tensors, out, bases, counts), out


@pytest.mark.parametrize("impl", ["compiled", "numpy"])
@given(case=cases([*SIGNED, *UNSIGNED]))
def test_matches_the_reference(impl, case):
    dtype, trailing, samples, bases, counts, strided = case
    bad, flat = reference(samples, bases, counts, _np_dtype(dtype))
    got, out = _run(impl, dtype, trailing, samples, bases, counts, strided)
    assert got == bad
    if bad == -1:
        np.testing.assert_array_equal(out.numpy().reshape(-1), flat)


@given(case=cases([*SIGNED, torch.uint8]))  # torch has no add for uint16/32/64
def test_torch_path_matches_the_reference(case):
    dtype, trailing, samples, bases, counts, strided = case
    bad, flat = reference(samples, bases, counts, _np_dtype(dtype))
    got, out = _run("torch", dtype, trailing, samples, bases, counts, strided)
    assert got == bad
    if bad == -1:
        np.testing.assert_array_equal(out.numpy().reshape(-1), flat)


@pytest.mark.parametrize("impl", ["compiled", "numpy", "torch"])
@pytest.mark.parametrize("dtype", SIGNED)
def test_boundaries_negative_count_and_the_dtype_limits(impl, dtype):
    """-1 and exactly `count` are out, 0 and count - 1 are in, also at the dtype's extremes."""
    info = torch.iinfo(dtype)
    count = 5
    for value, expected in [
        (0, -1),
        (count - 1, -1),
        (-1, 1),
        (count, 1),
        (info.min, 1),
        (info.max, 1),
    ]:
        samples = [torch.tensor([0, 1, 2], dtype=dtype), torch.tensor([0, value], dtype=dtype)]
        out = torch.empty(5, dtype=dtype)
        assert IMPLS[impl](samples, out, [0, 3], [3, count]) == expected, value
        if expected == -1:
            assert out.tolist() == [0, 1, 2, 3, 3 + value]


@pytest.mark.parametrize("impl", ["compiled", "numpy", "torch"])
def test_first_bad_sample_is_reported_when_several_are_bad(impl):
    samples = [torch.tensor([0, 1]), torch.tensor([5]), torch.tensor([-3]), torch.tensor([9])]
    out = torch.empty(5, dtype=torch.int64)
    assert IMPLS[impl](samples, out, [0, 2, 4, 6], [2, 2, 2, 2]) == 1


@pytest.mark.parametrize("impl", ["compiled", "numpy"])
def test_a_sample_of_a_target_without_rows_is_bad_unless_empty(impl):
    for dtype in (torch.int16, torch.uint16):
        out = torch.empty(1, dtype=dtype)
        ok = [torch.empty(0, dtype=dtype), torch.tensor([0], dtype=dtype)]
        assert IMPLS[impl](ok, out, [0, 0], [0, 1]) == -1
        bad = [torch.tensor([0], dtype=dtype), torch.empty(0, dtype=dtype)]
        assert IMPLS[impl](bad, out, [0, 0], [0, 1]) == 0


@pytest.mark.parametrize("impl", ["compiled", "numpy"])
def test_large_samples_cover_the_vector_loop_and_its_tail(impl):
    rng = np.random.default_rng(0)
    counts = [1000, 70_000, 3]
    samples = [
        rng.integers(0, c, size=(n, 3)).astype(np.int32) for c, n in zip(counts, [4097, 100_003, 1])
    ]
    bases = [0, 1000, 71_000]
    _, flat = reference(samples, bases, counts, np.int32)
    out = torch.empty(sum(len(s) for s in samples), 3, dtype=torch.int32)
    assert IMPLS[impl]([torch.from_numpy(s) for s in samples], out, bases, counts) == -1
    np.testing.assert_array_equal(out.numpy().reshape(-1), flat)
    samples[1][100_002, 2] = 70_000  # the very last element, in the loop's scalar tail
    assert IMPLS[impl]([torch.from_numpy(s) for s in samples], out, bases, counts) == 1


def _int(*values, dtype=torch.int64):
    return torch.tensor(values, dtype=dtype)


@pytest.mark.parametrize("impl", ["compiled", "numpy", "torch"])
@pytest.mark.parametrize(
    ("samples", "out", "bases", "counts", "message"),
    [
        ([_int(0)], torch.empty(1, dtype=torch.int64), [0, 1], [1], "1 samples but 2 bases"),
        ([_int(0)], torch.empty(1), [0], [1], "must be integer"),
        ([_int(0, dtype=torch.int32)], torch.empty(1, dtype=torch.int64), [0], [1], "dtype"),
        ([_int(0)], torch.empty(2, dtype=torch.int64), [0], [1], "hold 1 elements, out 2"),
        ([_int(0).reshape(1, 1)], torch.empty(1, 2, dtype=torch.int64), [0], [1], "trailing"),
        ([_int(0)], torch.empty(1, 1, dtype=torch.int64), [0], [1], "dims"),
        ([_int(0)], torch.empty(1, dtype=torch.int64), [-1], [1], "must be >= 0"),
        ([_int(0)], torch.empty(1, dtype=torch.int64), [0], [-1], "must be >= 0"),
        ([_int(0, dtype=torch.int8)], torch.empty(1, dtype=torch.int8), [120], [9], "holds"),
        ([_int(0, 0)], torch.empty(2, 2, dtype=torch.int64)[:, 0], [0], [1], "contiguous"),
    ],
)
def test_bad_arguments_raise_the_same_error(impl, samples, out, bases, counts, message):
    with pytest.raises(RuntimeError, match=message):
        IMPLS[impl](samples, out, bases, counts)


def test_public_wrapper_and_registration():
    assert library.has_kernel("rebase_index_", "CompositeExplicitAutograd")
    out = torch.empty(3, dtype=torch.int32)
    samples = (_int(1, 0, dtype=torch.int32), _int(0, dtype=torch.int32))
    assert hl.ops.rebase_index_(samples, out, (0, 2), (2, 1)) == -1
    assert out.tolist() == [1, 0, 2]


# --- collate on both paths --------------------------------------------------------------------


@contextmanager
def fallback_serving_cpu():
    """Within the block the Python fallback serves the CPU key even where the kernel is built."""
    lib = torch.library.Library("hetload", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
        lib.impl("rebase_index_", index_impl.rebase_index_, "CPU")
    try:
        yield
    finally:
        lib._destroy()


@contextmanager
def serving(path: str):
    if path == "compiled":
        if not library.has_kernel("rebase_index_", "CPU"):
            pytest.skip(f"compiled kernels not loaded: {hl.ops.extension_status()}")
        yield
    else:
        with fallback_serving_cpu():
            yield


def _meshes(dtype, sizes=((4, 3), (0, 0), (6, 5))):
    rng = np.random.default_rng(1)
    return [
        {
            "verts": rng.standard_normal((n, 3)).astype(np.float32),
            "faces": rng.integers(0, max(n, 1), size=(f, 3)).astype(dtype),
        }
        for n, f in sizes
    ]


@pytest.mark.parametrize("path", ["compiled", "fallback"])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_collate_rebases_every_signed_dtype(path, dtype):
    samples = _meshes(dtype)
    with serving(path):
        faces = hl.collate(samples).faces
    assert faces.values.dtype == torch.from_numpy(np.zeros(0, dtype)).dtype
    expected = np.concatenate([samples[0]["faces"], samples[2]["faces"] + 4]).astype(dtype)
    np.testing.assert_array_equal(faces.values.numpy(), expected)


@pytest.mark.parametrize("path", ["compiled", "fallback"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (6, "'faces': sample 2 has index 6, outside \\[0, 6\\) for its 6 rows of 'verts'"),
        (-2, "'faces': sample 2 has index -2, outside \\[0, 6\\) for its 6 rows of 'verts'"),
    ],
)
def test_collate_error_is_the_same_on_both_paths(path, bad, message):
    samples = _meshes(np.int32)
    samples[2]["faces"][4, 1] = bad
    with serving(path), pytest.raises(ValueError, match=message):
        hl.collate(samples)


@pytest.mark.parametrize("path", ["compiled", "fallback"])
def test_collate_refuses_indices_the_dtype_cannot_hold(path):
    samples = [
        {"verts": np.zeros((100, 3), np.float32), "faces": np.array([[0, 1, 2]], np.int8)},
        {"verts": np.zeros((100, 3), np.float32), "faces": np.array([[0, 1, 2]], np.int8)},
    ]
    with serving(path), pytest.raises(ValueError, match=r"torch\.int8 cannot hold indices into"):
        hl.collate(samples)
    samples[1]["verts"] = np.zeros((28, 3), np.float32)  # 128 rows: the last index is 127
    with serving(path):
        assert hl.collate(samples).faces.values[-1].tolist() == [100, 101, 102]


@pytest.mark.gpu
def test_cuda_tensors_use_the_torch_fallback():
    samples = [torch.tensor([[0, 1, 2]], device="cuda"), torch.tensor([[1, 0, 3]], device="cuda")]
    out = torch.empty(2, 3, dtype=torch.int64, device="cuda")
    assert torch.ops.hetload.rebase_index_(samples, out, [0, 3], [3, 4]) == -1
    assert out.tolist() == [[0, 1, 2], [4, 3, 6]]
    assert torch.ops.hetload.rebase_index_(samples, out, [0, 3], [3, 3]) == 1
