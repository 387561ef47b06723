"""The command line: each command's output and exit status (0 ok, 1 bad data found, 2 unusable
input), one-line errors without a traceback unless --debug."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch

from hetload import demo
from hetload.cli import main
from hetload.shards.preprocess import preprocess


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "demo"
    demo.generate(root, n=24, seed=2)
    return root


@pytest.fixture(scope="module")
def shards(demo_dir: Path) -> Path:
    out = demo_dir.parent / "shards"
    preprocess(demo_dir, out, max_count=4, progress=False)
    return out


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hetload {command}: error: ")
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------- demo-data
def test_demo_data(capsys, tmp_path: Path) -> None:
    code, out, _ = _run(
        capsys, "demo-data", str(tmp_path / "d"), "--n", "12", "--seed", "5", "--quiet"
    )
    assert code == 0
    assert out.startswith("wrote 12 files (") and str(tmp_path / "d") in out
    for shape in demo.SHAPES:
        assert shape in out
    assert (tmp_path / "d" / "manifest.tsv").is_file()
    assert len(list((tmp_path / "d").rglob("*.ply")) + list((tmp_path / "d").rglob("*.obj"))) == 12

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    code, _, err = _run(capsys, "demo-data", str(tmp_path / "mine"), "--quiet")
    assert code == 2
    assert "is not empty and holds no manifest.tsv" in _one_line_error(err, "demo-data")
    code, _, err = _run(capsys, "demo-data", str(tmp_path / "x"), "--n", "0", "--quiet")
    assert code == 2 and "n must be an integer >= 1" in err


# ---------------------------------------------------------------------------- check
def test_check_good_folder(capsys, demo_dir: Path) -> None:
    code, out, _ = _run(capsys, "check", str(demo_dir), "--quiet", "--workers", "2")
    assert code == 0
    # the demo's manifest is listed as what it is: a file no reader handles
    meshes = [p for p in demo_dir.rglob("*") if p.suffix in (".obj", ".ply", ".off")]
    assert out.splitlines() == [
        f"checked {len(meshes)} files under {demo_dir}: {len(meshes)} good, 0 bad",
        "1 files not read (no reader handles their suffix):",
        "  manifest.tsv",
    ]


def test_check_finds_every_format_load_reads(capsys, tmp_path: Path) -> None:
    # 5 OFF / STL / GLB files and 1 OBJ: all 6 are checked (issue 11: "checked 1 files")
    trimesh = pytest.importorskip("trimesh")
    root = tmp_path / "mixed"
    root.mkdir()
    tri = "0 0 0\n1 0 0\n0 1 0\n"
    (root / "a.off").write_text("OFF\n3 1 0\n" + tri + "3 0 1 2\n")
    (root / "b.OFF").write_text("OFF3 1 0\n" + tri + "3 0 1 2\n")
    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False)
    (root / "c.stl").write_bytes(mesh.export(file_type="stl"))
    (root / "d.stl").write_bytes(mesh.export(file_type="stl_ascii").encode())
    (root / "e.glb").write_bytes(mesh.export(file_type="glb"))
    (root / "f.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (root / "notes.txt").write_text("x")
    (root / ".hetload-index.json").write_text("{}")
    code, out, _ = _run(capsys, "check", str(root), "--quiet", "--workers", "1")
    assert code == 0
    assert out.splitlines() == [
        f"checked 6 files under {root}: 6 good, 0 bad",
        "1 files not read (no reader handles their suffix):",
        "  notes.txt",
    ]
    code, out, _ = _run(capsys, "check", str(root), "--quiet", "--ext", "off", "--ext", ".STL")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"checked 4 files under {root}: 4 good, 0 bad"
    assert "2 files not read (not selected by --ext):" in lines
    assert "  e.glb" in lines and "  f.obj" in lines
    assert ".hetload-index.json" not in out


def test_check_lists_bad_files_with_reasons(capsys, demo_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    (bad / "sub").mkdir(parents=True)
    good = next(demo_dir.rglob("*.ply"))
    (bad / "good.ply").write_bytes(good.read_bytes())
    (bad / "truncated.ply").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (bad / "sub" / "two_coords.obj").write_text("v 1 2\n")
    (bad / "empty.obj").write_text("")
    (bad / "notes.txt").write_text("not a mesh, not checked")
    code, out, _ = _run(capsys, "check", str(bad), "--quiet", "--workers", "1")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"checked 4 files under {bad}: 1 good, 3 bad"
    assert lines[1].split() == ["file", "reason"]
    table = "\n".join(lines[3:])
    for name in ("truncated.ply", "sub/two_coords.obj", "empty.obj"):
        assert name in table
    assert "good.ply" not in table
    assert lines[-2:] == ["1 files not read (no reader handles their suffix):", "  notes.txt"]
    assert "(line 1)" in table  # the reason says where
    # one file at a time, too
    code, out, _ = _run(capsys, "check", str(bad / "truncated.ply"), "--quiet")
    assert code == 1 and "truncated.ply" in out


def test_check_unusable_source(capsys, tmp_path: Path) -> None:
    code, _, err = _run(capsys, "check", str(tmp_path / "missing"))
    assert code == 2 and "no such file or folder" in _one_line_error(err, "check")
    code, _, err = _run(capsys, "check", str(tmp_path))
    assert code == 2 and "holds no mesh files (.obj .ply .off .stl" in err


# ---------------------------------------------------------------------------- stats
def _scan_reference(root: Path) -> np.ndarray:
    """Vertex counts read with plyfile / by counting OBJ 'v ' lines / from the OFF header
    (independent of hetload)."""
    counts = []
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".ply", ".obj", ".off")):
        if path.suffix == ".ply":
            counts.append(plyfile.PlyData.read(str(path))["vertex"].count)
        elif path.suffix == ".off":
            words = [
                w for line in path.read_text().splitlines() for w in line.split("#")[0].split()
            ]
            counts.append(int(words[1]) if words[0] == "OFF" else int(words[0][3:]))
        else:
            with path.open() as fh:
                counts.append(sum(1 for line in fh if line.startswith("v ")))
    return np.array(counts)


def test_stats_on_a_folder(capsys, demo_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "stats.png"
    code, out, _ = _run(
        capsys, "stats", str(demo_dir), "--max-tokens", "60000", "--plot", str(png), "--quiet"
    )
    assert code == 0
    lines = out.splitlines()
    n = sum(1 for p in demo_dir.rglob("*") if p.suffix in (".obj", ".ply", ".off"))
    assert lines[0] == f"{demo_dir}: {n} samples (sizes from mesh headers)"
    verts = next(line for line in lines if line.startswith("verts "))
    counts = _scan_reference(demo_dir)
    cells = verts.replace(",", "").split()
    assert int(cells[1]) == counts.min() and int(cells[8]) == counts.max()
    assert int(cells[-1]) == counts.sum()
    fixed = next(line for line in lines if line.startswith("fixed batch_size="))
    bucket = next(line for line in lines if line.startswith("bucket max_tokens=60,000"))
    assert float(bucket.split()[4]) > float(fixed.split()[4])  # padding efficiency column
    assert "bucketing: padding efficiency" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stats_on_a_shard_index(capsys, shards: Path, demo_dir: Path) -> None:
    code, out, _ = _run(capsys, "stats", str(shards / "index.json"), "--batch-size", "4")
    assert code == 0
    n = sum(1 for p in demo_dir.rglob("*") if p.suffix in (".obj", ".ply", ".off"))
    assert out.splitlines()[0] == f"{shards / 'index.json'}: {n} samples (sizes from shard index)"
    assert "fixed batch_size=4" in out and "verts 12 B/row" in out


def test_stats_takes_the_budget_from_a_config(capsys, demo_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"dataset: {{type: MeshFolder, root: {demo_dir}}}\nsampler: {{max_tokens: 33333}}\n"
    )
    code, out, _ = _run(capsys, "stats", str(demo_dir), "--config", str(cfg), "--quiet")
    assert code == 0 and "bucket max_tokens=33,333" in out


def test_stats_reports_unscannable_files(capsys, demo_dir: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in sorted(demo_dir.rglob("*.ply"))[:5]:
        (mixed / path.name).write_bytes(path.read_bytes())
    (mixed / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex x\nend_header\n")
    code, out, _ = _run(capsys, "stats", str(mixed), "--quiet")
    assert code == 0
    assert out.splitlines()[0] == f"{mixed}: 5 samples (sizes from mesh headers)"
    assert f"1 files could not be scanned (see `hetload check {mixed}`)" in out


def test_stats_errors(capsys, demo_dir: Path, tmp_path: Path) -> None:
    code, _, err = _run(capsys, "stats", str(tmp_path / "nope"))
    assert code == 2 and "no such file or folder" in _one_line_error(err, "stats")
    code, _, err = _run(capsys, "stats", str(demo_dir), "--max-tokens", "0", "--quiet")
    assert code == 2 and "--max-tokens must be >= 1" in err
    bad_index = tmp_path / "index.json"
    bad_index.write_text("{not json")
    code, _, err = _run(capsys, "stats", str(bad_index))
    assert code == 2 and "not a valid JSON index" in _one_line_error(err, "stats")


# ---------------------------------------------------------------------------- bench
def _stream_config(tmp_path: Path, shards: Path) -> Path:
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            dataset: {{type: ShardStream, urls: {shards}, fields: [verts]}}
            sampler: {{max_tokens: 100000, buffer_size: 8}}
            """
        )
    )
    return cfg


