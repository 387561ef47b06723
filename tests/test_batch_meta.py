"""A batch read's ``.json`` handling (hetload.data.batch_meta): each sample's field order and
non-array values are those ``decode_sample`` gives it, and every ``.json`` it cannot vouch for
leaves the batch to the per-sample path (``None``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetload.data.batch_meta import sample_layouts
from hetload.shards.format import ShardError, decode_sample, encode_npy

NAMES = ["verts", "faces", "colors", "label", "key", "name", "scale"]
values = st.integers(-3, 3) | st.text(max_size=4) | st.floats(allow_nan=False, width=32)


@st.composite
def samples(draw):
    """A ``.json`` (arrays listed, extra values, a key or source of any type) and the arrays
    actually stored, not always those listed."""
    meta = {"arrays": draw(st.lists(st.sampled_from(NAMES), unique=True))}
    extra = draw(st.dictionaries(st.sampled_from(NAMES), values, max_size=3))
    if extra or draw(st.booleans()):
        meta["extra"] = extra
    if draw(st.booleans()):
        meta["source"] = draw(st.sampled_from(["a/b.obj", "c.ply", "d/e", 3]))
    if draw(st.booleans()):
        meta["key"] = draw(st.sampled_from(["k/1", 7, None]))
    if draw(st.booleans()):  # as written: the arrays listed are those stored
        return meta, tuple(meta["arrays"])
    return meta, tuple(draw(st.lists(st.sampled_from(NAMES), unique=True)))


def reference(meta: dict, held: tuple[str, ...], fields):
    """``decode_sample`` on the members the per-sample path would read, as (field order,
    non-array values); ``None`` where it raises or returns other arrays than those read."""
    members = {f"{name}.npy": encode_npy(np.zeros(2, np.float32)) for name in held}
    members["json"] = json.dumps(meta).encode()
    try:
        sample = decode_sample(members, "shard.tar", "000000001", fields)
    except ShardError:
        return None
    arrays = {name for name, value in sample.items() if isinstance(value, np.ndarray)}
    if arrays != set(held):
        return None
    return list(sample), {k: v for k, v in sample.items() if not isinstance(v, np.ndarray)}


@given(batch=st.lists(samples(), min_size=1, max_size=6), data=st.data())
def test_layouts_equal_decode_sample(batch, data):
    fields = data.draw(st.none() | st.lists(st.sampled_from(NAMES), unique=True, min_size=1))
    if fields is not None:  # the read holds only the selected fields' arrays
        batch = [(meta, tuple(n for n in held if n in fields)) for meta, held in batch]
    payloads = [json.dumps(meta).encode() for meta, _ in batch]
    got = sample_layouts(payloads, fields, [held for _, held in batch])
    want = [reference(meta, held, fields) for meta, held in batch]
    if any(w is None for w in want):
        assert got is None
        return
    assert got is not None
    orders, own = got
    assert orders == [w[0] for w in want]
    assert own == [w[1] for w in want]
    # the same again, from the cached forms; each order a list of its own (with_value appends)
    again = sample_layouts(payloads, fields, [held for _, held in batch])
    assert again == got and all(a is not b for a, b in zip(again[0], orders, strict=True))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"[]",
        b"3",
        b'"arrays"',
        b'{"arrays": 1}',
        b'{"arrays": [], "extra": []}',
        b'{"arrays": []} x',
        b'{"arrays": []}{"arrays": []}',
        b'{"arrays": [}',
        b'\xff{"arrays": []}',
        b"[" * 100_000,
        # forms json.loads takes but this module leaves to the per-sample path
        b' {"arrays": []}',
        b'{"arrays": []}\n',
        b'\xef\xbb\xbf{"arrays": []}',
        '{"arrays": []}'.encode("utf-16-le"),
    ],
)
def test_a_json_it_cannot_vouch_for_leaves_the_batch_to_the_per_sample_path(payload):
    good = b'{"arrays": [], "source": "a/b.obj"}'
    assert sample_layouts([good], None, [()]) == ([["key"]], [{"key": "a/b"}])
    assert sample_layouts([good, payload], None, [(), ()]) is None
