"""Adversarial pass over the batch-level shard read (hetload.data.batch_read, the compiled
``torch.ops.hetload.read_members_`` of cuda/read_cpu.cpp, hetload.packed): messy shards and
indexes a user may hand it, each read by the fast path and by the reference, the per-sample path
(``getitems`` then ``hetload.collate``), which must agree exactly: the same samples, the same
batch, or the same error (type and message)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_batch_read import assert_same_samples, same_value, shard_examples

import hetload
from hetload.data import ShardDataset, batch_read
from hetload.data.substitute import getitems
from hetload.ops.library import has_kernel
from hetload.packed import PackedSamples
from hetload.shards import format as shard_format
from hetload.shards.writer import write_shards

COMPILED = has_kernel("read_members_", "CPU")


def outcome(fn):
    """``("ok", value)`` or ``("raise", type, message)`` (object addresses in the message,
    which Python's ``ast`` errors quote, left out)."""
    try:
        return ("ok", fn())
    except Exception as exc:  # the error itself is compared
        return ("raise", type(exc), re.sub(r" at 0x[0-9a-f]+", "", str(exc)))


def assert_same_batches(a: hetload.HeteroBatch, b: hetload.HeteroBatch) -> None:
    assert list(a.keys()) == list(b.keys())
    for name in b.keys():  # noqa: SIM118
        x, y = a[name], b[name]
        assert type(x) is type(y), name
        if isinstance(y, hetload.Ragged):
            assert same_value(x.values, y.values) and same_value(x.offsets, y.offsets), name
            assert (x.index_base is None) == (y.index_base is None), name
        elif isinstance(y, torch.Tensor):
            assert same_value(x, y), name
        else:
            assert len(x) == len(y) and all(same_value(u, v) for u, v in zip(x, y)), name
        assert same_value(a.present(name), b.present(name)), name


def assert_as_per_sample(root, indices, on_error="raise", schema=None) -> str:
    """The fast path over ``root`` equals the per-sample path, down to the error; returns
    ``"packed"``, ``"list"`` (the batch read declined) or ``"refused"`` (the index itself)."""
    made = outcome(lambda: ShardDataset(root, on_error=on_error, check=False))
    if made[0] == "raise":  # an index refused at load: no path reads it (named in the message)
        assert made[1] is not None and ("index" in made[2] or "shard" in made[2]), made
        return "refused"
    ds = made[1]
    ref = ShardDataset(root, on_error=on_error, check=False)
    got = outcome(lambda: ds.__getitems__(indices))
    want = outcome(lambda: getitems(ref, indices))
    assert got[0] == want[0], (got, want)
    if want[0] == "raise":
        assert got[1:] == want[1:]
        return "list"
    assert_same_samples(list(got[1]), want[1])
    assert [(e.source, e.reason) for e in ds.report] == [(e.source, e.reason) for e in ref.report]
    fast = outcome(lambda: hetload.collate(got[1], schema))
    plain = outcome(lambda: hetload.collate(want[1], schema))
    assert fast[0] == plain[0], (fast, plain)
    if plain[0] == "raise":
        assert fast[1:] == plain[1:]
    else:
        assert_same_batches(fast[1], plain[1])
        # items after the collate: the stored values still
        assert_same_samples(list(got[1]), want[1])
    return "packed" if isinstance(got[1], PackedSamples) else "list"


def write_with(root, data, encode, max_count=4):
    """``write_shards`` with each ``.npy`` member made by ``encode(array, position)``."""
    original = shard_format.encode_npy
    count = iter(range(10**9))
    shard_format.encode_npy = lambda array: encode(array, next(count))
    try:
        write_shards(data, root, max_count=max_count)
    finally:
        shard_format.encode_npy = original


def npy(array, version=(1, 0), fortran=False, order=None) -> bytes:
    out = io.BytesIO()
    if order is not None:
        array = array.astype(array.dtype.newbyteorder(order))
    if fortran:
        array = np.asfortranarray(array)
    np.lib.format.write_array(out, array, version=version)
    return out.getvalue()


def meshes(seed=0, sizes=(4, 7, 0, 5, 9, 1), faces=np.int64):
    rng = np.random.default_rng(seed)
    return [
        {
            "verts": rng.standard_normal((n, 3)).astype(np.float32),
            "faces": rng.integers(0, max(n, 1), (n // 2, 3)).astype(faces),
            "label": n % 3,
        }
        for n in sizes
    ]


# ------------------------------------------------------------------------- .npy header forms
NPY_FORMS = {
    "v2": lambda a, k: npy(a, (2, 0)),
    "v3": lambda a, k: npy(a, (3, 0)),
    "fortran": lambda a, k: npy(a, fortran=True),
    "big-endian": lambda a, k: npy(a, order=">"),
    # a shard's first member in the ordinary form (the layout is learnt from it), later ones not
    "v2-after-v1": lambda a, k: npy(a, (2, 0) if k > 3 else (1, 0)),
    "fortran-after-c": lambda a, k: npy(a, fortran=k > 3),
    "big-after-little": lambda a, k: npy(a, order=">" if k > 3 else "<"),
}


@pytest.mark.parametrize("form", sorted(NPY_FORMS))
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_npy_header_forms_read_as_the_per_sample_path(tmp_path, read_path, form, on_error):
    write_with(tmp_path, meshes(), NPY_FORMS[form])
    assert_as_per_sample(tmp_path, [0, 1, 2, 3, 4, 5, 1], on_error)
    assert_as_per_sample(tmp_path, [5, 4], on_error)


# -------------------------------------------------------------------- dtypes and shapes
def _cases() -> dict[str, list[dict]]:
    z = np.zeros
    mesh = z((4, 3), np.float32)
    tri = np.array([[0, 1, 2]])
    return {
        "structured": [{"verts": z((n,), [("a", "<f4"), ("b", "<i2")])} for n in (3, 0, 2)],
        "0-d": [{"verts": mesh, "w": np.float64(n)} for n in (1, 2, 3)],
        "0-d-and-1-d": [{"verts": mesh, "w": np.float64(1)}, {"verts": mesh, "w": np.ones(1)}],
        "0-rows": [{"verts": z((0, 3), np.float32), "faces": z((0, 3), np.int64)}] * 3,
        "trailing-0": [{"verts": z((n, 0), np.float32)} for n in (0, 5, 2)],
        "faces-uint32": [{"verts": mesh, "faces": tri.astype(np.uint32)}] * 2,
        "faces-big-endian": [{"verts": mesh, "faces": tri.astype(">i8")}] * 2,
        "faces-int32-and-int64": [
            {"verts": mesh, "faces": tri.astype(np.int32)},
            {"verts": mesh, "faces": tri},
        ],
        "faces-1-d": [{"verts": mesh, "faces": np.array([0, 1, 2])}] * 2,
        "faces-float": [{"verts": mesh, "faces": tri.astype(np.float32)}] * 2,
        "faces-without-verts": [{"faces": tri}, {"verts": mesh, "faces": tri}],
        "float16": [{"verts": mesh.astype(np.float16), "faces": tri}] * 2,
        "complex": [{"verts": mesh.astype(np.complex128)}] * 2,
        "datetime": [{"verts": mesh, "t": z(4, "datetime64[s]")}] * 2,
        "unicode": [{"verts": mesh, "t": np.array(["ab", "c", "d", "e"])}] * 2,
        "void": [{"verts": mesh, "t": z(4, "V3")}] * 2,
        "longdouble": [{"verts": mesh.astype(np.longdouble)}] * 2,
        "3-d": [{"verts": z((n, 2, 3), np.float32)} for n in (1, 2)],
        "label-0-d-and-int": [{"verts": mesh, "label": np.array(3)}, {"verts": mesh, "label": 4}],
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_unusual_dtypes_and_shapes_read_as_the_per_sample_path(tmp_path, read_path, case):
    data = _cases()[case]
    write_shards(data, tmp_path, max_count=2)
    assert_as_per_sample(tmp_path, [*range(len(data)), 0])


def test_packed_rows_past_int64_give_the_plain_collate_error(tmp_path, read_path):
    """``[2**62 - 1, 0]`` arrays hold no byte but their rows overflow any int64 offsets: the
    batch read must not build offsets (it raised torch's ``Overflow when unpacking``); it leaves
    the field to the plain collate, whose error (or batch) it then gives."""
    huge = np.zeros((2**62 - 1, 0), np.uint8)
    write_shards([{"verts": huge} for _ in range(3)], tmp_path / "a")
    assert assert_as_per_sample(tmp_path / "a", [0, 1, 2]) == "packed"
    tri = np.array([[0, 1, 2]])
    write_shards([{"verts": huge, "faces": tri} for _ in range(3)], tmp_path / "b")
    assert_as_per_sample(tmp_path / "b", [0, 1, 2])
    # below the limit the fast path still batches them
    write_shards([{"verts": np.zeros((2**56, 0), np.float32)}] * 4, tmp_path / "c")
    assert assert_as_per_sample(tmp_path / "c", [0, 1, 2, 3]) == "packed"


# ---------------------------------------------------------------------- edited index.json
BIG = 2**62 - 1


def _index_edits():
    def shard(d):
        return d["shardlist"][0]

    def member(d, suffix):
        return shard(d)["members"][suffix]

    def put(column, at, value):
        column[at] = value

    def swap_samples(d):
        s = shard(d)
        columns = [s["start"], s["end"], *s["rows"].values()]
        for m in s["members"].values():
            columns += [m["offset"], m["size"]]
        for column in columns:
            column[0], column[1] = column[1], column[0]

    def swap_urls(d):
        a, b = d["shardlist"][0], d["shardlist"][1]
        a["url"], b["url"] = b["url"], a["url"]

    return {
        "offset-absent": lambda d: put(member(d, "verts.npy")["offset"], 1, -1),
        "json-absent": lambda d: put(member(d, "json")["offset"], 1, -1),
        "offset-of-another-sample": lambda d: put(
            member(d, "verts.npy")["offset"], 1, member(d, "verts.npy")["offset"][0]
        ),
        "offset-next-block": lambda d: put(
            member(d, "verts.npy")["offset"], 1, member(d, "verts.npy")["offset"][1] + 512
        ),
        "offset-huge": lambda d: put(member(d, "verts.npy")["offset"], 1, BIG),
        "offset-negative": lambda d: put(member(d, "faces.npy")["offset"], 1, -7),
        "size-huge": lambda d: put(member(d, "verts.npy")["size"], 1, BIG),
        "size-0": lambda d: put(member(d, "verts.npy")["size"], 1, 0),
        "size-negative": lambda d: put(member(d, "verts.npy")["size"], 1, -1),
        "size-plus-one": lambda d: put(
            member(d, "faces.npy")["size"], 1, member(d, "faces.npy")["size"][1] + 1
        ),
        "end-huge": lambda d: put(shard(d)["end"], 1, BIG),
        "end-of-last-huge": lambda d: put(shard(d)["end"], 3, BIG),
        "start-huge": lambda d: put(shard(d)["start"], 1, BIG),
        "start-after-end": lambda d: put(shard(d)["start"], 1, shard(d)["end"][1] + 5),
        "rows-plus-one": lambda d: put(
            shard(d)["rows"]["verts"], 1, shard(d)["rows"]["verts"][1] + 1
        ),
        "rows-huge": lambda d: put(shard(d)["rows"]["verts"], 1, BIG),
        "faces-rows-huge": lambda d: put(shard(d)["rows"]["faces"], 1, BIG),
        "rows-negative": lambda d: put(shard(d)["rows"]["verts"], 1, -1),
        "rows-0": lambda d: put(shard(d)["rows"]["verts"], 1, 0),
        "duplicate-key": lambda d: put(shard(d)["keys"], 1, shard(d)["keys"][0]),
        "keys-swapped": lambda d: put(shard(d)["keys"], slice(0, 2), shard(d)["keys"][1::-1]),
        "samples-swapped": swap_samples,
        "shards-swapped": swap_urls,
        "nsamples-short": lambda d: put(shard(d), "nsamples", shard(d)["nsamples"] - 1),
    }  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    write_shards(meshes(sizes=(4, 7, 0, 5, 9, 1, 3, 8)), root, max_count=4)
    return root


@pytest.mark.parametrize("edit", sorted(_index_edits()))
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_an_edited_index_is_refused_or_read_as_the_per_sample_path(
    tmp_path, written, read_path, edit, on_error
):
    root = tmp_path / "edited"
    shutil.copytree(written, root)
    index = json.loads((root / "index.json").read_text())
    _index_edits()[edit](index)
    (root / "index.json").write_text(json.dumps(index))
    assert_as_per_sample(root, [0, 1, 2, 3, 1, 5], on_error)


# ------------------------------------------------------------------ shards that changed
def _equal_members(n: int = 6):
    """Samples whose verts (float32) and faces (int32) members are the same size."""
    rng = np.random.default_rng(n)
    return [
        {
            "verts": rng.standard_normal((n, 3)).astype(np.float32),
            "faces": rng.integers(0, n, (n, 3)).astype(np.int32),
        }
        for _ in range(6)
    ]


@pytest.mark.parametrize("change", ["other-shard", "reordered", "renamed", "truncated-later"])
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_shard_changed_under_its_index(tmp_path, read_path, change, on_error):
    """A shard replaced by another of the same size, a sample's members reordered (same
    sizes), a member renamed (valid tar checksum), a shard truncated after the dataset has
    read it once (descriptors and layouts cached): the per-sample path's samples or error."""
    index = write_shards(_equal_members(), tmp_path, max_count=3)
    first, second = (tmp_path / s.url for s in index.shards)
    ds = ShardDataset(tmp_path, on_error=on_error, check=False)
    assert isinstance(ds.__getitems__([0, 1, 4]), PackedSamples)  # fast path primed
    blob = bytearray(first.read_bytes())
    if change == "other-shard":
        assert second.stat().st_size == first.stat().st_size
        blob = bytearray(second.read_bytes())
    elif change in ("reordered", "renamed"):
        faces, verts = int(ds._offset["faces.npy"][1]), int(ds._offset["verts.npy"][1])
        assert int(ds._size["faces.npy"][1]) == int(ds._size["verts.npy"][1])
        span = verts - faces
        if change == "reordered":
            a = bytes(blob[faces - 512 : faces - 512 + span])
            b = bytes(blob[verts - 512 : verts - 512 + span])
            blob[faces - 512 : faces - 512 + span] = b
            blob[verts - 512 : verts - 512 + span] = a
        else:
            header = bytearray(blob[verts - 512 : verts])
            at = header.index(b"verts")
            header[at : at + 5] = b"vertz"
            header[148:156] = b" " * 8
            header[148:156] = b"%06o\0 " % sum(header)
            assert tarfile.TarInfo.frombuf(bytes(header), "utf-8", "strict").name.endswith("z.npy")
            blob[verts - 512 : verts] = header
    else:
        blob = blob[: int(ds._end[1]) - 100]
    first.write_bytes(bytes(blob))
    for indices in ([0, 1, 4], [1], [4, 1, 1]):
        # the primed dataset (cached descriptors, layouts) and the reference agree
        ref = ShardDataset(tmp_path, on_error=on_error, check=False)
        got = outcome(lambda ids=indices: ds.__getitems__(ids))
        want = outcome(lambda ids=indices, ref=ref: getitems(ref, ids))
        assert got[0] == want[0], (got, want)
        if want[0] == "raise":
            assert got[1:] == want[1:]
            assert "shard-000000.tar" in want[2]
        else:
            assert not isinstance(got[1], PackedSamples) or change == "other-shard"
            assert_same_samples(list(got[1]), want[1])
        assert_as_per_sample(tmp_path, indices, on_error)


# ------------------------------------------------- the in-place re-base's range check, edges
@shard_examples(25)
@given(
    rows=st.integers(1, 70),
    at=st.floats(0, 1, exclude_max=True),
    value=st.sampled_from(["count", "count-1", "-1", "min", "max"]),
    dtype=st.sampled_from(["int32", "int64", "uint32"]),
    sample=st.integers(0, 2),
)
def test_an_index_at_or_past_the_edge_anywhere_in_a_long_sample(
    tmp_path_factory, rows, at, value, dtype, sample
):
    """One index set to the count (out by exactly 1), count - 1, -1, the dtype's minimum or
    maximum, at any position of a sample (vector body or tail of the re-base loop): the batch
    or the error of the plain collate."""
    root = tmp_path_factory.mktemp("edge")
    rng = np.random.default_rng(rows)
    counts = [5, 9, 3]
    data = [
        {
            "verts": np.zeros((k, 3), np.float32),
            "faces": rng.integers(0, k, (rows + j, 3)).astype(dtype),
        }
        for j, k in enumerate(counts)
    ]
    info = np.iinfo(dtype)
    k = counts[sample]
    chosen = {"count": k, "count-1": k - 1, "-1": -1, "min": info.min, "max": info.max}[value]
    flat = data[sample]["faces"].reshape(-1)
    flat[int(at * len(flat))] = np.array(chosen).astype(dtype)  # (-1 wraps in uint32)
    write_shards(data, root, max_count=2)
    for path in ("compiled", "python") if COMPILED else ("python",):
        original = batch_read._compiled
        if path == "python":
            batch_read._compiled = lambda: False
        try:
            assert_as_per_sample(root, [0, 1, 2])
            assert_as_per_sample(root, [2, sample, 0, sample])
        finally:
            batch_read._compiled = original


def test_int32_indices_up_to_the_last_representable_packed_row(tmp_path, read_path):
    """Zero-width verts make 2**31 packed rows cheap: int32 faces re-based to exactly
    ``2**31 - 1`` are kept; one row more and int32 cannot hold them (the plain error)."""
    edge = np.array([[0, 1, 2**30 - 1]], np.int32)
    data = [{"verts": np.zeros((2**30, 0), np.float32), "faces": edge} for _ in range(3)]
    write_shards(data, tmp_path, max_count=2)
    assert assert_as_per_sample(tmp_path, [0, 1]) == "packed"
    batch = hetload.collate(ShardDataset(tmp_path).__getitems__([0, 1]))
    assert batch["faces"].values.tolist() == [[0, 1, 2**30 - 1], [2**30, 2**30 + 1, 2**31 - 1]]
    assert_as_per_sample(tmp_path, [0, 1, 2])
    # a sample without verts after 2**31 rows: its empty faces sit past the last row (its
    # base, 2**31, is no int32, yet no index needs it); any face it holds is out of range
    for k, faces in enumerate([np.zeros((0, 3), np.int32), np.zeros((1, 3), np.int32)]):
        root = tmp_path / f"after-{k}"
        write_shards([*data[:2], {"faces": faces}], root)
        kind = assert_as_per_sample(root, [0, 1, 2])
        assert kind == "packed" or k == 1


def check_edges_in_this_process() -> None:
    """The edge cases above in one go (for the child process of the baseline-loop test)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for dtype in ("int32", "int64"):
            info = np.iinfo(dtype)
            for value in (5, -1, info.min, info.max, 4):
                for at in (0, 17, 3 * 41 - 1):
                    faces = np.full((41, 3), 1, dtype)
                    faces.reshape(-1)[at] = value
                    data = [
                        {"verts": np.zeros((9, 3), np.float32), "faces": np.zeros((7, 3), dtype)},
                        {"verts": np.zeros((5, 3), np.float32), "faces": faces},
                    ]
                    out = root / f"{dtype}-{value}-{at}"
                    write_shards(data, out)
                    assert_as_per_sample(out, [0, 1])
                    assert_as_per_sample(out, [1, 0, 1])


@pytest.mark.skipif(not COMPILED, reason="the compiled extension is not built")
def test_the_batch_read_with_the_baseline_loops():
    """The compiled read's in-place re-base with the AVX2 loops off (``HETLOAD_SIMD``)."""
    env = {**os.environ, "HETLOAD_SIMD": "baseline"}
    here = Path(__file__).parent
    code = "import test_adversarial_batch_read as t; t.check_edges_in_this_process(); print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=here, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


# ----------------------------------------------------------- read_members_ argument fuzzing
EDGES = [-(2**63), -(2**63) + 1, -(2**62), -513, -512, -1, 0, 1, 7, 100, 511, 512, 513, 1024,
         1536, 2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 513, 2**63 - 1]  # fmt: skip
GUARD = 4096


def _guarded(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``uint8 [n]`` inside a larger tensor of a known pattern (the guard bands)."""
    whole = torch.full((n + 2 * GUARD,), 0xA5, dtype=torch.uint8)
    return whole, whole[GUARD : GUARD + n]


def _guards_intact(whole: torch.Tensor, n: int) -> bool:
    return bool((whole[:GUARD] == 0xA5).all() and (whole[GUARD + n :] == 0xA5).all())


@pytest.fixture(scope="module")
def tar_fd():
    """A descriptor of a real shard (valid headers where a table may point)."""
    with tempfile.TemporaryDirectory() as folder:
        index = write_shards(meshes(sizes=(6, 3)), folder)
        fd = os.open(Path(folder) / index.shards[0].url, os.O_RDONLY)
        try:
            yield fd, ShardDataset(folder)
        finally:
            os.close(fd)


@pytest.mark.skipif(not COMPILED, reason="the compiled extension is not built")
@shard_examples(300)
@given(data=st.data())
def test_read_members_never_reads_or_writes_outside_its_tensors(tar_fd, data):
    """Any table: the kernel returns a refusal or raises a ``read_members_`` error; bytes
    outside buffer, scratch and json stay untouched (an int64 sum that wrapped round used to
    pass the bounds checks: a segfault on a name offset near 2**63, writes past the buffer)."""
    fd, ds = tar_fd
    edge = st.sampled_from(EDGES) | st.integers(-600, 4000)
    batch = data.draw(st.integers(0, 3))
    spans = [
        [data.draw(edge), data.draw(edge), data.draw(st.sampled_from([fd, fd, fd, -1]))]
        for _ in range(batch)
    ]
    if batch and data.draw(st.booleans()):  # often a real sample's span
        spans[0][:2] = [int(ds._start[0]), int(ds._end[0])]
    rows = []
    for j in range(batch + data.draw(st.integers(-1, 1))):
        for _ in range(data.draw(st.integers(0, 3))):
            row = [data.draw(edge) for _ in range(12)]
            row[0] = j if data.draw(st.integers(0, 5)) else data.draw(edge)
            row[10] = data.draw(st.sampled_from([4, 8, 8, data.draw(edge)]))
            row[11] = data.draw(st.sampled_from([0, 1]))
            rows.append(row)
    sizes = [data.draw(st.sampled_from([0, 1, 64, 600, 2048, 8192])) for _ in range(4)]
    tensors = [_guarded(n) for n in sizes]
    json_whole = torch.full((batch + 2, 2), 7, dtype=torch.int64)
    members = torch.tensor(rows, dtype=torch.int64).reshape(-1, 12)
    try:
        result = torch.ops.hetload.read_members_(
            tensors[0][1], tensors[1][1], torch.tensor(spans, dtype=torch.int64).reshape(-1, 3),
            members, tensors[2][1], tensors[3][1], json_whole[1 : batch + 1],
        )  # fmt: skip
    except RuntimeError as exc:
        assert "read_members_" in str(exc)
    else:
        assert result == -1 or 0 <= result < 8 * max(batch, 1)
        if result == -1:  # every json position lies in scratch
            for at, size in json_whole[1 : batch + 1].tolist():
                assert at == -1 or (at >= 0 and at + size <= sizes[1])
    for (whole, _), n in zip(tensors, sizes, strict=True):
        assert _guards_intact(whole, n)
    assert json_whole[0].tolist() == [7, 7] and json_whole[-1].tolist() == [7, 7]


@pytest.mark.skipif(not COMPILED, reason="the compiled extension is not built")
def test_read_members_refuses_tables_that_wrap_int64(tar_fd):
    """The cases the fuzzing found, by name: each raises (or refuses), none reads."""
    fd, _ = tar_fd
    op = torch.ops.hetload.read_members_
    scratch = torch.zeros(4096, dtype=torch.uint8)
    u8 = torch.zeros(64, dtype=torch.uint8)
    spans = torch.tensor([[0, 2048, fd]])
    json = torch.empty((1, 2), dtype=torch.int64)
    top = 2**63 - 1

    def run(**cols):
        row = dict(sample=0, offset=512, size=64, npy=0, dst=0, name_at=0, name_len=0,
                   expect_at=0, base=-1, count=-1, item=-1, json=0)  # fmt: skip
        row.update(cols)
        return op(u8, scratch, spans, torch.tensor([list(row.values())]), u8, u8, json)

    with pytest.raises(RuntimeError, match="name is outside names"):
        run(name_at=top - 10, name_len=50)
    with pytest.raises(RuntimeError, match="does not fit the buffer"):
        run(dst=top - 10)
    with pytest.raises(RuntimeError, match=r"\.npy header is outside expect"):
        run(expect_at=top - 3, npy=4, size=64)
    assert run(offset=-(2**63) + 100) % 8 == 1  # layout, not a wrapped gap
    assert run(size=top - 100) % 8 == 1
    # a re-base the table cannot describe: a width other than 4 / 8, a negative count, an
    # int32 target past 2**31 rows (it would wrap to wrong indices)
    for base, count, item in [(0, 3, 2), (0, -5, 8), (2**31 - 2, 5, 4), (top, 2, 8)]:
        with pytest.raises(RuntimeError, match="outside its index width"):
            real = torch.zeros(4096, dtype=torch.uint8)
            op(real, scratch, spans, torch.tensor([[0, 512, 64, 0, 0, 0, 0, 0, base, count,
                                                   item, 0]]), u8, u8, json)  # fmt: skip


@shard_examples(40)
@given(
    runs=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=64)),
        min_size=1,
        max_size=5,
    ),
    cut=st.none() | st.floats(0.2, 1),
    on_error=st.sampled_from(["raise", "skip"]),
    seed=st.integers(0, 5),
)
def test_runs_of_bytes_overwritten_anywhere(tmp_path_factory, runs, cut, on_error, seed):
    """Beyond one flipped byte: several runs of bytes overwritten anywhere in a shard (tar
    headers, padding, .npy headers, data, .json), the shard maybe cut short: the batch read
    gives the per-sample path's samples, batch or error, with both reads."""
    root = tmp_path_factory.mktemp("runs")
    index = write_shards(meshes(seed, sizes=(4, 7, 0, 5, 9, 1, 30, 2)), root, max_count=5)
    path = root / index.shards[0].url
    blob = bytearray(path.read_bytes())
    for at, data in runs:
        start = int(at * len(blob))
        blob[start : start + len(data)] = data[: len(blob) - start]
    if cut is not None:
        blob = blob[: int(cut * len(blob))]
    path.write_bytes(bytes(blob))
    for compiled in (True, False) if COMPILED else (False,):
        original = batch_read._compiled
        if not compiled:
            batch_read._compiled = lambda: False
        try:
            assert_as_per_sample(root, [4, 0, 2, 1, 6, 5, 3, 7], on_error)
        finally:
            batch_read._compiled = original


def test_a_sample_of_more_members_than_one_preadv_takes(tmp_path, read_path):
    """700 array fields: more pieces than ``IOV_MAX`` (1024) for one sample's read."""
    rng = np.random.default_rng(0)
    data = [
        {f"f{k:03d}": rng.standard_normal((int(rng.integers(0, 4)), 2)).astype(np.float32)
         for k in range(700)}
        for _ in range(3)
    ]  # fmt: skip
    write_shards(data, tmp_path)
    assert_as_per_sample(tmp_path, [0, 1, 2, 1])


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_an_unparsable_first_npy_header_of_a_shard(tmp_path, read_path, on_error):
    """Regression: numpy's header parser raised tokenize.TokenError (an unclosed bracket in a
    shard's first .npy header of a field), escaping read_batch for every batch of the shard;
    the batch read now parses it as the per-sample path does."""
    index = write_shards([{"verts": np.zeros((3, 3), np.float32)}] * 3, tmp_path)
    path = tmp_path / index.shards[0].url
    blob = bytearray(path.read_bytes())
    at = int(ShardDataset(tmp_path)._offset["verts.npy"][0])
    blob[blob.index(b"}", at)] = ord(" ")  # the header dict's bracket never closes
    path.write_bytes(bytes(blob))
    assert_as_per_sample(tmp_path, [1, 2], on_error)  # sample 0 is not even in the batch
    assert_as_per_sample(tmp_path, [0, 1, 2], on_error)
