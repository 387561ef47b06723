"""Every unexpected value a sample can hold is either batched losslessly or refused with a
``ValueError`` naming the field and the sample (hetload.sample_values, used by collate and
Ragged.from_list); the argument checks of Ragged, HeteroBatch, Schema, the transforms' inputs.
Each case here is a finding of the adversarial pass over these entry points (RELIABILITY.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hetload as hl
from hetload import transforms as T
from hetload.sample_values import SampleValueError
from hetload.schema import DEFAULT_SCHEMA, Field, Schema

V = np.zeros((2, 3), np.float32)


def long_form(examples: int) -> int:
    """``examples`` here, or the profile's count when larger (HYPOTHESIS_PROFILE=thorough: the
    campaign's long form, RELIABILITY.md)."""
    return max(examples, settings.default.max_examples)


def two(value, name="x", **extra):
    """Two samples, the second holding ``value`` in field ``name``."""
    good = {"verts": V, **extra}
    return [{**good, name: value if name == "verts" else np.zeros((1, 3), np.float32)},
            {**good, name: value}]  # fmt: skip


REFUSED = {
    "object array": (np.array([[1, "a", None]], dtype=object), "numpy dtype object"),
    "strings": (np.array([["a", "b", "c"]]), "numpy dtype <U1"),
    "bytes": (np.array([[b"a", b"b", b"c"]]), "numpy dtype |S1"),
    "structured": (np.zeros(1, dtype=[("a", "f4"), ("b", "f4"), ("c", "f4")]), "numpy dtype"),
    "datetime": (np.zeros((1, 3), dtype="M8[s]"), "numpy dtype datetime64"),
    "timedelta": (np.zeros((1, 3), dtype="m8[s]"), "numpy dtype timedelta64"),
    "masked": (np.ma.masked_array(np.zeros((1, 3), np.float32), mask=True), "mask would be lost"),
    "requires grad": (torch.zeros(1, 3, requires_grad=True), "requires grad"),
    "sparse": (torch.zeros(1, 3).to_sparse(), "only dense"),
    "meta device": (torch.zeros(1, 3, device="meta"), "is on meta"),
    "list": ([[0.0, 0.0, 0.0]], "holds a list"),
    "str": ("red", "holds a str"),
    "None": (None, "holds a NoneType"),
    "scalar": (np.float32(1.0), "holds a scalar"),
    "0-d tensor": (torch.tensor(1.0), "holds a scalar"),
    "wrong ndim": (np.zeros((1, 3, 1), np.float32), "does not match sample 0's trailing shape"),
    "wrong width": (np.zeros((1, 4), np.float32), "does not match sample 0's trailing shape"),
    "other dtype": (np.zeros((1, 3), np.float64), "has dtype torch.float64, sample 0 has"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unbatchable_values_name_the_field_and_the_sample(case):
    value, reason = REFUSED[case]
    with pytest.raises(ValueError, match=f"field 'x': sample 1 .*{reason}|{reason}") as info:
        hl.collate(two(value))
    assert "'x'" in str(info.value) and "sample 1" in str(info.value)
    assert isinstance(info.value, SampleValueError) and isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(6, dtype=">f4").reshape(2, 3),  # big-endian: a native copy, same values
        np.arange(6, dtype=">i8").reshape(2, 3),
        np.arange(6, dtype=np.uint16).reshape(2, 3),
        np.arange(6, dtype=np.uint32).reshape(2, 3),
        np.arange(6, dtype=np.uint64).reshape(2, 3),
        np.arange(6, dtype=np.float32).reshape(2, 3)[::-1],  # negative strides
        np.arange(6, dtype=np.float32).reshape(3, 2).T,  # transposed view
        np.arange(6, dtype=np.complex64).reshape(2, 3),
    ],
    ids=lambda v: f"{v.dtype.str}-{v.strides}",
)
def test_lossless_conversions_keep_every_value(value):
    readonly = value.copy()
    readonly.flags.writeable = False
    for v in (value, readonly):
        batch = hl.collate([{"x": np.zeros((0, 3), v.dtype)}, {"x": v}])
        got = batch.x.unbind()[1].numpy()
        np.testing.assert_array_equal(got, v)
        assert got.dtype == v.dtype.newbyteorder("=")


def test_big_endian_index_and_fixed_fields():
    faces = np.array([[0, 1, 2]], dtype=">i4")
    batch = hl.collate([{"verts": np.zeros((3, 3), np.float32), "faces": faces,
                         "label": np.array(3, ">i8")}] * 2)  # fmt: skip
    assert batch.faces.values.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert batch["label"].tolist() == [3, 3] and batch["label"].dtype == torch.int64


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        ([1, 2**64], "beyond int64"),
        ([2**53 + 1, 0.5], "would lose digits in a float64 column"),
        ([1, "a"], "sample 1 holds a str, sample 0 a number"),
        ([1, 1 + 2j], "sample 1 holds a complex"),
        ([np.float32(1), 1.0], "sample 1 holds a float"),
        ([np.array(1), np.array([1])], "sample 1 has shape"),
        ([torch.tensor(1.0, requires_grad=True)] * 2, "requires grad"),
        ([None, None], "holds a NoneType"),
    ],
)
def test_fixed_fields_refuse_what_they_cannot_hold(column, reason):
    schema = DEFAULT_SCHEMA.extend({"label": "fixed"})
    samples = [{"verts": V, "label": value} for value in column]
    with pytest.raises(ValueError, match=reason) as info:
        hl.collate(samples, schema=schema)
    assert "'label'" in str(info.value)


