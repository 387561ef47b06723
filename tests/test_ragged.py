"""Ragged: construction, cached views, validation, movement, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import hetload as hl


def test_from_list_and_views():
    items = [torch.ones(2, 3), torch.zeros(0, 3), torch.full((4, 3), 2.0)]
    r = hl.Ragged.from_list(items, name="verts")
    assert r.offsets.tolist() == [0, 2, 2, 6]
    assert r.lengths.tolist() == [2, 0, 4]
    assert r.batch_idx.tolist() == [0, 0, 2, 2, 2, 2]
    assert r.max_len == 4 and len(r) == 3 and r.shape == (6, 3)
    assert r.padded(fill=-5.0)[1].eq(-5.0).all()
    assert r.padded() is r.padded()  # cached per fill value
    assert r.padded(1.0) is not r.padded(0.0)
    views = r.unbind()
    assert all(
        v.untyped_storage().data_ptr() == r.values.untyped_storage().data_ptr() for v in views
    )
    assert torch.equal(r[2], items[2]) and torch.equal(r[-1], items[2])
    with pytest.raises(IndexError, match="item 3"):
        r[3]


def test_from_list_rejects_mixed_items():
    with pytest.raises(ValueError, match=r"item 1 has shape .* trailing shape"):
        hl.Ragged.from_list([torch.zeros(1, 3), torch.zeros(1, 2)], name="verts")
    with pytest.raises(ValueError, match="item 1 has dtype"):
        hl.Ragged.from_list([torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.float64)])


@given(st.lists(st.integers(0, 7), min_size=1, max_size=5), st.integers(0, 3))
def test_from_padded_round_trip(lengths, extra):
    batch = len(lengths)
    padded = torch.randn(batch, max(lengths) + extra, 2)
    r = hl.Ragged.from_padded(padded, lengths)
    assert r.lengths.tolist() == lengths
    for i, item in enumerate(r.unbind()):
        assert torch.equal(item, padded[i, : lengths[i]])


def test_from_padded_rejects_bad_lengths():
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 2\]"):
        hl.Ragged.from_padded(torch.zeros(2, 2), [1, 3])
    with pytest.raises(ValueError, match="3 lengths for a padded batch of 2"):
        hl.Ragged.from_padded(torch.zeros(2, 2), [1, 1, 1])


def test_constructor_validates_offsets_and_names_the_field():
    with pytest.raises(ValueError, match=r"'normals'.*does not match the 4"):
        hl.Ragged(torch.zeros(4, 3), torch.tensor([0, 1, 3]), name="normals")
    with pytest.raises(TypeError, match="'normals'"):
        hl.Ragged(np.zeros((4, 3)), torch.tensor([0, 4]), name="normals")


def test_to_keeps_max_len_and_skips_noop_moves():
    r = hl.Ragged.from_list([torch.ones(5, 3), torch.ones(2, 3)])
    assert r.to("cpu") is r
    cast = r.to(torch.float64)
    assert cast.values.dtype == torch.float64 and cast.offsets.dtype == torch.int64
    assert cast._max_len == 5
    meta = r.to("meta")
    # padding on a device that cannot be read from the host still knows its shape
    assert meta.padded().shape == (2, 5, 3)


def test_pickle_drops_cached_views():
    r = hl.Ragged.from_list([torch.ones(3, 1), torch.ones(1, 1)])
    r.padded()
    back = pickle.loads(pickle.dumps(r))
    assert back._padded == {} and torch.equal(back.padded(), r.padded())
    assert back.max_len == 3


def test_empty_batch():
    r = hl.Ragged(torch.zeros(0, 3), torch.zeros(1, dtype=torch.int64))
    assert r.max_len == 0 and r.padded().shape == (0, 0, 3) and r.unbind() == []
