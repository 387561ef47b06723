"""Batch-level shard reads (hetload.data.batch_read + hetload.packed): the batch read straight
into its buffer equals, bit for bit, the per-sample path followed by the plain collate."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import hetload
from hetload.data import ShardDataset, batch_read
from hetload.data.substitute import getitems
from hetload.packed import PackedSamples
from hetload.schema import DEFAULT_SCHEMA, Schema
from hetload.shards.writer import write_shards
from hetload.transforms import Transform

DTYPES = [
    "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "int64", "bool",
    "float16", "complex64", ">f4", ">i8",
]  # fmt: skip


#: every test runs with both batch reads (the read_path fixture of conftest.py)
pytestmark = pytest.mark.usefixtures("read_path")


def per_sample(ds: ShardDataset, indices: list[int]) -> list:
    """The reference: the dataset's per-sample path, exactly as before batch reads."""
    return getitems(ds, indices)


def per_sample_or_same_refusal(ds: ShardDataset, reference: ShardDataset, indices: list[int]):
    """The per-sample path's samples of ``reference``, or ``None`` where it refuses the batch
    (every sample unreadable) after checking that ``ds``'s batch read refuses it alike."""
    try:
        return per_sample(reference, indices)
    except ValueError as exc:
        with pytest.raises(type(exc)) as again:
            ds.__getitems__(indices)
        assert str(again.value) == str(exc)
        return None


def same_value(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.numpy().tobytes() == b.numpy().tobytes()
        )
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    return type(a) is type(b) and a == b


def assert_same_batch(got: hetload.HeteroBatch, want: hetload.HeteroBatch) -> None:
    assert list(got.keys()) == list(want.keys())
    assert len(got) == len(want)
    for name in want.keys():  # noqa: SIM118 (iterating a HeteroBatch gives samples)
        x, y = got[name], want[name]
        assert type(x) is type(y), name
        if isinstance(y, hetload.Ragged):
            assert same_value(x.values, y.values), name
            assert same_value(x.offsets, y.offsets), name
            assert x.max_len == y.max_len, name
            assert (x.index_base is None) == (y.index_base is None), name
            if y.index_base is not None:
                assert same_value(x.index_base, y.index_base), name
        elif isinstance(y, torch.Tensor):
            assert same_value(x, y), name
        else:
            assert len(x) == len(y) and all(same_value(a, b) for a, b in zip(x, y)), name
        assert same_value(got.present(name), want.present(name)), name


def assert_same_samples(got, want) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        if b is None:
            assert a is None
            continue
        assert list(a.keys()) == list(b.keys())
        for name in b:
            assert same_value(a[name], b[name]), name


def assert_same_collate(got, want) -> bool:
    """``hetload.collate`` of ``got`` (a batch read) equals that of ``want`` (the per-sample
    samples), or both raise the same error; False in that second case."""
    try:
        plain = hetload.collate(want)
    except ValueError as exc:  # e.g. a label int in one sample, an array in another
        with pytest.raises(type(exc)) as fast:
            hetload.collate(got)
        assert str(fast.value) == str(exc)
        return False
    assert_same_batch(hetload.collate(got), plain)
    return True


