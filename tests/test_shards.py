"""Shard format, writer, index and ShardDataset, against independent references (``tarfile``,
``np.load``, WebDataset's own reader) and hypothesis-generated samples."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import hetload
from hetload.data import ShardDataset
from hetload.shards import ShardError, ShardIndex
from hetload.shards.format import decode_npy, encode_npy, encode_sample
from hetload.shards.writer import ShardWriter, write_shards

DTYPES = ["<f4", "<f8", "<i8", "<i4", "|u1", "|b1", "<f2", ">f4", ">i8", "<u2"]


def _array(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
    out = raw.view(np.dtype(dtype).newbyteorder("=")).astype(dtype).reshape(shape)
    return out if np.dtype(dtype).kind != "b" else out.astype(bool)


def _same(a, b) -> bool:
    """Bit-for-bit equality of two sample values (arrays: dtype, shape and bytes)."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    return type(a) is type(b) and a == b


def _mesh(rng: np.random.Generator, n: int) -> dict:
    return {
        "verts": rng.standard_normal((n, 3)).astype(np.float32),
        "faces": rng.integers(0, max(n, 1), size=(n // 2 if n else 0, 3)).astype(np.int64),
    }


@st.composite
def samples(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([d for d in DTYPES if not d.startswith(">")]))
    out = []
    for _ in range(draw(st.integers(1, 12))):
        sample = _mesh(rng, draw(st.integers(0, 40)))
        if draw(st.booleans()):
            sample["extra_field"] = _array(rng, dtype, (draw(st.integers(0, 5)), 2))
        if draw(st.booleans()):
            sample["label"] = draw(st.integers(-(2**40), 2**40))
            sample["name"] = draw(st.text(max_size=8))
        out.append(sample)
    return out


# --------------------------------------------------------------------------- .npy members
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple),
    seed=st.integers(0, 2**32 - 1),
)
def test_npy_member_round_trip_matches_np_load(dtype, shape, seed):
    array = _array(np.random.default_rng(seed), dtype, shape)
    data = encode_npy(array)
    reference = np.load(io.BytesIO(data), allow_pickle=False)
    decoded = decode_npy(bytearray(data), "s.tar", "k.x.npy")
    assert _same(reference, array)
    assert _same(decoded, array)
    assert decoded.flags.writeable  # decoded from a bytearray: usable by in-place transforms


def test_npy_fortran_order_and_structured_dtypes():
    for array in (
        np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        np.zeros(3, dtype=[("a", "<f4"), ("b", "<i8", (2,))]),
    ):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        decoded = decode_npy(buffer.getvalue(), "s.tar", "k.x.npy")
        assert decoded.dtype == array.dtype and np.array_equal(decoded, array)


def test_npy_refuses_objects_and_names_the_member_when_corrupt():
    with pytest.raises(ValueError, match="objects"):
        encode_npy(np.array([{"a": 1}], dtype=object))
    data = bytearray(encode_npy(np.arange(10, dtype=np.float32)))
    with pytest.raises(ShardError, match=r"shard s\.tar, member 1\.v\.npy: .*truncated"):
        decode_npy(data[:-4], "s.tar", "1.v.npy")
    with pytest.raises(ShardError, match="bad magic"):
        decode_npy(b"not an npy member", "s.tar", "1.v.npy")
    pickled = io.BytesIO()
    np.save(pickled, np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(ShardError, match="pickle"):
        decode_npy(pickled.getvalue(), "s.tar", "1.v.npy")


def test_field_names_that_would_break_the_key_are_refused():
    with pytest.raises(ValueError, match=r"'a\.b'"):
        encode_sample("000", {"a.b": np.zeros(3)}, source="x", counts={})
    with pytest.raises(ValueError, match="'bad'"):
        encode_sample("000", {"bad": object()}, source="x", counts={})


# --------------------------------------------------------------------------- tar writer
def test_tar_is_standard_deterministic_and_offsets_match_tarfile(tmp_path):
    rng = np.random.default_rng(0)
    sample_dicts = [_mesh(rng, n) | {"label": i} for i, n in enumerate([3, 0, 700])]
    index = write_shards(sample_dicts, tmp_path / "a")
    write_shards(sample_dicts, tmp_path / "b")
    a, b = tmp_path / "a" / "shard-000000.tar", tmp_path / "b" / "shard-000000.tar"
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_bytes()) % 10240 == 0

    entry = index.shards[0]
    with tarfile.open(a) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [
            f"{i:09d}.{suffix}" for i in range(3) for suffix in ("faces.npy", "json", "verts.npy")
        ]
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o644)
            key, suffix = m.name.split(".", 1)
            row = entry.keys.index(key)
            assert entry.offset[suffix][row] == m.offset_data
            assert entry.size[suffix][row] == m.size
        meta = json.loads(tar.extractfile("000000002.json").read())
    assert meta == {
        "arrays": ["faces", "verts"],
        "counts": {"faces": 350, "verts": 700},
        "extra": {"label": 2},
        "source": "sample-2",
    }
    assert entry.filesize == a.stat().st_size


