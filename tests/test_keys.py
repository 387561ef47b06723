"""sample_key's fast path (a string already in normal form) against pathlib's rules."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from hetload.keys import sample_key


def reference(rel) -> str:
    path = PurePosixPath(Path(rel).as_posix())
    return path.with_suffix("").as_posix() if path.suffix else path.as_posix()


@given(st.text(alphabet="ab./\\ ~-_é", max_size=14))
def test_sample_key_matches_pathlib(rel):
    if "\0" in rel:
        return
    assert sample_key(rel) == reference(rel)
    assert sample_key(Path(rel)) == reference(Path(rel))


def test_examples():
    assert sample_key("chair/train/chair_0001.obj") == "chair/train/chair_0001"
    assert sample_key("a.tar.gz") == "a.tar"
    assert sample_key(".hidden") == ".hidden"
    assert sample_key("dir.v2/file") == "dir.v2/file"
    assert sample_key("x/a.") == "x/a."
    assert sample_key("./a//b.ply") == "a/b"
