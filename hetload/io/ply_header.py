"""PLY header: the format line, elements and their properties, and where the body starts.

Also the model the body readers share: :class:`Element` / :class:`Prop`, and ``Values`` (an
element's parsed columns).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from hetload.io.read_error import ReadError

__all__ = [
    "FACE_LISTS",
    "FORMATS",
    "Element",
    "PlyHeader",
    "Prop",
    "Values",
    "check_list_count",
    "empty_values",
    "read_ply_header",
]

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_EOL = re.compile(rb"\r\n|\r|\n")
_MAX_HEADER = 1 << 20
FACE_LISTS = ("vertex_indices", "vertex_index")


@dataclass
class Prop:
    """One property: ``dtype`` of the values; ``count_dtype`` is set for a list property."""

    name: str
    dtype: np.dtype
    count_dtype: np.dtype | None = None


@dataclass
class Element:
    name: str
    count: int
    props: list[Prop] = field(default_factory=list)

    @property
    def fixed(self) -> bool:
        return all(p.count_dtype is None for p in self.props)


@dataclass
class PlyHeader:
    """The parsed header: ``fmt`` is ``"ascii"`` or a binary format; ``body`` its byte offset."""

    fmt: str
    elements: list[Element]
    body: int
    lines: int  # header lines, for ascii line numbers

    def count(self, name: str) -> int:
        return sum(e.count for e in self.elements if e.name == name)


def read_ply_header(path: str | os.PathLike, data: bytes) -> PlyHeader:
    """Parse the header at the start of ``data`` (which may be the first bytes of the file)."""
    if not data:
        raise ReadError(path, "the file is empty")
    first = _EOL.search(data, 0, 16)
    if not data.startswith(b"ply") or first is None or first.start() != 3:
        raise ReadError(path, "not a PLY file: it does not start with a 'ply' line")
    eol = first.group()
    end = data.find(b"end_header", 0, _MAX_HEADER)
    if end < 0:
        raise ReadError(path, "no 'end_header' line in the first MiB: not a PLY header")
    body = end + len(b"end_header")
    while data[body : body + 1] in (b" ", b"\t"):
        body += 1
    # a CR-only header may be followed by binary data that starts with a \n byte: consume
    # exactly the header's own line end. A Windows exporter may end only the 'end_header' line
    # with CRLF after LF lines (assimp and trimesh read such files): after a LF header, a CR
    # is no line end of its own, so CRLF there is unambiguous
    if data[body : body + len(eol)] == eol:
        body += len(eol)
    elif data[body : body + 2] == b"\r\n":
        body += 2
    elif data[body : body + 1] == b"\n":
        body += 1
    elif body < len(data):
        raise ReadError(path, "'end_header' is not followed by a line end")

    lines = _EOL.split(data[:end])
    fmt: str | None = None
    elements: list[Element] = []
    for number, raw in enumerate(lines[1:], start=2):
        words = raw.decode("latin-1").split()
        where = f"header line {number}"
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            # 1.0 is the only version there is: another one may mean another layout
            if len(words) != 3 or words[1] not in FORMATS or words[2] not in ("1.0", "1"):
                raise ReadError(path, f"unknown format line {' '.join(words)!r}", where)
            fmt = words[1]
        elif words[0] == "element":
            # isdigit() alone takes digits such as '²' that int() refuses
            if len(words) != 3 or not (words[2].isascii() and words[2].isdigit()):
                raise ReadError(path, f"bad element line {' '.join(words)!r}", where)
            if any(e.name == words[1] for e in elements):
                # readers that key elements by name (plyfile refuses, others keep one of the
                # two) would disagree on which rows are the vertices
                raise ReadError(path, f"element {words[1]!r} is declared twice", where)
            elements.append(Element(words[1], int(words[2])))
        elif words[0] == "property":
            if not elements:
                raise ReadError(path, "a property before any element", where)
            prop = _prop(path, words, where)
            if any(p.name == prop.name for p in elements[-1].props):
                raise ReadError(
                    path,
                    f"property {prop.name!r} is declared twice in element {elements[-1].name!r}",
                    where,
                )
            elements[-1].props.append(prop)
        else:
            raise ReadError(path, f"unknown header keyword {words[0]!r}", where)
    if fmt is None:
        raise ReadError(path, "the header has no 'format' line")
    return PlyHeader(fmt, elements, body, len(lines) + 1)


def _prop(path: str | os.PathLike, words: list[str], where: str) -> Prop:
    if len(words) == 5 and words[1] == "list":
        count, item = _TYPES.get(words[2]), _TYPES.get(words[3])
        if count is None or item is None or count[0] == "f":
            raise ReadError(path, f"bad list property {' '.join(words)!r}", where)
        return Prop(words[4], np.dtype(item), np.dtype(count))
    if len(words) != 3 or words[1] not in _TYPES:
        raise ReadError(path, f"bad property line {' '.join(words)!r}", where)
    return Prop(words[2], np.dtype(_TYPES[words[1]]))


# An element's values: scalar property -> [count] array; list property -> (flat values, sizes).
Values = dict[str, "np.ndarray | tuple[np.ndarray, np.ndarray]"]


def check_list_count(path: str | os.PathLike, n: int, where: str) -> None:
    if n < 0:
        raise ReadError(path, f"a list count is negative ({n})", where)


def empty_values(element: Element) -> Values:
    """The values of an element of 0 rows."""
    return {p.name: _empty(p) for p in element.props}


def _empty(p: Prop) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    if p.count_dtype is None:
        return np.zeros(0, dtype=p.dtype)
    return np.zeros(0, dtype=p.dtype), np.zeros(0, dtype=np.int64)
