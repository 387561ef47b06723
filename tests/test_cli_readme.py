"""The README's new-user steps, run as a user runs them: from a checkout-like folder,
`hetload demo-data demo`, `hetload bench configs/demo.yaml`, `hetload stats demo` (with a small
--n / --batches so the test stays short)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _hetload() -> list[str]:
    script = Path(sys.executable).with_name("hetload")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "hetload"]


def _run(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [*_hetload(), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"hetload {' '.join(args)} failed:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def test_readme_run_commands(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "demo.yaml", tmp_path / "configs" / "demo.yaml")

    out = _run(tmp_path, "demo-data", "demo", "--n", "40", "--quiet")
    assert out.startswith("wrote 40 files")

    out = _run(tmp_path, "bench", "configs/demo.yaml", "--batches", "4", "--quiet")
    assert "bench configs/demo.yaml: MeshFolder" in out
    for row in ("samples/s", "points/s", "batches/s", "padding efficiency"):
        assert f"\n{row} " in out

    out = _run(tmp_path, "stats", "demo", "--quiet")
    assert "bucketing: padding efficiency" in out
