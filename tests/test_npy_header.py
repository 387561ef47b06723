"""The ``.npy`` headers a batch read expects (hetload.data.npy_header) are, byte for byte, the
headers numpy's writer puts before an array's data: for every dtype and shape, format 1.0 and,
for a header too long for it, 2.0."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetload.data import npy_header
from hetload.data.npy_header import NpyHeaders, npy_headers

SCALARS = ["<f4", ">f8", "<i2", ">i8", "|u1", "|b1", "<c16", "<f2", "|S7", "<U3", "<M8[s]"]


def written_header(array: np.ndarray) -> bytes:
    """The reference: what ``np.save`` writes before the array's data."""
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns when it must write format 2.0
        np.lib.format.write_array(out, array, allow_pickle=False)
    data = out.getvalue()
    return data[: len(data) - array.nbytes]


@st.composite
def dtypes(draw):
    """Plain dtypes of either byte order, and structured ones (some with sub-arrays)."""
    if draw(st.booleans()):
        return np.dtype(draw(st.sampled_from(SCALARS)))
    count = draw(st.integers(1, 4))
    names = draw(st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), min_size=count,
                          max_size=count, unique=True))  # fmt: skip
    fields = []
    for name in names:
        base = draw(st.sampled_from(SCALARS[:7]))
        shape = draw(st.sampled_from([(), (2,), (2, 3)]))
        fields.append((name, base, shape) if shape else (name, base))
    return np.dtype(fields)


@given(
    dtype=dtypes(),
    tail=st.none() | st.lists(st.integers(0, 5), max_size=3).map(tuple),
    rows=st.lists(st.integers(0, 40), min_size=1, max_size=5),
)
def test_headers_equal_numpys_writer(dtype, tail, rows):
    headers = npy_headers(dtype, tail)
    for n in rows:
        array = np.zeros(() if tail is None else (n, *tail), dtype)
        want = written_header(array)
        assert headers(n) == want
        assert headers.many([n]) == [want]
        assert headers.length == len(want)


@pytest.mark.parametrize("rows", [0, 9, 10, 99, 10**6, 2**40, 10**18, 2**63 - 1])
@pytest.mark.parametrize("tail", [(), (3,), (1, 2, 3)])
def test_headers_for_large_first_dimensions(rows, tail):
    """Digits from 1 to 19: numpy's writer, given the shape (no array of that size needed)."""
    out = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, *tail)}
    np.lib.format.write_array_header_1_0(out, header)
    assert npy_headers(np.dtype("<f4"), tail)(rows) == out.getvalue()


def test_a_header_too_long_for_format_1_is_written_as_2():
    dtype = np.dtype([(f"field_{'x' * 120}_{i}", "<f4") for i in range(600)])
    headers = NpyHeaders(dtype, (2,))
    for n in (0, 3, 12345):
        want = written_header(np.zeros((n, 2), dtype))
        assert want[6:8] == b"\x02\x00"
        assert headers(n) == want


def test_a_header_that_needs_format_3_is_refused():
    with pytest.raises(ValueError, match=r"format 3\.0"):
        NpyHeaders(np.dtype([("\u0394", "<f4")]), ())


def test_another_numpy_form_falls_back_to_numpys_writer(monkeypatch):
    """Where numpy writes another form than the template (another numpy version), every
    header comes from numpy's writer."""
    real = npy_header.numpy_header

    def other_form(dtype, shape):
        return real(dtype, shape).replace(b"'fortran_order'", b"'fortran_order' ")

    monkeypatch.setattr(npy_header, "numpy_header", other_form)
    npy_header._numpy_header_cached.cache_clear()
    try:
        headers = NpyHeaders(np.dtype("<f4"), (3,))
        assert headers.length is None
        assert headers(5) == other_form(np.dtype("<f4"), (5, 3))
        assert headers.many([1, 22]) == [other_form(np.dtype("<f4"), (n, 3)) for n in (1, 22)]
    finally:
        npy_header._numpy_header_cached.cache_clear()
