"""``hetload preprocess`` / ``merge-index``: folder -> shards equals reading the files directly,
byte-identical output whatever the workers, parts, interruptions (``kill -9`` included)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

import hetload
from hetload import io as hio
from hetload import transforms
from hetload.cli import main
from hetload.data import ShardDataset
from hetload.shards.preprocess import merge_parts, parse_part, parse_size, preprocess

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- test inputs
def write_obj(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x!r} {y!r} {z!r}" for x, y, z in verts.astype(float).tolist()]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces.tolist()]
    path.write_text("# written by test_preprocess\n" + "\n".join(lines) + "\n")


def write_ply(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    rows = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    rows["n"], rows["i"] = 3, faces
    path.write_bytes(header.encode() + verts.astype("<f4").tobytes() + rows.tobytes())


def make_folder(root: Path, n: int, seed: int = 0, max_verts: int = 200) -> list[str]:
    """``n`` small OBJ / binary PLY meshes in two sub-folders; their relative paths."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        nv = int(rng.integers(3, max_verts))
        verts = rng.standard_normal((nv, 3)).astype(np.float32)
        faces = rng.integers(0, nv, size=(int(rng.integers(1, 2 * nv)), 3))
        rel = f"{'ab'[i % 2]}/mesh_{i:03d}.{'obj' if i % 3 else 'ply'}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (write_obj if rel.endswith("obj") else write_ply)(root / rel, verts, faces)
        names.append(rel)
    return sorted(names)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("meshes")
    make_folder(root, 30)
    (root / "b" / "broken.obj").write_text("v 1 2\nf 1 2 3\n")
    return root


def run(src: Path, dst: Path, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("on_error", "skip")
    return preprocess(src, dst, **kwargs)


def assert_equals_direct_reads(ds: ShardDataset, root: Path) -> None:
    from hetload.keys import sample_keys
    from hetload.shards.settings import find_inputs

    inputs = [rel for rel, _ in find_inputs(root)[0]]
    # MeshFolder's keys: the path without its extension, unless another input shares that name
    keys = dict(zip(inputs, sample_keys(inputs)))
    for i in range(len(ds)):
        source = ds.meta(i)["source"]
        expected = hio.load(root / source)
        got = ds[i]
        assert got.pop("key") == keys[source] in (source.rsplit(".", 1)[0], source)
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
            assert got[name].tobytes() == value.tobytes(), name


# --------------------------------------------------------------------------- round trips
def test_folder_to_shards_equals_reading_the_files(src, tmp_path):
    result = run(src, tmp_path / "dst", max_count=4)
    ds = ShardDataset(tmp_path / "dst")
    assert (result.files, result.samples, result.skipped) == (31, 30, 1)
    assert len(ds) == 30 and result.shards == 8
    assert_equals_direct_reads(ds, src)
    assert ds.sizes.tolist() == [
        len(hio.load(src / ds.meta(i)["source"])["verts"]) for i in range(30)
    ]
    # keys are positions in the sorted list of all inputs (the broken file keeps its number)
    sources = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.*"))
    assert [ds.meta(i)["source"] for i in range(30)] == [s for s in sources if "broken" not in s]
    assert ds.key(29) == f"{sources.index(ds.meta(29)['source']):09d}"
    errors = [
        json.loads(line) for line in (tmp_path / "dst" / "errors.jsonl").read_text().splitlines()
    ]
    assert [e["source"] for e in errors] == ["b/broken.obj"]
    assert "ReadError" in errors[0]["reason"]
    batch = hetload.collate([ds[0], ds[1]])
    assert batch.verts.values.shape[0] == ds.sizes[0] + ds.sizes[1]


def test_real_files_round_trip(shared_meshes, tmp_path):
    run(shared_meshes, tmp_path / "dst", workers=2, shard_size="1MB")
    ds = ShardDataset(tmp_path / "dst")
    assert len(ds) > 100
    assert_equals_direct_reads(ds, shared_meshes)


def test_workers_and_reruns_do_not_change_a_byte(src, tmp_path):
    run(src, tmp_path / "one", max_count=3, workers=1)
    run(src, tmp_path / "two", max_count=3, workers=2)
    one = tree_bytes(tmp_path / "one")
    assert one == tree_bytes(tmp_path / "two")
    assert sorted(one) == ["errors.jsonl", "index.json"] + [f"shard-{i:06d}.tar" for i in range(10)]
    again = run(src, tmp_path / "one", max_count=3, workers=2)
    assert again.already_complete and tree_bytes(tmp_path / "one") == one
    with pytest.raises(ValueError, match="other inputs or settings"):
        run(src, tmp_path / "one", max_count=4)


def test_random_transforms_are_seeded_per_file(src, tmp_path):
    config = tmp_path / "transforms.yaml"
    config.write_text("transforms:\n  - Center\n  - RandomRotation\n  - Subsample: {n: 20}\n")
    run(src, tmp_path / "one", max_count=4, transform=config, seed=5)
    run(src, tmp_path / "two", max_count=4, transform=config, seed=5, workers=2)
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "two")
    ds = ShardDataset(tmp_path / "one")
    chain = transforms.build(["Center", "RandomRotation", {"Subsample": {"n": 20}}])
    for i in (0, 17):
        meta = ds.meta(i)
        rng = transforms.sample_rng(5, 0, int(ds.key(i)))
        expected = chain(hio.load(src / meta["source"]), rng)
        assert meta["counts"]["verts"] == len(hio.load(src / meta["source"])["verts"])
        assert ds[i].keys() == {*expected.keys(), "key"}
        assert all(ds[i][k].tobytes() == expected[k].tobytes() for k in expected)
    other_seed = run(src, tmp_path / "three", max_count=4, transform=config, seed=6)
    assert other_seed.samples == 30
    assert ShardDataset(tmp_path / "three")[0]["verts"].tobytes() != ds[0]["verts"].tobytes()
    bad = tmp_path / "bad.yaml"
    bad.write_text("- NoSuchTransform\n")
    with pytest.raises(KeyError, match="NoSuchTransform"):
        run(src, tmp_path / "four", transform=bad)


