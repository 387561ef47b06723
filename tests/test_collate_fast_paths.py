"""collate's one-pass checks (issue 14: its fixed cost per batch) decide exactly as the
item-by-item checks they shortcut: the same tensors, the same lengths, or the same error naming
the field and the sample, for every kind of value a column can mix; the batch's tensors carved by
``set_`` are the views ``arena.carve`` makes; samples whose keys come in another order batch as
if they came in one."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hetload as hl
from hetload import arena
from hetload.sample_values import (
    _plain_arrays,
    _plain_tensors,
    _ragged_column_each,
    ragged_column,
)

# the module (hetload.collate, the attribute, is the function)
collate_module = importlib.import_module("hetload.collate")

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_, np.complex64]


def _nested() -> torch.Tensor:
    with warnings.catch_warnings():  # "prototype" warning of strided nested tensors
        warnings.simplefilter("ignore")
        return torch.nested.nested_tensor([torch.zeros(2, 3), torch.zeros(1, 3)])


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


# One sample's value, from the row count n, the column's dtype and trailing shape: every kind
# of value collate meets, accepted ones first (the second one converts: big-endian bytes).
KINDS = {
    "tensor": lambda n, dt, tr: torch.from_numpy(
        np.arange(n * _size(tr)).reshape(n, *tr).astype(dt)
    ),
    "array": lambda n, dt, tr: np.arange(n * _size(tr)).reshape(n, *tr).astype(dt),
    "big-endian": lambda n, dt, tr: (
        np.arange(n * _size(tr)).reshape(n, *tr).astype(np.dtype(dt).newbyteorder(">"))
    ),
    "read-only": lambda n, dt, tr: _readonly(np.arange(n * _size(tr)).reshape(n, *tr).astype(dt)),
    "reversed": lambda n, dt, tr: np.arange(n * _size(tr)).reshape(n, *tr).astype(dt)[::-1],
    "transposed": lambda n, dt, tr: (
        np.arange(n * _size(tr)).reshape(*tr[::-1], n).astype(dt).T
        if len(tr) == 1
        else np.zeros((n, *tr), dt)
    ),
    "strided tensor": lambda n, dt, tr: torch.from_numpy(np.zeros((2 * n, *tr), dt))[::2],
    "other dtype": lambda n, dt, tr: np.zeros((n, *tr), np.int16),
    "other width": lambda n, dt, tr: np.zeros((n, *tr, 2), dt),
    "fewer dims": lambda n, dt, tr: np.zeros((n,), dt) if tr else np.zeros((n, 1), dt),
    "0-d tensor": lambda n, dt, tr: torch.tensor(1.0),
    "numpy scalar": lambda n, dt, tr: np.float32(1.0),
    "masked": lambda n, dt, tr: np.ma.masked_array(np.zeros((n, *tr), dt), mask=True),
    "object": lambda n, dt, tr: np.zeros((n, *tr), dtype=object),
    "requires grad": lambda n, dt, tr: torch.zeros(n, *tr, requires_grad=True),
    "sparse": lambda n, dt, tr: torch.zeros(max(n, 1), *tr).to_sparse(),
    "meta": lambda n, dt, tr: torch.zeros(n, *tr, device="meta"),
    "nested": lambda n, dt, tr: _nested(),
    "subclass": lambda n, dt, tr: torch.nn.Parameter(torch.zeros(n, *tr), requires_grad=False),
    "list": lambda n, dt, tr: [[0.0] * _size(tr)] * n,
    "None": lambda n, dt, tr: None,
}


def _size(trailing: tuple[int, ...]) -> int:
    return int(np.prod(trailing)) if trailing else 1


def _rows(n: int, dtype, trailing: tuple[int, ...]) -> np.ndarray:
    return np.arange(n * _size(trailing)).reshape(n, *trailing).astype(dtype)


@st.composite
def columns(draw):
    """A column of 1..6 values: all one kind (the usual case) or one kind with a few others."""
    dtype = draw(st.sampled_from(DTYPES))
    trailing = draw(st.sampled_from([(), (3,), (2, 2)]))
    main = draw(st.sampled_from(["tensor", "array", *KINDS]))
    kinds = draw(st.lists(st.just(main), min_size=1, max_size=6))
    for _ in range(draw(st.integers(0, 2))):
        kinds[draw(st.integers(0, len(kinds) - 1))] = draw(st.sampled_from(list(KINDS)))
    return [KINDS[k](draw(st.integers(0, 3)), dtype, trailing) for k in kinds]


def _outcome(run):
    """What a column check gave: the error's type and message, or each tensor's dtype, shape,
    values, and the lengths."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # neither path may warn (read-only inputs: wrapped)
            tensors, lengths = run()
    except Exception as exc:  # the comparison is of what was raised
        return ("error", type(exc), str(exc))
    return ("ok", [(t.dtype, tuple(t.shape), t.tolist()) for t in tensors], lengths)


def _reference(column):
    tensors = _ragged_column_each("x", column)
    return tensors, [t.shape[0] for t in tensors]