def test_only_complete_shards_have_their_final_name(tmp_path):
    writer = ShardWriter(tmp_path / "shard-000000.tar")
    writer.add(encode_sample("000", {"v": np.zeros((2, 3))}, source="x", counts={}))
    assert not (tmp_path / "shard-000000.tar").exists()
    assert (tmp_path / "shard-000000.tar.partial").exists()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_shards_are_cut_by_count_and_bytes(tmp_path):
    rng = np.random.default_rng(1)
    sample_dicts = [_mesh(rng, 100) for _ in range(10)]
    by_count = write_shards(sample_dicts, tmp_path / "count", max_count=4)
    assert [s.nsamples for s in by_count.shards] == [4, 4, 2]
    one = encode_sample("0", sample_dicts[0], source="", counts={}).tar_bytes
    by_bytes = write_shards(sample_dicts, tmp_path / "bytes", shard_size=3 * one)
    assert [s.nsamples for s in by_bytes.shards] == [3, 3, 3, 1]
    tiny = write_shards(sample_dicts[:2], tmp_path / "tiny", shard_size=1)
    assert [s.nsamples for s in tiny.shards] == [1, 1]  # an oversized sample gets its own shard


# --------------------------------------------------------------------------- ShardDataset
@given(samples())
def test_shard_dataset_returns_the_samples_bit_for_bit(tmp_path_factory, sample_dicts):
    root = tmp_path_factory.mktemp("ds")
    write_shards(sample_dicts, root, max_count=5)
    ds = ShardDataset(root)
    assert len(ds) == len(sample_dicts)
    assert ds.sizes.tolist() == [len(s["verts"]) for s in sample_dicts]
    for i, original in enumerate(sample_dicts):
        got = ds[i]
        assert got.pop("key") == f"sample-{i}"  # the source write_shards records
        assert got.keys() == original.keys()
        for name in original:
            assert _same(got[name], original[name]), name
    # collate of the read samples (keys left out) equals collate of the originals
    uniform = [s for s in sample_dicts if s.keys() == sample_dicts[0].keys()]
    ids = [i for i, s in enumerate(sample_dicts) if s.keys() == sample_dicts[0].keys()]
    read = [{k: v for k, v in ds[i].items() if k != "key"} for i in ids]
    _assert_batches_equal(hetload.collate(read), hetload.collate(uniform))


def _assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for name in a.keys():  # noqa: SIM118 (iterating a HeteroBatch gives samples)
        x, y = a[name], b[name]
        if isinstance(x, hetload.Ragged):
            assert x.values.dtype == y.values.dtype
            assert x.values.numpy().tobytes() == y.values.numpy().tobytes()
            assert x.offsets.tolist() == y.offsets.tolist()
        elif isinstance(x, list):
            assert x == y
        else:
            assert x.dtype == y.dtype and x.numpy().tobytes() == y.numpy().tobytes()


def test_shard_dataset_in_dataloader_workers(tmp_path):
    rng = np.random.default_rng(2)
    sample_dicts = [_mesh(rng, int(n)) for n in rng.integers(0, 300, size=23)]
    write_shards(sample_dicts, tmp_path, max_count=4)
    ds = ShardDataset(tmp_path, fields=["verts", "faces"])
    ds[0]  # the parent opens a handle first: workers must not reuse it
    loader = DataLoader(ds, batch_size=5, num_workers=2, collate_fn=hetload.collate)
    got = [s for batch in loader for s in batch]
    assert len(got) == len(sample_dicts)
    for sample, original in zip(got, sample_dicts):
        assert sample["verts"].numpy().tobytes() == original["verts"].tobytes()
        assert sample["faces"].numpy().tobytes() == original["faces"].tobytes()


