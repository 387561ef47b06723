"""The ops on ``cuda``: the compiled CUDA kernels and the pure-torch fallback against the byte
reference, a non-default stream, and sizes past the kernels' grid caps (``pytest -m gpu``)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given
from test_ops_compiled import (
    DTYPES,
    INDEX_DTYPES,
    as_bytes,
    packed_cases,
    random_values,
    ref_pack,
    ref_pad,
    serving,
)

import hetload as hl

pytestmark = pytest.mark.gpu

# pad_cuda.cu's launch bounds: gridDim.y walks items, gridDim.x * 256 threads one item's words
GRID_Y_CAP = 65535
GRID_X_THREADS_CAP = 1024 * 256


@pytest.fixture(scope="class", params=["compiled", "torch"])
def path(request):
    with serving(request.param, "cuda"):
        yield request.param


@pytest.mark.skipif(
    os.environ.get("HETLOAD_DISABLE_EXTENSION", "") not in ("", "0"),
    reason="HETLOAD_DISABLE_EXTENSION is set",
)
def test_cuda_kernels_serve_cuda():
    assert hl.ops.backend("cuda") == "compiled", hl.ops.extension_status()["cuda"]


class TestBothPathsOnCuda:
    """Each test runs with the CUDA kernels serving ``cuda``, then with the fallback."""

    @given(packed_cases())
    def test_packed_to_padded_matches_byte_reference(self, path, case):
        values, offsets, max_len, fill = case
        out = torch.ops.hetload.packed_to_padded(
            values.cuda(), torch.tensor(offsets, device="cuda"), max_len, fill
        )
        assert out.is_cuda and out.dtype == values.dtype
        expected = ref_pad(values, offsets, max_len, fill)
        np.testing.assert_array_equal(as_bytes(out.cpu(), 2), expected)

    @given(packed_cases())
    def test_padded_to_packed_matches_byte_reference(self, path, case):
        values, offsets, max_len, _fill = case
        padded = random_values(
            np.random.default_rng(1), (len(offsets) - 1, max_len, *values.shape[1:]), values.dtype
        )
        out = torch.ops.hetload.padded_to_packed(
            padded.cuda(), torch.tensor(offsets, device="cuda"), offsets[-1]
        )
        assert out.is_cuda and out.shape == values.shape
        np.testing.assert_array_equal(as_bytes(out.cpu(), 1), ref_pack(padded, offsets))

    @pytest.mark.parametrize("dtype", INDEX_DTYPES)
    def test_local_indices(self, path, dtype):
        faces = torch.tensor([[0, 1, 2], [3, 4, 5], [4, 5, 3]], dtype=dtype, device="cuda")
        offsets = torch.tensor([0, 1, 1, 3], device="cuda")
        base = torch.tensor([0, 3, 3, 6], device="cuda")
        fill = 0.0 if dtype == torch.uint8 else -1.0
        out = torch.ops.hetload.packed_to_padded_local(faces, offsets, base, 2, fill)
        f = int(fill)
        expected = [[[0, 1, 2], [f] * 3], [[f] * 3, [f] * 3], [[0, 1, 2], [1, 2, 0]]]
        assert out.dtype == dtype and out.cpu().tolist() == expected

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_fill_converts_like_torch(self, path, dtype):
        values = torch.zeros(1, 3, dtype=dtype, device="cuda")
        out = torch.ops.hetload.packed_to_padded(
            values, torch.tensor([0, 1, 1], device="cuda"), 2, 0.5
        )
        expected = torch.empty(3, dtype=dtype).fill_(0.5)
        assert torch.equal(out[1, 0].cpu().view(torch.uint8), expected.view(torch.uint8))

    def test_empty_batch_and_empty_items(self, path):
        values = torch.zeros(0, 3, device="cuda")
        empty = torch.ops.hetload.packed_to_padded(values, torch.tensor([0], device="cuda"), 0, 0)
        assert empty.shape == (0, 0, 3)
        padded = torch.ops.hetload.packed_to_padded(
            values, torch.tensor([0, 0, 0], device="cuda"), 2, 5.0
        )
        assert padded.shape == (2, 2, 3) and bool((padded == 5).all())

    def test_gradients_and_opcheck(self, path):
        offsets = torch.tensor([0, 2, 2, 5], device="cuda")
        values = torch.randn(5, 3, dtype=torch.float64, device="cuda", requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda v: hl.ops.packed_to_padded(v, offsets, max_len=4), (values,)
        )
        padded = torch.randn(3, 4, 3, dtype=torch.float64, device="cuda", requires_grad=True)
        assert torch.autograd.gradcheck(lambda p: hl.ops.padded_to_packed(p, offsets), (padded,))
        torch.library.opcheck(torch.ops.hetload.packed_to_padded.default, (values, offsets, 4, 0.0))
        torch.library.opcheck(torch.ops.hetload.padded_to_packed.default, (padded, offsets, 5))

    def test_non_default_stream(self, path):
        """The kernels run on the current stream: they see work queued before them on it."""
        values = torch.zeros(1 << 20, 4, device="cuda")
        offsets = torch.tensor([0, 1 << 19, 1 << 20], device="cuda")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            torch.cuda._sleep(50_000_000)  # ~tens of ms: a kernel on another stream runs first
            values.add_(1)
            out = torch.ops.hetload.packed_to_padded(values, offsets, 1 << 19, -1.0)
            back = torch.ops.hetload.padded_to_packed(out, offsets, 1 << 20)
        side.synchronize()
        assert bool((out == 1).all()) and bool((back == 1).all())

    def test_more_items_than_the_grid_holds(self, path):
        batch = GRID_Y_CAP + 4465
        lengths = torch.randint(0, 4, (batch,), generator=torch.Generator().manual_seed(0))
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        values = torch.arange(int(offsets[-1]) * 3, dtype=torch.int32).reshape(-1, 3)
        out = torch.ops.hetload.packed_to_padded(values.cuda(), offsets.cuda(), 3, -1.0)
        expected = ref_pad(values, offsets.tolist(), 3, -1.0)
        np.testing.assert_array_equal(as_bytes(out.cpu(), 2), expected)
        back = torch.ops.hetload.padded_to_packed(out, offsets.cuda(), int(offsets[-1]))
        assert torch.equal(back.cpu(), values)

    def test_an_item_larger_than_the_grid(self, path):
        # 16-byte rows: one word each, so this item has 3x more words than threads in its grid
        rows = 3 * GRID_X_THREADS_CAP + 5
        values = torch.randn(rows + 7, 4, device="cuda")
        offsets = torch.tensor([0, 7, rows + 7], device="cuda")
        out = torch.ops.hetload.packed_to_padded(values, offsets, rows + 1, 2.0)
        assert torch.equal(out[1, :rows], values[7:])
        assert bool((out[1, rows:] == 2).all()) and bool((out[0, 7:] == 2).all())
        assert torch.equal(out[0, :7], values[:7])
        back = torch.ops.hetload.padded_to_packed(out, offsets, rows + 7)
        assert torch.equal(back, values)


def test_compiled_and_fallback_agree_bit_for_bit_on_cuda():
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 300, size=64)
    offsets = torch.tensor([0, *np.cumsum(lengths).tolist()], device="cuda")
    for dtype in (torch.float32, torch.bfloat16, torch.int64, torch.bool):
        values = random_values(rng, (int(lengths.sum()), 3), dtype).cuda()
        with serving("compiled", "cuda"):
            ours = torch.ops.hetload.packed_to_padded(values, offsets, 300, 0.0)
        with serving("torch", "cuda"):
            theirs = torch.ops.hetload.packed_to_padded(values, offsets, 300, 0.0)
        np.testing.assert_array_equal(as_bytes(ours.cpu(), 2), as_bytes(theirs.cpu(), 2))