#: hypothesis settings of the tests that write shards for every example
def shard_examples(count: int):
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@st.composite
def datasets(draw):
    """Samples with random fields (some lacking), empty ones, dtypes, labels and metadata."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # one or two dtypes for colors: samples (and shards) of a batch may differ
    color_dtypes = draw(st.lists(st.sampled_from(DTYPES), min_size=1, max_size=2))
    # int16 faces: an index dtype the in-place rebase leaves to the plain collate
    faces_dtype = draw(st.sampled_from(["int32", "int64", "int16"]))
    out = []
    for _ in range(draw(st.integers(1, 14))):
        n = draw(st.integers(0, 30))
        sample: dict = {}
        if draw(st.integers(0, 5)):
            sample["verts"] = rng.standard_normal((n, 3)).astype(np.float32)
            if draw(st.booleans()):
                k = draw(st.integers(0, 20))
                sample["faces"] = rng.integers(0, max(n, 1), size=(k if n else 0, 3)).astype(
                    faces_dtype
                )
        if draw(st.booleans()):
            sample["colors"] = (rng.random((draw(st.integers(0, 9)), 4)) * 100).astype(
                color_dtypes[int(rng.integers(len(color_dtypes)))]
            )
        if draw(st.booleans()):
            sample["label"] = draw(st.integers(-5, 5))
        if draw(st.booleans()):
            sample["name"] = draw(st.text(max_size=6))
        if draw(st.booleans()):
            sample["scale"] = np.float32(draw(st.floats(-1, 1, width=32)))
        out.append(sample)
    return out


@shard_examples(30)
@given(data=datasets(), pick=st.data())
def test_batch_read_equals_per_sample_path_and_collate(tmp_path_factory, data, pick):
    root = tmp_path_factory.mktemp("br")
    write_shards(data, root, max_count=pick.draw(st.integers(1, 6)))
    stored = sorted({name for s in data for name in s if isinstance(s[name], np.ndarray)})
    fields = pick.draw(
        st.none() | st.lists(st.sampled_from(stored), unique=True, min_size=1)
        if stored
        else st.none()
    )
    ds = ShardDataset(root, fields=fields, on_error="skip")
    indices = pick.draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=10))
    want_samples = per_sample_or_same_refusal(ds, ds, indices)
    if want_samples is None:
        return
    got = ds.__getitems__(indices)
    if fields is not None and any(
        name not in s for name in fields for s in (data[i] for i in indices)
    ):
        # a selected field missing from a sample: the per-sample path's policy decides
        assert not isinstance(got, PackedSamples)
    elif len({s["colors"].dtype for s in data if "colors" in s}) <= 1:
        # (a field's dtype is learnt once per shard: a shard mixing two is read per sample)
        assert isinstance(got, PackedSamples)
    assert_same_samples(list(got), want_samples)
    if all(s is None for s in want_samples):
        return
    if not assert_same_collate(got, want_samples):
        return
    # items taken after collation still hold the local (not re-based) indices
    assert_same_samples(list(got), want_samples)


def test_dataloader_takes_the_fast_path_with_workers(tmp_path):
    rng = np.random.default_rng(0)
    data = [
        {
            "verts": rng.standard_normal((n, 3)).astype(np.float32),
            "faces": rng.integers(0, max(n, 1), (n // 2, 3)).astype(np.int64),
            "label": int(n % 3),
        }
        for n in rng.integers(0, 200, size=30)
    ]
    write_shards(data, tmp_path, max_count=7)
    ds = ShardDataset(tmp_path)
    sampler = [list(range(i, min(i + 6, 30))) for i in range(0, 30, 6)]
    assert isinstance(ds.__getitems__(sampler[0]), PackedSamples)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=2, collate_fn=hetload.collate)
    for batch, indices in zip(loader, sampler, strict=True):
        assert_same_batch(batch, hetload.collate(per_sample(ds, indices)))
        # one allocation: every array field's values and offsets share one storage
        storage = batch["verts"].values.untyped_storage().data_ptr()
        for name in ("verts", "faces"):
            assert batch[name].values.untyped_storage().data_ptr() == storage
            assert batch[name].offsets.untyped_storage().data_ptr() == storage


def test_packed_samples_pickle_as_a_plain_list(tmp_path):
    data = [{"verts": np.ones((3, 3), np.float32), "faces": np.zeros((1, 3), np.int64)}] * 3
    write_shards(data, tmp_path)
    ds = ShardDataset(tmp_path)
    packed = ds.__getitems__([0, 2])
    back = pickle.loads(pickle.dumps(packed))
    assert type(back) is list
    assert_same_samples(back, per_sample(ds, [0, 2]))
    # a second collate returns the same batch, not a twice re-based one
    first = hetload.collate(packed, DEFAULT_SCHEMA)
    assert hetload.collate(packed) is first
    assert first["faces"].values.tolist() == [[0, 0, 0], [3, 3, 3]]


def test_truncated_or_corrupt_shards_fall_back_to_the_per_sample_policy(tmp_path):
    rng = np.random.default_rng(1)
    data = [{"verts": rng.standard_normal((50, 3)).astype(np.float32)} for _ in range(6)]
    index = write_shards(data, tmp_path, max_count=3)
    path = tmp_path / index.shards[1].url
    blob = bytearray(path.read_bytes())
    # corrupt sample 4's tar header name: the batch read must not accept its bytes
    ds = ShardDataset(tmp_path, on_error="skip")
    header = int(ds._offset["verts.npy"][4]) - 512
    blob[header + 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    ds = ShardDataset(tmp_path, on_error="skip", check=False)
    got = ds.__getitems__([0, 4, 5])
    assert not isinstance(got, PackedSamples)
    assert got[1] is None and got[0] is not None
    assert any("tar header" in entry.reason for entry in ds.report)
    # truncated: the last sample's bytes are cut off
    path.write_bytes(bytes(blob[: int(ds._end[5]) - 100]))
    ds = ShardDataset(tmp_path, on_error="skip", check=False)
    got = ds.__getitems__([0, 5])
    assert not isinstance(got, PackedSamples) and got[1] is None
    with pytest.raises(hetload.shards.ShardError, match="truncated"):
        ShardDataset(tmp_path, check=False).__getitems__([0, 5])


def test_index_out_of_range_raises_the_plain_collate_error(tmp_path, read_path):
    data = [
        {"verts": np.zeros((4, 3), np.float32), "faces": np.array([[0, 1, 2]], np.int64)},
        {"verts": np.zeros((2, 3), np.float32), "faces": np.array([[0, 1, 7]], np.int64)},
    ]
    write_shards(data, tmp_path)
    ds = ShardDataset(tmp_path)
    packed = ds.__getitems__([0, 1])
    # the compiled read checks the range as it re-bases and leaves the batch to the per-sample
    # path; the Python read finds it when collate re-bases the buffer
    assert isinstance(packed, PackedSamples) == (read_path == "python")
    with pytest.raises(ValueError) as fast:
        hetload.collate(packed)
    with pytest.raises(ValueError) as plain:
        hetload.collate(per_sample(ds, [0, 1]))
    assert str(fast.value) == str(plain.value)
    assert_same_samples(list(packed), per_sample(ds, [0, 1]))


def test_a_transform_keeps_the_per_sample_path(tmp_path):
    write_shards([{"verts": np.ones((2, 3), np.float32)}] * 2, tmp_path)
    ds = ShardDataset(tmp_path, transform=lambda s: s)
    assert type(ds.__getitems__([0, 1])) is list


def test_repeat_marks_keep_the_packed_batch(tmp_path):
    from hetload.samplers.repeats import MarkedIndices, MarkRepeats, mark

    rng = np.random.default_rng(4)
    data = [
        {"verts": rng.standard_normal((n, 3)).astype(np.float32), "label": n % 2}
        for n in (3, 0, 5, 7)
    ]
    write_shards(data, tmp_path, max_count=3)
    ds = ShardDataset(tmp_path)
    marked = MarkRepeats(ds).__getitems__(MarkedIndices([3, 1, 2], is_repeat=True))
    assert isinstance(marked, PackedSamples)
    want = mark(per_sample(ds, [3, 1, 2]), True)
    assert_same_samples(list(marked), want)
    assert_same_batch(hetload.collate(marked), hetload.collate(want))


@pytest.mark.parametrize(
    "schema",
    [
        DEFAULT_SCHEMA.extend({"faces": "ragged"}),  # faces not an index: stored values
        DEFAULT_SCHEMA.extend({"faces": "index:colors"}),  # another target
        Schema(),  # every field inferred: faces ragged
    ],
    ids=["faces-ragged", "faces-into-colors", "inferred"],
)
def test_a_schema_other_than_the_default_sees_the_stored_indices(tmp_path, schema):
    """The read re-bases faces as the default schema batches them; under any other schema the
    batch is what the plain collate makes of the stored samples."""
    rng = np.random.default_rng(3)
    data = [
        {
            "verts": rng.standard_normal((n, 3)).astype(np.float32),
            "colors": rng.random((n + 2, 3)).astype(np.float32),
            "faces": rng.integers(0, max(n, 1), (n, 3)).astype(np.int64),
        }
        for n in (5, 3, 8, 2)
    ]
    write_shards(data, tmp_path, max_count=3)
    ds = ShardDataset(tmp_path)
    packed = ds.__getitems__([2, 0, 3, 1])
    assert isinstance(packed, PackedSamples)
    want = per_sample(ds, [2, 0, 3, 1])
    assert_same_batch(hetload.collate(packed, schema), hetload.collate(want, schema))
    assert_same_samples(list(packed), want)
    # and the default schema on a fresh read still takes the fast path, re-based once
    again = ds.__getitems__([2, 0, 3, 1])
    assert_same_batch(hetload.collate(again), hetload.collate(want))


@pytest.mark.parametrize("what", ["name", "size", "npy-shape", "npy-dtype", "json"])
def test_a_changed_byte_in_any_checked_header_leaves_the_batch_to_the_per_sample_path(
    tmp_path, what, read_path
):
    """Each check of the batch read on its own: a tar name, a tar size field, an ``.npy``
    header whose shape or dtype differs from the index's layout at the same length, a broken
    ``.json``. None may reach a batch; the per-sample path names the sample."""
    rng = np.random.default_rng(2)
    data = [
        {
            "verts": rng.standard_normal((12, 3)).astype(np.float32),
            "faces": rng.integers(0, 12, (7, 3)).astype(np.int64),
        }
        for _ in range(4)
    ]
    index = write_shards(data, tmp_path)
    path = tmp_path / index.shards[0].url
    blob = bytearray(path.read_bytes())
    ds = ShardDataset(tmp_path)
    verts = int(ds._offset["verts.npy"][2])
    if what == "name":
        blob[verts - 512 + 3] ^= 0x01
    elif what == "size":
        field = verts - 512 + 124
        digits = bytes(blob[field : field + 11])
        blob[field : field + 11] = b"%011o" % (int(digits, 8) ^ 1)
    elif what == "npy-shape":
        at = blob.index(b"(12, 3)", verts)
        blob[at : at + 7] = b"(3, 12)"
    elif what == "npy-dtype":
        at = blob.index(b"<f4", verts)
        blob[at : at + 3] = b"<i4"
    else:
        at = int(ds._offset["json"][2])
        blob[at] = ord("[")
    path.write_bytes(bytes(blob))
    ds = ShardDataset(tmp_path, on_error="skip", check=False)
    if read_path == "compiled" and what != "json":
        reader = batch_read._Reader(ds, [0, 2, 3], [0, 0, 0], batch_read.batch_buffer)
        assert reader.read([0, 2, 3]) is None
        reason = {"name": "tar name", "size": "tar size"}.get(what, "npy header")
        assert reader.refusal == (1, reason)  # the second sample of the batch, and why
    got = ds.__getitems__([0, 2, 3])
    assert not isinstance(got, PackedSamples)
    if what in ("npy-shape", "npy-dtype"):
        # a valid .npy of another shape or dtype: the per-sample path reads what is stored and
        # its checks against the index decide; the batch never holds the index's layout
        assert (
            got[1] is None
            or got[1]["verts"].shape != (12, 3)
            or got[1]["verts"].dtype != np.float32
        )
    else:
        assert got[1] is None and got[0] is not None and got[2] is not None
        assert ds.report, "the per-sample path records the sample it skipped"
        if what == "json":
            assert "JSON" in ds.report[-1].reason or "json" in ds.report[-1].reason


def test_the_read_kernel_refuses_inconsistent_arguments_by_name(read_path):
    """``read_members_`` is internal, but a wrong table must raise, never read out of bounds."""
    if read_path != "compiled":
        pytest.skip("the compiled kernel only")
    op = torch.ops.hetload.read_members_
    u8 = torch.zeros(64, dtype=torch.uint8)
    spans = torch.tensor([[0, 1024, 0]], dtype=torch.int64)
    member = [0, 512, 64, 0, 0, 0, 0, 0, -1, -1, -1, 0]
    json = torch.empty((1, 2), dtype=torch.int64)
    with pytest.raises(RuntimeError, match=r"read_members_.*members must be"):
        op(u8, u8, spans, torch.zeros((1, 5), dtype=torch.int64), u8, u8, json)
    with pytest.raises(RuntimeError, match=r"read_members_.*spans must be"):
        op(u8, u8, spans.view(-1), torch.tensor([member]), u8, u8, json)
    with pytest.raises(RuntimeError, match=r"read_members_.*uint8"):
        op(u8.float(), u8, spans, torch.tensor([member]), u8, u8, json)
    # the data of a member beyond the buffer's end
    with pytest.raises(RuntimeError, match="does not fit the buffer"):
        op(torch.zeros(10, dtype=torch.uint8), torch.zeros(2048, dtype=torch.uint8), spans,
           torch.tensor([member]), u8, u8, json)  # fmt: skip
    # scratch too small for the sample's headers
    with pytest.raises(RuntimeError, match="scratch holds"):
        op(u8, torch.zeros(8, dtype=torch.uint8), spans, torch.tensor([member]), u8, u8, json)


def test_an_index_out_of_range_is_refused_by_the_read_itself(tmp_path, read_path):
    if read_path != "compiled":
        pytest.skip("the compiled kernel only")
    data = [
        {"verts": np.zeros((4, 3), np.float32), "faces": np.array([[0, 1, 2]], np.int32)},
        {"verts": np.zeros((2, 3), np.float32), "faces": np.array([[0, 1, -1]], np.int32)},
    ]
    write_shards(data, tmp_path)
    ds = ShardDataset(tmp_path)
    reader = batch_read._Reader(ds, [0, 1], [0, 0], batch_read.batch_buffer)
    assert reader.read([0, 1]) is None and reader.refusal == (1, "index range")


@shard_examples(40)
@given(at=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255), seed=st.integers(0, 9))
def test_any_changed_byte_gives_what_the_per_sample_path_gives(tmp_path_factory, at, flip, seed):
    """One byte of a shard changed anywhere (tar header, padding, .npy header, data, .json):
    a batch the batch read accepts holds exactly what the per-sample path reads from the same
    bytes (changed array data is read alike by both: shards carry no checksum); any header it
    cannot vouch for leaves the batch to the per-sample path."""
    root = tmp_path_factory.mktemp("flip")
    rng = np.random.default_rng(seed)
    data = [
        {
            "verts": rng.standard_normal((n, 3)).astype(np.float32),
            "faces": rng.integers(0, max(n, 1), (n // 2, 3)).astype(np.int64),
            "label": int(n % 3),
        }
        for n in rng.integers(1, 40, size=5)
    ]
    index = write_shards(data, root)
    path = root / index.shards[0].url
    blob = bytearray(path.read_bytes())
    blob[int(at * len(blob))] ^= flip
    path.write_bytes(bytes(blob))
    ds = ShardDataset(root, on_error="skip", check=False)
    indices = [4, 0, 2, 1, 3]
    got = ds.__getitems__(indices)
    want = per_sample(ds, indices)
    assert_same_samples(list(got), want)
    if isinstance(got, PackedSamples):
        assert_same_collate(got, want)


class Mangle(Transform):
    """A transform that adds seeded noise to verts in place (the array it was given), drops
    samples with few verts (a ValueError: the policy skips them) and keeps the rest."""

    def apply(self, sample, rng):
        verts = sample.get("verts")
        if verts is not None:
            if len(verts) < 3:
                raise ValueError("too few verts for this transform")
            verts += np.float32(rng.normal())
        return sample


@shard_examples(30)
@given(data=datasets(), pick=st.data())
def test_a_transform_sees_the_samples_the_per_sample_path_reads(tmp_path_factory, data, pick):
    """With a transform, the batch's stored samples come from one batch read and are then
    transformed one by one: the same samples, seeds, skips and substitutes as reading each
    sample alone; an in-place transform and repeated indices included."""
    root = tmp_path_factory.mktemp("tr")
    write_shards(data, root, max_count=pick.draw(st.integers(1, 6)))
    indices = pick.draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=10))
    epoch = pick.draw(st.integers(0, 3))
    ds, reference = (ShardDataset(root, transform=Mangle(), on_error="skip", seed=3) for _ in "ab")
    ds.set_epoch(epoch)
    reference.set_epoch(epoch)
    want = per_sample_or_same_refusal(ds, reference, indices)
    if want is None:
        return
    got = ds.__getitems__(indices)
    assert type(got) is list
    assert_same_samples(got, want)
    assert list(ds.report) == list(reference.report)  # the same samples skipped, and why


def test_the_transform_path_takes_one_batch_read(tmp_path, monkeypatch):
    data = [{"verts": np.full((4, 3), k, np.float32)} for k in range(6)]
    write_shards(data, tmp_path, max_count=4)
    ds = ShardDataset(tmp_path, transform=Mangle())
    calls = []
    monkeypatch.setattr(ShardDataset, "_read_members", lambda *a: calls.append(a))
    got = ds.__getitems__([5, 1, 5, 0])
    assert calls == []  # no per-sample read
    assert [int(s["verts"][0, 0] - s["verts"][0, 1]) for s in got] == [0] * 4
    again = ShardDataset(tmp_path, transform=Mangle())
    monkeypatch.undo()
    assert_same_samples(got, [again[i] for i in (5, 1, 5, 0)])