def test_sizes_and_keys_come_from_the_index_alone(tmp_path):
    rng = np.random.default_rng(3)
    write_shards([_mesh(rng, n) for n in (5, 9, 2)], tmp_path, max_count=2)
    for shard in tmp_path.glob("*.tar"):
        shard.unlink()
    ds = ShardDataset(tmp_path, check=False)
    assert ds.sizes.tolist() == [5, 9, 2]
    assert ds.key(1) == "000000001"
    with pytest.raises(ShardError, match=r"shard-000000\.tar: listed in the index but missing"):
        ds[0]
    with pytest.raises(ShardError, match="missing"):
        ShardDataset(tmp_path)


def test_wids_and_webdataset_read_our_output(tmp_path):
    rng = np.random.default_rng(4)
    sample_dicts = [_mesh(rng, n) for n in (4, 0, 7)]
    write_shards(sample_dicts, tmp_path, max_count=2)
    spec = json.loads((tmp_path / "index.json").read_text())
    assert spec["__kind__"] == "wids-shard-index-v1" and spec["wids_version"] == 1
    assert [(s["url"], s["nsamples"]) for s in spec["shardlist"]] == [
        ("shard-000000.tar", 2),
        ("shard-000001.tar", 1),
    ]
    urls = [str(tmp_path / s["url"]) for s in spec["shardlist"]]
    seen = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in seen] == ["000000000", "000000001", "000000002"]
    for got, original in zip(seen, sample_dicts):
        verts = np.load(io.BytesIO(got["verts.npy"]), allow_pickle=False)
        assert _same(verts, original["verts"])


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def small_shards(tmp_path) -> Path:
    rng = np.random.default_rng(5)
    write_shards([_mesh(rng, n) for n in (50, 60, 70, 80)], tmp_path, max_count=2)
    return tmp_path


def test_truncated_shard_is_named_on_open_and_on_read(small_shards):
    shard = small_shards / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:1500])
    with pytest.raises(ShardError, match=r"shard-000001\.tar: is 1500 bytes, the index says"):
        ShardDataset(small_shards)
    ds = ShardDataset(small_shards, check=False)
    assert ds[0] is not None
    with pytest.raises(ShardError, match=r"shard-000001\.tar, member 000000002\.json: .*truncated"):
        ds[2]
    skipping = ShardDataset(small_shards, check=False, on_error="skip")
    assert skipping[3] is None
    assert "shard-000001.tar" in skipping.report[0].source


def test_corrupted_member_is_named(small_shards):
    ds = ShardDataset(small_shards)
    offset = int(ds._offset["verts.npy"][1])
    shard = small_shards / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[offset : offset + 6] = b"garbag"
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"member 000000001\.verts\.npy: not a \.npy member"):
        ShardDataset(small_shards)[1]


def test_index_that_does_not_match_its_shards_is_named(small_shards, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    rng = np.random.default_rng(6)
    write_shards([_mesh(rng, n) for n in (60, 50, 80, 70)], other, max_count=2)
    # the same samples two by two in swapped order: equal file sizes, other layout
    for shard in other.glob("*.tar"):
        (small_shards / shard.name).write_bytes(shard.read_bytes())
    with pytest.raises(
        ShardError, match=r"member 000000000\.faces\.npy: the tar header .*does not match"
    ):
        ShardDataset(small_shards)[0]


def test_missing_field_and_malformed_index_are_named(small_shards):
    with pytest.raises(ShardError, match=r"member 000000000\.normals\.npy: missing"):
        ShardDataset(small_shards, fields=["verts", "normals"])[0]
    index = json.loads((small_shards / "index.json").read_text())
    index["shardlist"][1]["keys"].pop()
    (small_shards / "index.json").write_text(json.dumps(index))
    with pytest.raises(ShardError, match=r"shard shard-000001\.tar: .*'keys' has 1 entries"):
        ShardIndex.load(small_shards)
    (small_shards / "index.json").write_text(
        json.dumps({"__kind__": "wids-shard-index-v1", "shardlist": []})
    )
    with pytest.raises(ValueError, match="not hetload's format"):
        ShardDataset(small_shards)
