"""The view table a batch pickles as (``hetload.pickling``): every tensor comes back as the same
dtype, shape, stride and bytes over one storage, whatever the dtype mix, offsets and strides,
in the compact form (dtype numbers, plain tuples) and in the form of files saved before it."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import hetload as hl
from hetload.pickling import DTYPES, Table, _rebuild_batch, storage_tensor, views

# every dtype a byte buffer can be viewed as, with a way to fill it from random bytes
VIEWABLE = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
]


def carve_all(spec: list[tuple[torch.dtype, int, int, str]], seed: int):
    """One uint8 buffer and, per spec entry (dtype, rows, columns, form), a tensor at the next
    multiple of its itemsize (not of 64: offsets any dtype allows), filled with random bytes;
    form ``"2d"`` is ``[rows, columns]``, ``"t"`` its transpose (not contiguous), ``"1d"`` the
    same elements flat (the slice path of the rebuild)."""
    at, places = 0, []
    for dtype, rows, cols, _ in spec:
        at = -(-at // dtype.itemsize) * dtype.itemsize
        places.append(at)
        at += rows * cols * dtype.itemsize
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=at + 3, dtype=np.uint8)  # 3: not a whole int64 at the end
    buffer = torch.from_numpy(raw)
    out = []
    for (dtype, rows, cols, form), offset in zip(spec, places, strict=True):
        t = buffer[offset : offset + rows * cols * dtype.itemsize].view(dtype).view(rows, cols)
        if dtype == torch.bool:
            t = buffer[offset : offset + rows * cols].view(rows, cols).remainder(2).bool()
            buffer[offset : offset + rows * cols] = t.view(torch.uint8).flatten()
            t = buffer[offset : offset + rows * cols].view(torch.bool).view(rows, cols)
        out.append(t.t() if form == "t" else t.view(-1) if form == "1d" else t)
    return buffer, out


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    """The tensor's elements as bytes, in order (NaN payloads compare equal)."""
    return t.contiguous().view(-1).view(torch.uint8)


spec_strategy = st.lists(
    st.tuples(
        st.sampled_from(VIEWABLE),
        st.integers(0, 5),
        st.integers(1, 4),
        st.sampled_from(["2d", "t", "1d"]),
    ),
    min_size=1,
    max_size=8,
)


@given(spec=spec_strategy, seed=st.integers(0, 2**16), codes=st.booleans())
def test_views_rebuild_every_tensor_over_one_storage(spec, seed, codes):
    buffer, tensors = carve_all(spec, seed)
    table = Table(codes=codes)
    numbers = [table.note(t) for t in tensors]
    assert len(table.storages) == 1
    if codes:
        assert all(type(view[4]) is int for view in table.views)
    # through pickle, as the worker-to-main form travels (the table is plain data)
    rows = pickle.loads(pickle.dumps(table.views, protocol=5))
    copy = buffer.clone()
    for bases in (None, [copy], [copy[1:]]):  # no base, the whole buffer, a misaligned one
        back = views([copy.untyped_storage()], rows, bases)
        for k, t in zip(numbers, tensors, strict=True):
            got = back[k]
            assert got.dtype == t.dtype and got.shape == t.shape and got.stride() == t.stride()
            assert got.untyped_storage().data_ptr() == copy.untyped_storage().data_ptr()
            assert torch.equal(as_bytes(got), as_bytes(t))


def test_a_view_past_the_end_of_a_mapped_buffer_raises():
    """Over memory torch did not allocate (a mapped segment: fixed size) a table entry past its
    end raises rather than reading past it, on the fast path and the exact one."""
    buffer = torch.frombuffer(bytearray(13), dtype=torch.uint8)
    for bases in (None, [buffer]):
        with pytest.raises(RuntimeError):
            views([buffer.untyped_storage()], [(0, 8, (1,), (1,), torch.int64)], bases)
        with pytest.raises(RuntimeError):
            views([buffer.untyped_storage()], [(0, 0, (4,), (1,), torch.float32)], bases)
    # what fits comes back, over the same memory
    (tail,) = views([buffer.untyped_storage()], [(0, 8, (1,), (1,), torch.int32)], [buffer])
    assert tail.data_ptr() == buffer.data_ptr() + 8


def test_dtype_numbers_name_every_torch_dtype_once():
    assert len(set(DTYPES)) == len(DTYPES)
    for dtype in VIEWABLE:
        assert dtype in DTYPES


def test_a_batch_saved_in_the_older_table_form_still_loads():
    """Files saved before the compact table hold ``torch.Size`` shapes and dtype objects."""
    samples = [
        {"verts": np.arange(3 * n, dtype=np.float32).reshape(n, 3), "label": n} for n in (2, 5)
    ]
    batch = hl.collate(samples)
    table = Table()
    tensors = [batch.verts.values, batch.verts.offsets, batch.label]
    for t in tensors:
        table.note(t)
    old_rows = [(k, at, torch.Size(shape), stride, dt) for k, at, shape, stride, dt in table.views]
    encoded = (
        [("verts", "R", (0, 1, -1, "verts", None)), ("label", "T", 2)],
        [],
    )
    buffers = [storage_tensor(s) for s in table.storages]
    f = io.BytesIO()
    torch.save((_rebuild_batch, (buffers, old_rows, 2, encoded)), f)
    f.seek(0)
    rebuild, args = torch.load(f, weights_only=False)
    back = rebuild(*args)
    assert torch.equal(back.verts.values, batch.verts.values)
    assert torch.equal(back.verts.offsets, batch.verts.offsets)
    assert torch.equal(back.label, batch.label)
    # and the current form, through torch.save of the batch itself
    f = io.BytesIO()
    torch.save(batch, f)
    f.seek(0)
    again = torch.load(f, weights_only=False)
    assert torch.equal(again.verts.values, batch.verts.values)
    assert torch.equal(again.label, batch.label)


def test_trusted_constructors_set_every_slot_as_the_checked_ones_do():
    """The handoff rebuilds received batches without checks (``_trusted``): the objects must
    be the same as the checked constructors', slot by slot, whatever slots are added later."""
    values, offsets = torch.arange(12).view(6, 2), torch.tensor([0, 2, 6])
    base = torch.tensor([0, 3, 9])
    checked = hl.Ragged(values, offsets, name="f", index_base=base, max_len=4, validate=False)
    fast = hl.Ragged._trusted(values, offsets, "f", base, 4)
    for slot in hl.Ragged.__slots__:
        a, b = getattr(checked, slot), getattr(fast, slot)
        assert a is b or a == b, slot
    batch = hl.HeteroBatch({"f": checked, "label": torch.tensor([1, 2])}, 2)
    again = hl.HeteroBatch._trusted(dict(batch._fields), 2, dict(batch._present))
    for slot in hl.HeteroBatch.__slots__:
        assert getattr(again, slot) == getattr(batch, slot), slot
    assert again.f is checked and len(again) == 2