def test_on_error_raise_names_the_file_and_a_rerun_resumes(src, tmp_path):
    with pytest.raises(hio.ReadError, match=r"broken\.obj"):
        run(src, tmp_path / "dst", max_count=2, on_error="raise")
    done = sorted(p.name for p in (tmp_path / "dst").glob("shard-*"))
    assert done and not any(name.endswith(".partial") for name in done)
    run(src, tmp_path / "dst", max_count=2)
    run(src, tmp_path / "ref", max_count=2)
    assert tree_bytes(tmp_path / "dst") == tree_bytes(tmp_path / "ref")


def test_interrupted_run_finishes_with_the_same_bytes(src, tmp_path, monkeypatch):
    run(src, tmp_path / "ref", max_count=3)
    real_load = hio.load
    for stop_after in (0, 4, 7, 5, 2):  # files read by each attempt before it dies

        def dying_load(path, *args, _stop=stop_after, calls=[], **kwargs):  # noqa: B006
            calls.append(path)
            if len(calls) > _stop:
                raise KeyboardInterrupt  # not an Exception: goes through like a signal would
            return real_load(path, *args, **kwargs)

        monkeypatch.setattr(hio, "load", dying_load)
        with pytest.raises(KeyboardInterrupt):
            run(src, tmp_path / "dst", max_count=3)
        visible = {p.name for p in (tmp_path / "dst").iterdir()}
        assert not {name for name in visible if name.endswith(".partial")}
        assert "index.json" not in visible
    monkeypatch.setattr(hio, "load", real_load)
    result = run(src, tmp_path / "dst", max_count=3)
    assert result.resumed_at > 0
    assert tree_bytes(tmp_path / "dst") == tree_bytes(tmp_path / "ref")


def test_a_partial_journal_line_is_dropped(src, tmp_path):
    with pytest.raises(hio.ReadError):
        run(src, tmp_path / "dst", max_count=2, on_error="raise")
    journal = tmp_path / "dst" / ".hetload-journal.jsonl"
    journal.write_bytes(journal.read_bytes() + b'{"done": 9, "err')  # killed mid-append
    run(src, tmp_path / "dst", max_count=2)
    run(src, tmp_path / "ref", max_count=2)
    assert tree_bytes(tmp_path / "dst") == tree_bytes(tmp_path / "ref")