@settings(deadline=None)
@given(column=columns())
def test_one_pass_checks_decide_as_the_item_by_item_ones(column):
    expected = _outcome(lambda: _reference(column))
    assert _outcome(lambda: ragged_column("x", column)) == expected
    if expected[0] == "error":
        assert "field 'x'" in expected[2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trailing", [(), (3,), (2, 2)])
def test_plain_columns_take_the_one_pass_path_without_a_copy(dtype, trailing):
    arrays = [np.ones((n, *trailing), dtype) for n in (0, 1, 5)]
    tensors = [torch.from_numpy(a.copy()) for a in arrays]
    got, lengths = _plain_tensors(tensors)
    assert lengths == [0, 1, 5] and all(g is t for g, t in zip(got, tensors))
    got, lengths = _plain_arrays(arrays)
    assert lengths == [0, 1, 5]
    for g, a in zip(got, arrays):
        assert g.dtype == torch.from_numpy(a).dtype
        assert a.size == 0 or np.shares_memory(g.numpy(), a)  # wrapped, not copied


def test_a_reversed_single_row_is_batched():
    """numpy flags a reversed array of one row contiguous although its stride is negative (so
    ``np.ascontiguousarray`` returns it as it is, and ``torch.from_numpy`` refused it)."""
    rows = np.arange(3, dtype=np.float32).reshape(1, 3)[::-1]
    assert rows.strides[0] < 0 and rows.flags.c_contiguous
    batch = hl.collate([{"verts": rows}, {"verts": rows[:, ::-1]}])
    assert batch.verts.values.tolist() == [[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]]


def test_the_first_bad_sample_is_named_whatever_path_ran():
    good = torch.zeros(2, 3)
    for bad, reason in [
        (torch.zeros(2, 3, dtype=torch.float64), "has dtype torch.float64, sample 0 has"),
        (torch.zeros(2, 4), "does not match sample 0's trailing shape"),
        (torch.zeros(2, 3, requires_grad=True), "requires grad"),
        (np.zeros((2, 3), np.float64), "has dtype torch.float64"),  # an array among tensors
    ]:
        with pytest.raises(ValueError, match=f"field 'verts': sample 2 .*{reason}"):
            hl.collate([{"verts": good}, {"verts": good}, {"verts": bad}, {"verts": bad}])


@pytest.mark.parametrize("offset_bytes", [0, 8])
def test_carved_tensors_are_the_views_arena_carve_makes(monkeypatch, offset_bytes):
    """``_Plan.carve_all``'s ``set_`` views against ``arena.carve``'s, on a buffer that starts
    at its storage's start (the ``set_`` path) and one that does not (the ``carve`` path)."""
    buffers = []

    def buffer_at(nbytes):
        buffers.append(torch.empty(nbytes + offset_bytes, dtype=torch.uint8)[offset_bytes:])
        return buffers[-1]

    monkeypatch.setattr(collate_module, "batch_buffer", buffer_at)
    plan = collate_module._Plan()
    specs = [((5, 3), torch.float32), ((0, 3), torch.int64), ((6,), torch.int64),
             ((3,), torch.bool), ((2, 2), torch.float64), ((0,), torch.int32)]  # fmt: skip
    for shape, dtype in specs:
        plan.add(shape, dtype)
    got = plan.carve_all()
    (buffer,) = buffers
    for t, (offset, shape, dtype) in zip(got, plan.slots):
        want = arena.carve(buffer, offset, shape, dtype)
        assert (t.dtype, t.shape, t.stride()) == (want.dtype, want.shape, want.stride())
        assert t.data_ptr() == want.data_ptr() and t.storage_offset() == want.storage_offset()
        assert t.untyped_storage()._cdata == buffer.untyped_storage()._cdata  # one allocation
    got[0].fill_(3.0)
    assert torch.equal(arena.carve(buffer, 0, (5, 3), torch.float32), torch.full((5, 3), 3.0))


def test_keys_in_another_order_batch_as_in_one():
    rng = np.random.default_rng(0)
    samples = [
        {"verts": rng.standard_normal((n, 3)).astype(np.float32),
         "faces": rng.integers(0, n, (2 * n, 3)), "label": i}
        for i, n in enumerate([3, 5, 4])
    ]  # fmt: skip
    shuffled = [dict(reversed(list(s.items()))) if i % 2 else s for i, s in enumerate(samples)]
    a, b = hl.collate(samples), hl.collate(shuffled)
    assert list(a.keys()) == list(b.keys()) == ["verts", "faces", "label"]
    for name in ("verts", "faces"):
        assert torch.equal(a[name].values, b[name].values)
        assert torch.equal(a[name].offsets, b[name].offsets)
        assert bool(b.present(name).all())
    assert a["label"].tolist() == b["label"].tolist() == [0, 1, 2]


def test_large_tensors_start_at_a_page_multiple_and_every_one_is_aligned():
    plan = collate_module._Plan()
    for shape, dtype in [((3,), torch.int64), ((20_000, 3), torch.float32), ((5,), torch.bool),
                         ((9_000, 3), torch.int64), ((0, 3), torch.int64)]:  # fmt: skip
        plan.add(shape, dtype)
    offsets = [offset for offset, _, _ in plan.slots]
    assert all(o % arena.ALIGN == 0 for o in offsets)
    assert offsets[1] % 4096 == 0 and offsets[3] % 4096 == 0
    ends = [o + int(np.prod(s)) * d.itemsize for o, s, d in plan.slots]
    assert all(e <= o for e, o in zip(ends, offsets[1:])) and ends[-1] <= plan.nbytes


def test_rows_past_int64_are_a_named_error():
    """Regression: samples of rows but no bytes ([2**62 - 1, 0] each) summed past int64 raised
    torch's bare "Overflow when unpacking long long" from deep inside the batch's carving."""
    huge = np.zeros((2**62 - 1, 0), np.uint8)
    with pytest.raises(ValueError, match=r"field 'x': \d+ rows in all .* int64 offsets"):
        hl.collate([{"x": huge}] * 3)
    faces = np.zeros((2**62 - 1, 0), np.int8)
    verts = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"field 'faces': \d+ rows in all"):
        hl.collate([{"verts": verts, "faces": faces}] * 3)
