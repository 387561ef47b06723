"""What the OFF readers share: the header keyword and counts, the sample's float dtype, and
polygons to triangles (``off.py``: ASCII and ``scan``; ``off_binary.py``: ``OFF BINARY``)."""

from __future__ import annotations

import os
import re

import numpy as np

from hetload.io.options import LoadOptions
from hetload.io.polygons import fan_triangles
from hetload.io.read_error import ReadError

__all__ = [
    "BINARY",
    "FIELD_NAMES",
    "Layout",
    "float_dtype",
    "is_binary_off",
    "keyword",
    "parse_counts",
    "put_faces",
]

_KEYWORD = re.compile(rb"(ST)?(C)?(N)?(4)?(n)?OFF|(?i:off)")
BINARY = re.compile(rb"\A[ \t\r\n]*[A-Za-z4]*OFF[ \t]+BINARY[ \t]*(\r\n|\n|\r)")
#: the per-vertex fields as an error message names them
FIELD_NAMES = {"verts": "vertex", "normals": "normal", "colors": "color", "uvs": "uv"}


class Layout:
    """What the keyword says a vertex row holds."""

    def __init__(self, normals: bool = False, colors: bool = False, uvs: bool = False) -> None:
        self.normals, self.colors, self.uvs = normals, colors, uvs


def is_binary_off(head: bytes) -> bool:
    """Whether the file starting with ``head`` is a binary OFF (``OFF BINARY`` keyword line)."""
    return BINARY.match(head) is not None


def keyword(path: str | os.PathLike, token: bytes, where: str) -> tuple[Layout, bytes] | None:
    """The layout a leading keyword announces and what follows it in the same token
    (``OFF490`` -> counts glued on), or ``None`` when the token is not a keyword."""
    m = _KEYWORD.match(token)
    if m is None:
        return None
    if m.group(4) or m.group(5):
        raise ReadError(
            path,
            f"{token[: m.end()].decode()!r}: 4D / n-dimensional OFF coordinates are not "
            "supported (hetload reads 3D vertices)",
            where,
        )
    rest = token[m.end() :]
    if rest and not rest[:1].isdigit():
        return None  # a word that merely starts like a keyword
    return Layout(bool(m.group(3)), bool(m.group(2)), bool(m.group(1))), rest


def parse_counts(path: str | os.PathLike, tokens: list[bytes], where: str) -> tuple[int, int]:
    if len(tokens) not in (2, 3) or not all(t.isdigit() for t in tokens):
        text = b" ".join(tokens).decode("utf-8", "replace")
        raise ReadError(
            path, f"expected the counts 'NVertices NFaces NEdges', found {text!r}", where
        )
    return int(tokens[0]), int(tokens[1])


def float_dtype(options: LoadOptions, stored) -> np.dtype:
    # dtype=None ("as stored") where LoadOptions allows it
    return np.dtype(stored if options.dtype is None else options.dtype)


def put_faces(
    sample: dict, flat: np.ndarray, sizes: np.ndarray, face_colors, options: LoadOptions
) -> None:
    """Triangles (fan) and the per-triangle colors; the polygons as written on request."""
    if (sizes == 3).all():
        sample["faces"] = flat.reshape(-1, 3).astype(options.index_dtype)
        owner = None
    else:
        corners, owner = fan_triangles(sizes)
        sample["faces"] = flat[corners].astype(options.index_dtype)
    if face_colors is not None:
        sample["face_colors"] = face_colors if owner is None else face_colors[owner]
    if options.polygons:
        sample["polygons"] = flat.astype(options.index_dtype)
        sample["polygon_sizes"] = sizes.astype(np.int64)
