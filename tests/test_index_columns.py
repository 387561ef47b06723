"""The columnar sidecar of a large index (issue 15, scale): written beside ``index.json`` above
a threshold, memory-mapped on load, the same data as the JSON lists, and refused when stale,
truncated or malformed, with the file and column named."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_elastic_resume import make_samples

import hetload.shards.index as index_module
from hetload.data import ShardDataset, ShardStream
from hetload.shards.columns import ColumnShards
from hetload.shards.index import ShardIndex
from hetload.shards.writer import write_shards


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    """The same shards indexed twice: JSON lists (``json/``) and the sidecar (``cols/``)."""
    samples = make_samples(45, seed=6)
    for i, s in enumerate(samples):
        if i % 3 == 0:
            s["faces"] = np.zeros((i % 5, 3), np.int64)  # a field some samples lack
    write_shards(samples, tmp_path / "json", max_count=7)
    shutil.copytree(tmp_path / "json", tmp_path / "cols")
    index = ShardIndex.load(tmp_path / "cols")
    index.write(tmp_path / "cols" / "index.json", lists=False)
    return tmp_path / "json", tmp_path / "cols"


def sidecar(root: Path) -> Path:
    (folder,) = root.glob("index.*.columns")
    return folder


def test_the_sidecar_holds_what_the_json_lists_hold(pair):
    plain, cols = pair
    data = json.loads((cols / "index.json").read_text())
    assert "columns" in data["hetload"]
    assert all(set(e) == {"url", "nsamples", "filesize", "sha256"} for e in data["shardlist"])
    a, b = ShardIndex.load(plain), ShardIndex.load(cols)
    assert isinstance(b.shards, ColumnShards) and not isinstance(a.shards, ColumnShards)
    assert "columns" not in b.info and a.info == b.info
    assert a.nsamples == b.nsamples == 45 and a.field_names() == b.field_names()
    for name in a.field_names():
        assert a.rows(name).tolist() == b.rows(name).tolist()
    for x, y in zip(a.shards, b.shards):
        assert x.to_json() == y.to_json()  # every per-sample column, as lists
    assert isinstance(b.columns.start, np.memmap)  # mapped, not read


def test_readers_serve_the_same_data_from_either_form(pair):
    plain, cols = pair
    da, db = ShardDataset(plain), ShardDataset(cols)
    assert len(da) == len(db) == 45
    for i in (0, 7, 44):
        x, y = da[i], db[i]
        assert x.keys() == y.keys()
        assert all(np.array_equal(x[k], y[k]) for k in x if isinstance(x[k], np.ndarray))
    sa = ShardStream(plain, max_tokens=900, buffer_size=8, rank=1, world_size=2)
    sb = ShardStream(cols, max_tokens=900, buffer_size=8, rank=1, world_size=2)
    assert sa.fingerprint == sb.fingerprint
    got = [(b["label"].tolist(), b["is_repeat"].tolist()) for b in sb]
    assert got == [(b["label"].tolist(), b["is_repeat"].tolist()) for b in sa]


def test_writers_use_the_sidecar_above_the_threshold_and_drop_stale_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(index_module, "COLUMNS_FROM", 10)
    write_shards(make_samples(12), tmp_path, max_count=5)
    first = sidecar(tmp_path)
    write_shards(make_samples(12, seed=1), tmp_path, max_count=5)  # other data, same folder
    second = sidecar(tmp_path)  # the earlier write's sidecar is gone
    assert second != first and not first.exists()
    assert ShardIndex.load(tmp_path).nsamples == 12
    assert not list(tmp_path.glob(".*partial"))  # nothing half-written is left
    monkeypatch.setattr(index_module, "COLUMNS_FROM", 100)
    write_shards(make_samples(12), tmp_path, max_count=5)  # below it: JSON lists only
    assert not list(tmp_path.glob("index.*.columns"))
    assert "keys" in json.loads((tmp_path / "index.json").read_text())["shardlist"][0]


def test_preprocess_resume_and_stats_read_a_sidecar_index(tmp_path, monkeypatch):
    from test_preprocess import make_folder

    from hetload.cli.stats import index_sizes
    from hetload.shards import preprocess

    monkeypatch.setattr(index_module, "COLUMNS_FROM", 5)
    make_folder(tmp_path / "src", 12)
    first = preprocess(tmp_path / "src", tmp_path / "dst", progress=False, max_count=4)
    assert sidecar(tmp_path / "dst").is_dir()
    again = preprocess(tmp_path / "src", tmp_path / "dst", progress=False, max_count=4)
    assert again.already_complete and again.samples == first.samples == 12
    assert again.shard_bytes == first.shard_bytes
    sizes, row_bytes = index_sizes(tmp_path / "dst")
    assert sizes["verts"].shape == (12,) and row_bytes["verts"] == 12  # float32 xyz


def corrupt(folder: Path, column: str, array: np.ndarray) -> None:
    np.save(folder / f"{column}.npy", array)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: corrupt(f, "start", np.zeros(3, np.int64)), r"start\.npy: column 'start' has 3"),
        (
            lambda f: corrupt(f, "end", np.load(f / "end.npy").astype(np.float64)),
            r"end\.npy: column 'end' is float64",
        ),
        (
            lambda f: corrupt(f, "key_offsets", np.load(f / "key_offsets.npy")[::-1].copy()),
            r"key_offsets\.npy: column 'key_offsets' entry 0",
        ),
        (
            lambda f: corrupt(f, "start", np.load(f / "start.npy") * 0 + 600),
            r"start\.npy: column 'start' entry 1: 600 is before",
        ),
        (
            lambda f: corrupt(f, "offset.verts.npy", np.load(f / "offset.verts.npy.npy") + 10**6),
            r"offset\.verts\.npy\.npy: column 'offset\.verts\.npy' entry 0",
        ),
        (lambda f: (f / "rows.verts.npy").unlink(), r"column 'rows\.verts' is missing"),
        (lambda f: corrupt(f, "counts", np.full(7, 6, np.int64)), r"column 'counts' entry"),
    ],
)
def test_a_malformed_sidecar_is_refused_naming_file_and_column(pair, change, message):
    _, cols = pair
    change(sidecar(cols))
    with pytest.raises(ValueError, match=message):
        ShardIndex.load(cols)


def test_a_stale_or_missing_sidecar_is_refused(pair, tmp_path):
    _, cols = pair
    folder = sidecar(cols)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "digest": "0" * 16}))
    with pytest.raises(ValueError, match="another write"):
        ShardIndex.load(cols)
    shutil.rmtree(folder)
    with pytest.raises(ValueError, match=r"sidecar .* is missing"):
        ShardIndex.load(cols)
    # the JSON's shard list disagreeing with the sidecar's counts
    other = tmp_path / "other"
    write_shards(make_samples(30, seed=2), other, max_count=7)
    ShardIndex.load(other).write(other / "index.json", lists=False)
    data = json.loads((other / "index.json").read_text())
    data["shardlist"][0]["nsamples"] += 1
    (other / "index.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="31 in 5"):
        ShardIndex.load(other)


def test_hetload_check_validates_an_index(pair, capsys):
    from hetload.cli import main

    _, cols = pair
    assert main(["check", str(cols)]) == 0
    out = capsys.readouterr().out
    assert "45 samples in 7 shards" in out and "sidecar" in out
    (cols / "shard-000002.tar").write_bytes(b"")
    assert main(["check", str(cols / "index.json")]) == 1
    assert "shard-000002.tar" in capsys.readouterr().out
    shutil.rmtree(sidecar(cols))
    assert main(["check", str(cols)]) == 1
    assert "is missing" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("entry", "value", "message"),
    [
        ("nsamples", 2.5, r"entry 3: 'nsamples' must be a non-negative int"),
        ("filesize", True, r"entry 3: 'filesize' must be an int"),
        ("url", "./shard-000001.tar", r"entries 1 and 3 list the same shard"),
        ("sha256", 7, r"entry 3: 'sha256' must be a string"),
    ],
)
def test_a_malformed_shard_line_of_a_sidecar_index_is_named(pair, entry, value, message):
    _, cols = pair
    data = json.loads((cols / "index.json").read_text())
    data["shardlist"][3][entry] = value
    (cols / "index.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        ShardIndex.load(cols)


def test_a_mapped_index_crosses_to_workers_as_its_folder(pair):
    import pickle

    plain, cols = pair
    index = ShardIndex.load(cols)
    raw = pickle.dumps(index.columns)
    assert len(raw) < 4096  # the folder, not 45 samples' columns (nor 10M)
    again = pickle.loads(raw)
    assert isinstance(again.start, np.memmap)
    for name in ("start", "end", "key_offsets", "key_blob", "counts"):
        assert np.array_equal(getattr(again, name), getattr(index.columns, name))
    assert list(again.keys) == list(index.columns.keys)
    assert sorted(again.offset) == sorted(index.columns.offset)
    built = ShardIndex.load(plain).columns  # (from JSON lists: pickled whole)
    assert np.array_equal(pickle.loads(pickle.dumps(built)).end, built.end)
    # what a spawned DataLoader worker receives reads the same samples
    ds = ShardDataset(cols)
    copy = pickle.loads(pickle.dumps(ds))
    assert [copy[i]["label"] for i in range(len(ds))] == [ds[i]["label"] for i in range(len(ds))]


@pytest.mark.parametrize("width", ["fixed", "mixed"])
def test_hetload_check_finds_a_key_listed_twice_in_a_sidecar(pair, capsys, width):
    from hetload.cli import main
    from hetload.shards.columns import duplicate_key

    _, cols = pair
    folder = sidecar(cols)
    blob = np.load(folder / "key_blob.npy")
    offsets = np.load(folder / "key_offsets.npy")
    assert duplicate_key(ShardIndex.load(cols).columns) is None
    keys = [bytes(blob[a:b]) for a, b in itertools.pairwise(offsets)]
    keys[30] = keys[4]  # (a sidecar written by something else: its digest is not checked here)
    if width == "mixed":
        keys[0] = b"k"
    np.save(folder / "key_blob.npy", np.frombuffer(b"".join(keys), np.uint8))
    lengths = np.cumsum([0] + [len(k) for k in keys])
    np.save(folder / "key_offsets.npy", lengths.astype(offsets.dtype))
    assert main(["check", str(cols)]) == 1
    assert f"{keys[4].decode()!r} is listed twice" in capsys.readouterr().out


def test_hetload_check_recomputes_the_sidecar_digest(pair, capsys):
    from hetload.cli import main

    _, cols = pair
    folder = sidecar(cols)
    rows = np.load(folder / "rows.verts.npy")
    rows[5] += 1  # still consistent with the layout: only the digest tells
    np.save(folder / "rows.verts.npy", rows)
    assert ShardIndex.load(cols).rows("verts")[5] == rows[5]
    assert main(["check", str(cols)]) == 1
    assert "do not match their digest" in capsys.readouterr().out


def test_parts_with_sidecars_merge_into_a_sidecar_index(tmp_path, monkeypatch):
    from test_preprocess import make_folder

    from hetload.shards import merge_parts, preprocess

    monkeypatch.setattr(index_module, "COLUMNS_FROM", 3)
    make_folder(tmp_path / "src", 10)
    preprocess(tmp_path / "src", tmp_path / "whole", progress=False, max_count=3)
    for i in range(2):
        preprocess(tmp_path / "src", tmp_path / "parts", progress=False, max_count=3, part=f"{i}/2")
    assert all(sidecar(p) for p in (tmp_path / "parts").glob("part-*"))
    merged = merge_parts(tmp_path / "parts")
    assert merged.nsamples == 10 and sidecar(tmp_path / "parts").is_dir()
    whole, parts = ShardDataset(tmp_path / "whole"), ShardDataset(tmp_path / "parts")
    assert isinstance(parts.index.shards, ColumnShards)
    for i in range(10):
        assert whole.key(i) == parts.key(i)
        assert whole[i]["verts"].tobytes() == parts[i]["verts"].tobytes()


@pytest.mark.parametrize(
    "garbage",
    [b"{'descr': (((", b"{'descr': '<i8', 'fortran_order': 1, 'shape': (3,), }", b"\xff\xfe"],
)
def test_a_damaged_column_header_is_a_named_error(tmp_path, monkeypatch, garbage):
    """Regression: numpy's .npy header reader raised tokenize.TokenError (a bare traceback) on a
    sidecar column whose header text was damaged."""
    monkeypatch.setattr(index_module, "COLUMNS_FROM", 5)
    write_shards(make_samples(12), tmp_path, max_count=5)
    column = sidecar(tmp_path) / "start.npy"
    blob = bytearray(column.read_bytes())
    blob[10 : 10 + len(garbage)] = garbage
    column.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"start\.npy: column 'start' is not a \.npy array"):
        ShardIndex.load(tmp_path).columns  # noqa: B018 (loading maps and checks the columns)
