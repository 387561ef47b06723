"""hetload.ops against the numpy reference: every dtype, empty items, trailing dims, autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from reference import ref_packed_to_padded, ref_padded_to_packed

import hetload as hl

DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
]


def _random_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: torch.dtype):
    data = rng.integers(0, 200, size=shape)
    if dtype == torch.bool:
        return torch.from_numpy(data % 2 == 0)
    return torch.from_numpy(data).to(dtype)


def _np(t: torch.Tensor) -> np.ndarray:
    # numpy has no bfloat16: compare its exact float32 image instead
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


@st.composite
def packed_cases(draw):
    lengths = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6))
    trailing = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    values = _random_values(rng, (sum(lengths), *trailing), dtype)
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64)
    extra = draw(st.integers(0, 3))
    # a fill is stored exactly: bool takes 0 / 1 only (7 is refused, see test_ops_parity.py)
    fill = draw(st.sampled_from([0, 1] if dtype == torch.bool else [0, 1, 7]))
    return values, offsets, extra, fill


@given(packed_cases())
def test_packed_to_padded_matches_reference(case):
    values, offsets, extra, fill = case
    max_len = int((offsets[1:] - offsets[:-1]).max()) + extra
    padded = hl.ops.packed_to_padded(values, offsets, max_len=max_len, fill=fill)
    fill_value = bool(fill) if values.dtype == torch.bool else fill
    expected = ref_packed_to_padded(_np(values), offsets.tolist(), max_len, fill_value)
    assert padded.dtype == values.dtype
    np.testing.assert_array_equal(_np(padded), expected)


@given(packed_cases())
def test_padded_to_packed_inverts_packed_to_padded(case):
    values, offsets, _extra, fill = case
    padded = hl.ops.packed_to_padded(values, offsets, fill=fill)
    packed = hl.ops.padded_to_packed(padded, offsets)
    assert packed.dtype == values.dtype
    assert torch.equal(packed, values)
    np.testing.assert_array_equal(_np(packed), ref_padded_to_packed(_np(padded), offsets))


def test_default_max_len_is_longest_item():
    values = torch.arange(6.0).reshape(6, 1)
    offsets = torch.tensor([0, 2, 2, 6])
    padded = hl.ops.packed_to_padded(values, offsets)
    assert padded.shape == (3, 4, 1)
    assert padded[1].abs().sum() == 0


def test_all_items_empty_and_zero_batch():
    values = torch.zeros(0, 3)
    padded = hl.ops.packed_to_padded(values, torch.tensor([0, 0, 0]))
    assert padded.shape == (2, 0, 3)
    assert hl.ops.padded_to_packed(padded, torch.tensor([0, 0, 0])).shape == (0, 3)
    assert hl.ops.packed_to_padded(values, torch.tensor([0])).shape == (0, 0, 3)


def test_max_len_shorter_than_longest_item_is_an_error():
    values = torch.arange(5.0)
    with pytest.raises(ValueError, match="shorter than the longest item"):
        hl.ops.packed_to_padded(values, torch.tensor([0, 3, 5]), max_len=2)


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        (torch.tensor([0, 3, 5], dtype=torch.int32), "int64"),
        (torch.tensor([1, 3, 5]), r"offsets\[0\] must be 0"),
        (torch.tensor([0, 4, 3, 5]), "non-decreasing"),
        (torch.tensor([0, 3, 4]), r"offsets\[-1\]=4 does not match the 5"),
        (torch.tensor([[0, 5]]), "1-D"),
    ],
)
def test_bad_offsets_raise_value_error_naming_the_field(offsets, message):
    with pytest.raises(ValueError, match=message) as info:
        hl.ops.packed_to_padded(torch.arange(5.0), offsets, name="verts")
    assert "'verts'" in str(info.value)


def test_padded_to_packed_rejects_items_longer_than_padding():
    with pytest.raises(ValueError, match="holds only 2"):
        hl.ops.padded_to_packed(torch.zeros(2, 2), torch.tensor([0, 3, 4]))


def test_packed_to_padded_local_subtracts_each_items_base():
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [4, 5, 3]])
    offsets = torch.tensor([0, 1, 3])
    base = torch.tensor([0, 3, 6])
    out = hl.ops.packed_to_padded_local(faces, offsets, base)
    expected = torch.tensor([[[0, 1, 2], [-1, -1, -1]], [[0, 1, 2], [1, 2, 0]]])
    assert torch.equal(out, expected)


def test_packed_to_padded_local_refuses_float_values():
    with pytest.raises(ValueError, match="integer"):
        hl.ops.packed_to_padded_local(torch.zeros(2, 3), torch.tensor([0, 2]), torch.tensor([0, 3]))


def test_gradients_are_each_others_transpose():
    offsets = torch.tensor([0, 2, 2, 5])
    values = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v: hl.ops.packed_to_padded(v, offsets, max_len=4, fill=0.0), (values,)
    )
    padded = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: hl.ops.padded_to_packed(p, offsets), (padded,))
    # <P x, y> == <x, P^T y>: the two ops are adjoint
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(3, 4, 3, dtype=torch.float64)
    lhs = (hl.ops.packed_to_padded(x, offsets, max_len=4) * y).sum()
    rhs = (x * hl.ops.padded_to_packed(y, offsets)).sum()
    assert torch.allclose(lhs, rhs)


def test_opcheck_passes():
    offsets = torch.tensor([0, 2, 2, 5])
    values = torch.randn(5, 3, requires_grad=True)
    torch.library.opcheck(torch.ops.hetload.packed_to_padded.default, (values, offsets, 4, 0.0))
    padded = torch.randn(3, 4, 3, requires_grad=True)
    torch.library.opcheck(torch.ops.hetload.padded_to_packed.default, (padded, offsets, 5))
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [4, 5, 3]])
    torch.library.opcheck(
        torch.ops.hetload.packed_to_padded_local.default,
        (faces, torch.tensor([0, 1, 3]), torch.tensor([0, 3, 6]), 2, -1.0),
    )


def test_backend_reports_a_known_path():
    assert hl.ops.backend("cpu") in ("compiled", "torch")
    assert hl.ops.backend("meta") == "torch"