def test_sigkill_at_random_points_then_restart_gives_the_same_shards(tmp_path):
    root = tmp_path / "src"
    make_folder(root, 120, seed=3, max_verts=40)
    run(root, tmp_path / "ref", max_count=2)
    reference = tree_bytes(tmp_path / "ref")
    dst = tmp_path / "dst"
    command = [sys.executable, "-m", "hetload", "preprocess", str(root), str(dst)]
    command += ["--max-count", "2", "--quiet"]
    chooser = random.Random(7)
    for target, workers in ((0, 1), (chooser.randint(2, 20), 2), (chooser.randint(25, 50), 1)):
        proc = subprocess.Popen(
            [*command, "--workers", str(workers)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its pool workers share the group: killed together
            cwd=REPO,
        )
        journal = dst / ".hetload-journal.jsonl"
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            lines = journal.read_bytes().count(b"\n") if journal.exists() else -1
            if lines > target:
                break
            time.sleep(0.0005)
        time.sleep(chooser.random() * 0.003)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for path in dst.glob("shard-*.tar"):  # whatever carries a final name is complete
            assert path.read_bytes() == reference[path.name], path.name
    finished = subprocess.run(
        [*command, "--workers", "2"], cwd=REPO, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr
    assert tree_bytes(dst) == reference


# --------------------------------------------------------------------------- parts, CLI
def test_parts_merge_into_the_unsplit_dataset(src, tmp_path):
    run(src, tmp_path / "whole", max_count=4)
    for i in range(3):
        run(src, tmp_path / "parts", max_count=4, part=f"{i}/3", workers=2)
    with pytest.raises(ValueError, match=r"missing \[2\]"):
        merge_parts(
            tmp_path / "parts", [tmp_path / "parts" / f"part-000{i}-of-0003" for i in (0, 1)]
        )
    index = merge_parts(tmp_path / "parts")
    assert index.info["parts"] == [[0, 3], [1, 3], [2, 3]]
    whole, parts = ShardDataset(tmp_path / "whole"), ShardDataset(tmp_path / "parts")
    assert len(whole) == len(parts) == 30
    for i in range(30):
        assert whole.key(i) == parts.key(i)
        a, b = whole[i], parts[i]
        assert a.keys() == b.keys() and a.pop("key") == b.pop("key")
        assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert (tmp_path / "parts" / "errors.jsonl").read_text() == (
        tmp_path / "whole" / "errors.jsonl"
    ).read_text()
    assert index.shards[0].url == "part-0000-of-0003/shard-000000.tar"


def test_command_line(src, tmp_path, capsys):
    dst = tmp_path / "dst"
    argv = ["preprocess", str(src), str(dst), "--max-count", "5", "--on-error", "skip"]
    assert main([*argv, "--quiet", "--workers", "2", "--cast", "faces=int32"]) == 0
    out = capsys.readouterr().out
    assert "30 in 6 shards" in out and "1 skipped" in out
    sample = ShardDataset(dst)[0]
    assert sample["faces"].dtype == np.int32
    assert (
        sample["faces"].tolist()
        == hio.load(src / ShardDataset(dst).meta(0)["source"])["faces"].tolist()
    )
    assert main(["preprocess", str(src), str(dst), "--part", "3/2"]) == 2
    assert "0 <= i < n" in capsys.readouterr().err
    assert main(["preprocess", str(src), str(tmp_path / "x"), "--cast", "faces=int8"]) == 2
    assert "do not fit int8" in capsys.readouterr().err
    for i in range(2):
        assert main([*argv, "--quiet", "--part", f"{i}/2"]) == 0
    assert main(["merge-index", str(dst), "--verify"]) == 0
    assert "merged 2 parts: 30 samples" in capsys.readouterr().out


def test_size_and_part_parsing():
    assert parse_size("256MB") == 256 * 10**6
    assert parse_size("1GiB") == 2**30
    assert parse_size("512k") == 512_000
    assert parse_part("2/5") == (2, 5)
    for bad in ("12 apples", "0MB"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError, match="i/n"):
        parse_part("2of5")


def test_damaged_output_is_refused(src, tmp_path):
    with pytest.raises(hio.ReadError):
        run(src, tmp_path / "dst", max_count=2, on_error="raise")
    first = tmp_path / "dst" / "shard-000000.tar"
    first.write_bytes(first.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"shard-000000\.tar: the journal lists it"):
        run(src, tmp_path / "dst", max_count=2)
    stray = tmp_path / "stray"
    stray.mkdir()
    with tarfile.open(stray / "shard-000000.tar", "w"):
        pass
    with pytest.raises(ValueError, match="no journal"):
        run(src, stray, max_count=2)
