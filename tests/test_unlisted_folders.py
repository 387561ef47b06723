"""A folder under an input folder that cannot be listed (permissions) is never passed over in
silence: preprocess refuses the input folder naming it (its files would be missing from the
shards), and ``hetload check`` lists it and fails; a linked folder that loops is listed by check
(its files are reached where they are, so preprocess keeps going)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hetload.cli import main
from hetload.io import formats
from hetload.shards.settings import find_inputs


def _tree(root: Path) -> None:
    for rel in ("a/x.obj", "locked/y.obj"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")


@pytest.fixture
def locked(tmp_path, monkeypatch) -> Path:
    """``locked/`` refuses to be listed (as chmod 000 would; tests may run as root)."""
    _tree(tmp_path)
    real = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(formats.os, "scandir", scandir)
    return tmp_path


def test_preprocess_inputs_refuse_a_folder_that_cannot_be_listed(locked):
    with pytest.raises(ValueError, match=r"locked: cannot list this input folder \(Permission"):
        find_inputs(locked)


def test_check_lists_unlisted_folders_and_fails(locked, capsys):
    assert main(["check", str(locked), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1 folders could not be listed" in out and "locked: Permission denied" in out


def test_check_lists_loops_and_preprocess_keeps_their_files(tmp_path, capsys):
    _tree(tmp_path)
    (tmp_path / "a" / "up").symlink_to(tmp_path)
    assert main(["check", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "linked folders not followed" in out and "a/up" in out
    assert [rel for rel, _ in find_inputs(tmp_path)[0]] == ["a/x.obj", "locked/y.obj"]
