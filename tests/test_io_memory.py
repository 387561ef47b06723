"""Peak allocation of the OBJ reader on its worst valid shape: very short face lines.

The fuzz suite's bound is 10x the file size + 1 MiB (``tests/fuzzing.py``); files of ``f 1 2 3``
lines (8 bytes each, 24 bytes of int64 output) used to peak at 18x.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from fuzzing import MEMORY_CONSTANT, MEMORY_FACTOR

from hetload.io import load

VERTS = b"".join(b"v %d %d 0\n" % (i, i % 2) for i in range(9))


def peak_of_load(path: Path) -> tuple[int, dict[str, np.ndarray]]:
    load(path)  # warm: imports and numpy's caches are not the reader's memory
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        sample = load(path)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, sample


@pytest.mark.parametrize(
    ("face", "lines", "triangles_per_line"),
    [(b"f 1 2 3\n", 200_000, 1), (b"f 1 2 4 3\n", 150_000, 2), (b"f 5 6 7 8 9\n", 120_000, 3)],
    ids=["triangles", "quads", "pentagons"],
)
def test_short_face_lines_stay_within_the_fuzz_bound(tmp_path, face, lines, triangles_per_line):
    path = tmp_path / "short.obj"
    path.write_bytes(VERTS + face * lines)
    size = path.stat().st_size
    peak, sample = peak_of_load(path)
    assert sample["faces"].shape == (lines * triangles_per_line, 3)
    assert peak <= MEMORY_FACTOR * size + MEMORY_CONSTANT, peak / size


def test_nine_gons_with_uvs(tmp_path):
    """``f 1/1 2/1 ... 9/1``: 38 bytes a line become 7 triangles of vertex and uv indices,
    2 x 168 bytes of int64 output, 8.8x the file on their own; the reader's own share beyond
    the output and the file's bytes stays under 2x the file + 1 MiB."""
    face = b"f " + b" ".join(b"%d/1" % i for i in range(1, 10)) + b"\n"
    path = tmp_path / "ngons.obj"
    path.write_bytes(VERTS + b"vt 0.5 0.5\n" + face * 40_000)
    size = path.stat().st_size
    peak, sample = peak_of_load(path)
    assert sample["faces"].shape == sample["faces_uvs"].shape == (280_000, 3)
    expected = np.array([[0, k, k + 1] for k in range(1, 8)])
    np.testing.assert_array_equal(sample["faces"][:7], expected)
    assert (sample["faces_uvs"] == 0).all()
    output = sample["faces"].nbytes + sample["faces_uvs"].nbytes
    assert peak <= output + 3 * size + MEMORY_CONSTANT, peak / size
