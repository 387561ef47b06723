"""Helpers for the translated peer reader suites (``tests/test_peer_*.py``).

Each peer case is rewritten as bytes written by the test and what a faithful reader returns.
Two multipliers make one peer case many of ours without changing its meaning:

- :data:`OBJ_SPELLINGS`: the same OBJ text with other line ends, indentation, spacing, comments
  and no final newline (they also steer the reader onto its fast or its per-line path);
- :func:`ply`: the same PLY elements written as ASCII, binary little- and big-endian.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from hetload.io import ReadError, load

_COUNTER = itertools.count()


def write(tmp_path: Path, data: bytes | str, suffix: str) -> Path:
    path = tmp_path / f"case{next(_COUNTER)}{suffix}"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def read(tmp_path: Path, data: bytes | str, suffix: str = ".obj", **options) -> dict:
    return load(write(tmp_path, data, suffix), **options)


def refuse(tmp_path: Path, data: bytes | str, suffix: str, *fragments: str, **options):
    """``load`` raises a ReadError naming the file and holding every fragment."""
    path = write(tmp_path, data, suffix)
    with pytest.raises(ReadError) as info:
        load(path, **options)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def equal(actual: np.ndarray, expected, dtype=None) -> None:
    """Values and, where given, dtype."""
    np.testing.assert_array_equal(actual, np.asarray(expected).reshape(np.shape(actual)))
    if dtype is not None:
        assert actual.dtype == np.dtype(dtype), actual.dtype


# ------------------------------------------------------------------------------------------ OBJ
def _lines(text: str) -> list[str]:
    return text.split("\n")


OBJ_SPELLINGS: dict[str, Callable[[str], bytes]] = {
    "lf": lambda t: t.encode(),
    "crlf": lambda t: t.replace("\n", "\r\n").encode(),
    "cr": lambda t: t.replace("\n", "\r").encode(),
    "no_final_newline": lambda t: t.rstrip("\n").encode(),
    "indented": lambda t: "\n".join("  \t" + line for line in _lines(t)).encode(),
    "wide_spaces": lambda t: "\n".join(
        line.replace(" ", "   ") if not line.startswith(("o ", "g ")) else line
        for line in _lines(t)
    ).encode(),
    "tabs": lambda t: "\n".join(
        line.replace(" ", "\t") if not line.startswith(("o ", "g ")) else line for line in _lines(t)
    ).encode(),
    "comments": lambda t: ("# header\n" + t.replace("\n", "\n# between\n")).encode(),
    "blank_lines": lambda t: t.replace("\n", "\n\n").encode(),
}


# ------------------------------------------------------------------------------------------ PLY
_CODES = {
    "char": "b", "int8": "b", "uchar": "B", "uint8": "B", "short": "h", "int16": "h",
    "ushort": "H", "uint16": "H", "int": "i", "int32": "i", "uint": "I", "uint32": "I",
    "float": "f", "float32": "f", "double": "d", "float64": "d",
}  # fmt: skip
PLY_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")


def _properties(header: Sequence[str]) -> list[list[tuple[str, ...]]]:
    """Per element, its properties as ('scalar', type) or ('list', count type, item type)."""
    elements: list[list[tuple[str, ...]]] = []
    for line in header:
        words = line.split()
        if words[0] == "element":
            elements.append([])
        elif words[0] == "property":
            if words[1] == "list":
                elements[-1].append(("list", words[2], words[3]))
            else:
                elements[-1].append(("scalar", words[1]))
    return elements


def _text(value) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def ply(
    fmt: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Sequence]],
    comments: Sequence[str] = (),
    newline: str = "\n",
) -> bytes:
    """A PLY file: ``header`` holds the element / property lines, ``rows[e]`` the rows of
    element ``e`` (one value per scalar property, a sequence per list property)."""
    head = ["ply", f"format {fmt} 1.0", *(f"comment {c}" for c in comments), *header]
    out = (newline.join([*head, "end_header"]) + newline).encode()
    if fmt == "ascii":
        lines = []
        for element_rows in rows:
            for row in element_rows:
                words: list[str] = []
                for value in row:
                    if isinstance(value, (list, tuple)):
                        words += [str(len(value)), *map(_text, value)]
                    else:
                        words.append(_text(value))
                lines.append(" ".join(words))
        return out + "".join(line + newline for line in lines).encode()
    order = "<" if fmt == "binary_little_endian" else ">"
    body = bytearray()
    for props, element_rows in zip(_properties(header), rows):
        for row in element_rows:
            for prop, value in zip(props, row):
                if prop[0] == "list":
                    body += struct.pack(order + _CODES[prop[1]], len(value))
                    body += struct.pack(f"{order}{len(value)}{_CODES[prop[2]]}", *value)
                else:
                    body += struct.pack(order + _CODES[prop[1]], value)
    return out + bytes(body)


XYZ = ["property float x", "property float y", "property float z"]
FACE_LIST = "property list uchar int vertex_indices"
