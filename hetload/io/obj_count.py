"""``scan``'s OBJ counts: vertices, faces and the triangles ``load`` makes of them, from line
prefixes and token counts alone (no number is parsed)."""

from __future__ import annotations

import re

import numpy as np

__all__ = ["CONTINUATION", "count_obj"]

_SPACE, _TAB, _NL = 32, 9, 10
_LEADING_SPACE = re.compile(rb"(?m)^[ \t]+")
#: a backslash line continuation, which joins two lines into one statement
#: a backslash line continuation: the two lines are one statement
CONTINUATION = re.compile(rb"\\[ \t]*\n")


def count_obj(data: bytes) -> tuple[int, int, int | None]:
    """``(vertices, faces, triangles)``: the ``v`` and ``f`` lines, and the triangles ``load``
    makes of the faces (corners - 2 per ``f`` line), counted without parsing a number.

    ``triangles`` is ``None`` where a face line holds a comment (the reader drops it, so the
    token count is no corner count).
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\\" in data:
        data = CONTINUATION.sub(b" ", data)
    arr = np.frombuffer(data, dtype=np.uint8)
    if len(arr) < 2:
        return 0, 0, 0
    starts = np.flatnonzero(arr[:-1] == _NL) + 1
    if arr[0] != _NL:
        starts = np.concatenate([[0], starts])
    # a one-byte last line (no newline after it) is no 'v' or 'f' line, but it still ends the
    # line before it: classify without it, find line ends with it
    classified = starts[starts < len(arr) - 1]
    first, second = arr[classified], arr[classified + 1]
    if ((first == _SPACE) | (first == _TAB)).any():
        return count_obj(_LEADING_SPACE.sub(b"", data))
    spaced = (second == _SPACE) | (second == _TAB)
    verts = int(np.count_nonzero(spaced & (first == ord("v"))))
    face_starts = classified[spaced & (first == ord("f"))]
    if len(face_starts) == 0:
        return verts, 0, 0
    # a face line runs to its newline (or the end of the file)
    ends = np.searchsorted(starts, face_starts, side="right")
    face_ends = np.append(starts, len(arr))[ends]
    triangles = _triangles_in_blocks(arr, face_starts, face_ends)
    if triangles is not None:
        return verts, len(face_starts), (None if triangles < 0 else triangles)
    blank = arr <= _SPACE
    token = ~blank
    token[1:] &= blank[:-1]
    token_starts = np.flatnonzero(token)
    del blank, token

    def in_faces(positions: np.ndarray) -> np.ndarray:
        """How many of the sorted ``positions`` lie in each face line."""
        return np.searchsorted(positions, face_ends) - np.searchsorted(positions, face_starts)

    tokens = in_faces(token_starts)
    if in_faces(token_starts[arr[token_starts] == ord("#")]).any():
        return verts, len(face_starts), None
    # tokens - 1 corners (the keyword is a token); a face of < 3 corners is refused by load
    triangles = int(np.maximum(tokens - 3, 0).sum())
    return verts, len(face_starts), triangles


def _triangles_in_blocks(
    arr: np.ndarray, face_starts: np.ndarray, face_ends: np.ndarray
) -> int | None:
    """Triangles of the face lines, counted per run of consecutive face lines (writers emit
    faces in a few long runs): corners are tokens minus the keyword, and a face of ``c``
    corners makes ``c - 2`` triangles, so a run's triangles are its tokens minus 3 per line.

    Returns ``-1`` where a face line holds a comment, ``None`` where the face lines are
    scattered in many short runs (the per-line count is then cheaper).
    """
    breaks = np.flatnonzero(face_starts[1:] != face_ends[:-1]) + 1
    if len(breaks) > 64 and len(breaks) * 8 > len(face_starts):
        return None
    firsts = np.concatenate([[0], breaks])
    lasts = np.concatenate([breaks - 1, [len(face_starts) - 1]])
    tokens = 0
    for lo, hi in zip(face_starts[firsts].tolist(), face_ends[lasts].tolist()):
        run = arr[lo:hi]
        if (run == ord("#")).any():
            return -1
        blank = run <= _SPACE
        # a token starts at a non-blank byte after a blank one (each run starts with "f")
        tokens += 1 + int(np.count_nonzero(blank[:-1] & ~blank[1:]))
    # a face of < 3 corners is refused by load: the count is exact wherever load succeeds
    return max(tokens - 3 * len(face_starts), 0)