def test_bench_prints_throughput_and_time_split(capsys, tmp_path: Path, shards: Path) -> None:
    cfg = _stream_config(tmp_path, shards)
    code, out, _ = _run(
        capsys, "bench", str(cfg), "sampler.max_tokens=50000", "--batches", "3", "--quiet"
    )
    assert code == 0
    assert "ShardStream, bucket max_tokens=50,000, 0 workers" in out
    for row in ("samples/s", "points/s", "batches/s", "padding efficiency", "read", "collate"):
        assert f"\n{row} " in out, row
    values = {
        line.split()[0]: line.split()[1].replace(",", "")
        for line in out.splitlines()
        if line.startswith(("samples/s", "points/s", "batches/s"))
    }
    assert all(float(v) > 0 for v in values.values())
    efficiency = float(next(ln for ln in out.splitlines() if ln.startswith("padding")).split()[2])
    assert 0 < efficiency <= 1
    if not torch.cuda.is_available():
        assert out.count("n/a (no GPU)") == 2


def test_bench_errors_are_one_line_unless_debug(capsys, tmp_path: Path, shards: Path) -> None:
    cfg = _stream_config(tmp_path, shards)
    code, _, err = _run(capsys, "bench", str(cfg), "sampler.max_tokns=5")
    line = _one_line_error(err, "bench")
    assert code == 2 and "did you mean 'max_tokens'?" in line
    code, _, err = _run(capsys, "bench", str(tmp_path / "none.yaml"))
    assert code == 2 and "config file not found" in err
    code, _, err = _run(capsys, "bench", str(cfg), "--batches", "0")
    assert code == 2 and "--batches must be >= 1" in err
    with pytest.raises(ValueError, match="did you mean 'max_tokens'"):
        main(["--debug", "bench", str(cfg), "sampler.max_tokns=5"])


def test_entry_points_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hetload", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("demo-data", "check", "stats", "bench", "preprocess"):
        assert command in out
    done = subprocess.run(
        [sys.executable, "-m", "hetload", "bench", "/no/such/config.yaml"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "hetload bench: error: /no/such/config.yaml: config file not found"
    )
    assert main([]) == 2


def test_worker_errors_are_one_line(capsys, tmp_path: Path, shards: Path, monkeypatch) -> None:
    (tmp_path / "failing_plugin_for_cli.py").write_text(
        "def explode(sample):\n    raise ValueError('boom in the transform')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "w.yaml"
    cfg.write_text(
        f"dataset: {{type: ShardDataset, path: {shards}, fields: [verts]}}\n"
        "transforms: ['failing_plugin_for_cli:explode']\n"
        "loader: {num_workers: 1}\n"
    )
    code, _, err = _run(capsys, "bench", str(cfg), "--quiet")
    assert code == 2 and "would import and run code" in _one_line_error(err, "bench")
    code, _, err = _run(capsys, "bench", str(cfg), "--allow-custom-code", "--quiet")
    line = _one_line_error(err, "bench")
    assert code == 2
    assert line.endswith("in a DataLoader worker: ValueError: boom in the transform")