@settings(max_examples=long_form(80), deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=5))
def test_fixed_int_columns_are_exact(column):
    batch = hl.collate([{"verts": V, "label": v} for v in column])
    assert batch["label"].tolist() == column


def test_collate_arguments():
    with pytest.raises(TypeError, match="takes a hetload Schema"):
        hl.collate([{"verts": V}], schema={"verts": "ragged"})
    with pytest.raises(ValueError, match="non-empty strings; sample 0 has the key 0"):
        hl.collate([{0: V}])
    with pytest.raises(ValueError, match="'faces' indexes into 'faces'"):
        hl.collate([{"faces": np.zeros((1, 3), np.int64)}], schema=Schema({"faces": "index:faces"}))
    with pytest.raises(ValueError, match="index field must have an integer dtype"):
        hl.collate([{"verts": V, "faces": np.zeros((1, 3), bool)}])


# --- Ragged, HeteroBatch, Schema: argument checks -------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "reason"),
    [
        (lambda: hl.Ragged(torch.zeros(3), torch.tensor([0, 3]), max_len=2), ValueError,
         r"max_len=2 is shorter than the longest item \(3\)"),
        (lambda: hl.Ragged(torch.zeros(3), torch.tensor([0, 3]), max_len=2.5), ValueError,
         "max_len must be an integer"),
        (lambda: hl.Ragged(torch.zeros(3), torch.tensor([0, 3]), max_len=-1), ValueError, ">= 0"),
        (lambda: hl.Ragged(torch.zeros(3), torch.tensor([0, 3], dtype=torch.int32)), ValueError,
         "offsets must be int64"),
        (lambda: hl.Ragged(torch.zeros(3), torch.tensor([0.0, 3.0])), ValueError, "int64"),
        (lambda: hl.Ragged(torch.zeros(3, device="meta"), torch.tensor([0, 3])), ValueError,
         "values are on meta but offsets on cpu"),
        (lambda: hl.Ragged(torch.zeros(3), torch.tensor([0, 3]), index_base=torch.tensor([0, 3])),
         ValueError, "index field must be integer"),
        (lambda: hl.Ragged(torch.zeros(3), torch.tensor([0, 3]), name=None), TypeError, "str"),
        (lambda: hl.Ragged.from_padded(torch.zeros(2, 3), [1.5, 2]), ValueError,
         "lengths must be integers"),
        (lambda: hl.Ragged.from_padded(torch.zeros(2, 3), [[1], [2]]), ValueError,
         "lengths must be 1-D"),
        (lambda: hl.Ragged.from_padded(torch.zeros(2, 3), [1, 4]), ValueError, r"\[0, 3\]"),
        (lambda: hl.Ragged.from_list(torch.zeros(2, 3)), TypeError, "list of"),
        (lambda: hl.Ragged.from_list([torch.zeros(1, 3), "a"]), ValueError, "item 1 holds a str"),
        (lambda: hl.HeteroBatch({}, batch_size=-1), ValueError, "batch size is an int >= 0"),
        (lambda: hl.HeteroBatch({}, batch_size=2.0), ValueError, "batch size"),
        (lambda: hl.HeteroBatch({"a": [1], "b": [1, 2]}), ValueError, "'b' has 2 items"),
        (lambda: Schema(["verts"]), TypeError, "mapping"),
        (lambda: Field.parse("index:"), ValueError, "needs the name"),
        (lambda: Field.parse("ragged@"), ValueError, "followed by a field name"),
        (lambda: Field("fixed", rows_of="verts"), ValueError, "only a ragged or index field"),
        (lambda: T.Center()("not a sample"), TypeError, "takes a sample dict"),
        (lambda: T.Center()({"verts": np.zeros((2, 3), np.int32)}), ValueError,
         "floating-point 'verts'"),
        (lambda: T.SamplePoints(3)({"verts": V, "faces": np.array([[0, 1, 9]])},
                                   np.random.default_rng(0)), ValueError, "outside the 2 vert"),
    ],
)  # fmt: skip
def test_arguments_are_refused_with_a_reason(build, error, reason):
    with pytest.raises(error, match=reason):
        build()


def test_from_list_keeps_autograd_and_casts_on_request():
    leaf = torch.ones(2, 3, requires_grad=True)
    r = hl.Ragged.from_list([leaf, torch.zeros(1, 3)])
    r.padded().sum().backward()
    assert torch.equal(leaf.grad, torch.ones(2, 3))
    cast = hl.Ragged.from_list([np.zeros((1, 2), np.float64)], dtype=torch.float32)
    assert cast.dtype == torch.float32


def test_field_specs_round_trip():
    for spec in ("ragged", "fixed", "meta", "index:verts", "ragged@verts", "index:uvs@faces"):
        assert str(Field.parse(spec)) == spec
    assert "faces_uvs=index:uvs@faces" in repr(DEFAULT_SCHEMA)
