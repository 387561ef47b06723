"""STL, binary and ASCII, read with numpy, faithfully: 3 vertices per triangle as stored.

Binary: an 80-byte header, a uint32 triangle count, then per triangle 12 float32 (normal, three
corners) and a uint16 attribute; the file's size must be exactly ``84 + 50 * count``. A binary
header may itself start with ``solid`` (many exporters write it so): a file is read as ASCII
only when it starts with ``solid`` and is not exactly the size its binary count gives, or when
it also ends with an ``endsolid`` line.

ASCII: ``solid [name]``, then per triangle ``facet normal nx ny nz`` / ``outer loop`` /
3 x ``vertex x y z`` / ``endloop`` / ``endfacet``, then ``endsolid [name]``; several solids in
one file are read in order (their number per triangle is ``face_groups`` when there are several).
Keywords are matched case-insensitively, each on its own line; anything else is a ``ReadError``
naming the line.
"""

from __future__ import annotations

import os

import numpy as np

from hetload.io.lines import first_token, token_counts
from hetload.io.options import LoadOptions
from hetload.io.read_error import ReadError, check_finite
from hetload.io.text import NotNumbers, parse_numbers

__all__ = ["count_stl", "is_binary_stl", "read_stl", "weld"]

_HEADER = 84
_RECORD = np.dtype(
    [("normal", "<f4", (3,)), ("corners", "<f4", (9,)), ("attribute", "<u2")]
)  # 50 bytes, no padding
_TAIL = 1024  # bytes searched for the closing 'endsolid' line

# line kinds of an ASCII STL, by keyword
_SOLID, _FACET, _OUTER, _VERTEX, _ENDLOOP, _ENDFACET, _ENDSOLID = range(7)
_KEYWORDS = (
    (b"solid", _SOLID),
    (b"facet", _FACET),
    (b"outer", _OUTER),
    (b"vertex", _VERTEX),
    (b"endloop", _ENDLOOP),
    (b"endfacet", _ENDFACET),
    (b"endsolid", _ENDSOLID),
)
_NAMES = {kind: word.decode() for word, kind in _KEYWORDS}
# the lines of one triangle, in order, and how many tokens each has
_FACET_LINES = np.array([_FACET, _OUTER, _VERTEX, _VERTEX, _VERTEX, _ENDLOOP, _ENDFACET])
_TOKENS = {_FACET: 5, _OUTER: 2, _VERTEX: 4, _ENDLOOP: 1, _ENDFACET: 1}


def is_binary_stl(data: bytes, size: int | None = None) -> bool:
    """Whether ``data`` (the file, or at least its first 84 bytes and ``size``) is binary."""
    size = len(data) if size is None else size
    if data.lstrip()[:5].lower() != b"solid":
        return True
    if size >= _HEADER and _HEADER + 50 * int.from_bytes(data[80:84], "little") == size:
        # the size fits a binary file: ASCII only if it also closes like one
        return not _closes_ascii(data) if len(data) == size else True
    # a damaged binary file with a 'solid' header: its body is not text
    return not _text(data[_HEADER : _HEADER + _TAIL])


def _text(chunk: bytes) -> bool:
    """No control or non-ASCII bytes: what an ASCII STL holds and float32 data hardly does."""
    body = np.frombuffer(chunk, dtype=np.uint8)
    return not ((body < 9) | (body > 126)).any()


def _closes_ascii(data: bytes) -> bool:
    tail = data[-_TAIL:].rstrip().lower()
    last = tail.rsplit(b"\n", 1)[-1].rsplit(b"\r", 1)[-1].strip()
    return last.startswith(b"endsolid") and b"facet" in data[:_TAIL].lower()


def read_stl(path: str | os.PathLike, data: bytes, options: LoadOptions) -> dict[str, np.ndarray]:
    """Parse STL bytes into a sample: ``verts`` ``[3F, 3]`` (three per triangle, as stored),
    ``faces`` i64 ``[F, 3]`` (``[[0, 1, 2], [3, 4, 5], ...]``), ``face_normals`` ``[F, 3]``
    as written (often zero), ``face_attributes`` uint16 ``[F]`` (binary, where any is not 0),
    ``face_groups`` i64 ``[F]`` (ASCII with several solids); only ``verts`` ``[0, 3]`` for a
    file without triangles.
    """
    if not data:
        raise ReadError(path, "the file is empty")
    if is_binary_stl(data):
        normals, corners, extra = _read_binary(path, data)
    else:
        normals, corners, extra = _read_ascii(path, data)
    dtype = np.dtype(np.float32 if options.dtype is None else options.dtype)
    n = len(normals)
    verts = corners.reshape(3 * n, 3)
    if not options.allow_nonfinite:
        check_finite(path, "vertex", verts, lambda row: f"triangle {row // 3}")
        check_finite(path, "facet normal", normals, lambda row: f"triangle {row}")
    if n == 0:  # as the other readers: no faces field for a file without faces
        return {"verts": np.zeros((0, 3), dtype=dtype)}
    sample: dict[str, np.ndarray] = {}
    if options.weld:
        unique, faces = weld(verts)
        sample["verts"] = unique.astype(dtype)
        sample["faces"] = faces.astype(options.index_dtype)
    else:
        sample["verts"] = verts.astype(dtype)
        sample["faces"] = np.arange(3 * n, dtype=options.index_dtype).reshape(n, 3)
    sample["face_normals"] = normals.astype(dtype)
    if options.polygons:  # every STL polygon is a triangle
        sample["polygons"] = sample["faces"].reshape(-1).copy()
        sample["polygon_sizes"] = np.full(n, 3, dtype=np.int64)
    sample.update(extra)
    return sample


def weld(verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge exactly equal vertices of a triangle soup, deterministically.

    Args:
        verts: ``[3F, 3]``, three corners per triangle.

    Returns:
        ``(unique [U, 3], faces int64 [F, 3])``: the distinct rows in the order of their first
        occurrence (``-0.0`` equals ``0.0``; bit-identical NaNs are equal), and each triangle's
        corners as indices into them.
    """
    rows = np.ascontiguousarray(verts + verts.dtype.type(0))  # -0.0 + 0.0 == +0.0
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * 3))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return verts[first[order]], rank[inverse.reshape(-1)].reshape(-1, 3)


# ----------------------------------------------------------------------------------- binary
def _read_binary(path: str | os.PathLike, data: bytes):
    if len(data) < _HEADER:
        raise ReadError(
            path,
            f"{len(data)} bytes: shorter than a binary STL header (84 bytes), and not ASCII "
            "(no 'solid' at the start)",
        )
    count = int.from_bytes(data[80:84], "little")
    if len(data) - _HEADER != 50 * count and _text(data[:_TAIL]):
        raise ReadError(
            path,
            "not a binary STL (its size does not fit its triangle count) and not an ASCII one "
            "(no 'solid' at the start)",
        )
    _check_count(path, count, len(data) - _HEADER)
    rows = np.frombuffer(data, dtype=_RECORD, count=count, offset=_HEADER)
    extra = {}
    if count and rows["attribute"].any():
        extra["face_attributes"] = rows["attribute"].astype(np.uint16)
    return rows["normal"], rows["corners"], extra


def _check_count(path: str | os.PathLike, count: int, body: int) -> None:
    if body == 50 * count:
        return
    reason = (
        f"the header declares {count} triangles ({50 * count} bytes) but {body} bytes follow it: "
    )
    if body < 50 * count:
        reason += "truncated, or the count is wrong"
    else:
        reason += "the count is wrong, or bytes follow the last triangle"
    raise ReadError(path, reason, "byte 80")


# ------------------------------------------------------------------------------------ ascii
def _read_ascii(path: str | os.PathLike, data: bytes):
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    line_starts = np.concatenate([[0], newlines[:-1] + 1])
    counts = token_counts(buf, line_starts)
    lines = np.flatnonzero(counts)  # non-blank lines
    first = first_token(buf, line_starts[lines])
    kinds = _classify(buf, first)

    def where(k: int) -> str:
        return f"line {int(lines[k]) + 1}"

    unknown = np.flatnonzero(kinds < 0)
    if len(unknown):
        k = int(unknown[0])
        word = bytes(buf[first[k] : newlines[lines[k]]]).split()[0].decode("utf-8", "replace")
        raise ReadError(path, f"{word!r} is not an ASCII STL keyword", where(k))
    groups = _check_structure(path, kinds, counts[lines], where)
    vertex = np.flatnonzero(kinds == _VERTEX)
    facet = np.flatnonzero(kinds == _FACET)
    # 'normal' must follow 'facet'
    second = first_token(buf, first[facet] + 5)  # after 'facet'
    window = buf[np.minimum(second[:, None] + np.arange(7), len(buf) - 1)]
    normal = ((window[:, :6] | 0x20) == np.frombuffer(b"normal", np.uint8)).all(axis=1)
    not_normal = np.flatnonzero(~(normal & (window[:, 6] <= 32)))
    if len(not_normal):
        raise ReadError(path, "expected 'facet normal nx ny nz'", where(int(facet[not_normal[0]])))
    # the numbers: blank everything but the values of 'vertex' and 'facet normal' lines, then
    # parse the rest in one call (facet: 3 numbers, then its 3 vertices: 9)
    keep = np.zeros(len(buf) + 1, dtype=np.int8)
    keep[first[vertex] + 6] += 1
    keep[newlines[lines[vertex]]] -= 1
    keep[second + 6] += 1
    keep[newlines[lines[facet]]] -= 1
    inside = np.cumsum(keep[:-1], dtype=np.int8) > 0  # int8: the default is 8 bytes a byte
    del keep
    numbers = np.where(inside, buf, np.uint8(32))
    del inside
    n = len(facet)
    try:
        values = parse_numbers(numbers, np.float64, 12 * n) if n else np.zeros(0)
    except NotNumbers:
        _raise_bad_number(path, buf, line_starts, newlines, lines, kinds, where)
    values = values.reshape(n, 12)
    extra = {"face_groups": groups} if groups is not None else {}
    with np.errstate(over="ignore"):  # past float32's range: inf, refused by the caller
        return values[:, :3].astype(np.float32), values[:, 3:].astype(np.float32), extra


def _classify(buf: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The kind of each line from its first token (``-1``: not a keyword)."""
    kinds = np.full(len(first), -1, dtype=np.int64)
    padded = np.concatenate([buf, np.full(9, 32, dtype=np.uint8)])
    # the 9 bytes from each first token: a strided view gathered once (9 bytes a line); the
    # first 8, lower-cased, as one uint64 per line, so each keyword is one comparison
    raw = np.lib.stride_tricks.sliding_window_view(padded, 9)[first]
    key = np.ascontiguousarray(raw[:, :8] | np.uint8(0x20)).view(np.uint64).reshape(-1)
    for word, kind in _KEYWORDS:
        width = len(word)
        mask = np.frombuffer((b"\xff" * width).ljust(8, b"\0"), dtype=np.uint64)[0]
        target = np.frombuffer(word.ljust(8, b"\0"), dtype=np.uint64)[0]
        match = ((key & mask) == target) & (raw[:, width] <= 32)
        kinds[match] = kind
    return kinds


def _check_structure(path, kinds: np.ndarray, tokens: np.ndarray, where) -> np.ndarray | None:
    """Raise unless the lines are ``solid (facet outer vertex*3 endloop endfacet)* endsolid``,
    repeated; the solid of each triangle when there are several solids."""
    if kinds[0] != _SOLID:
        raise ReadError(path, "an ASCII STL starts with a 'solid' line", where(0))
    ends = np.flatnonzero(kinds == _ENDSOLID)
    groups = []
    pos = 0
    while pos < len(kinds):
        if kinds[pos] != _SOLID:
            found = _NAMES[int(kinds[pos])]
            raise ReadError(path, f"expected 'solid', found '{found}'", where(pos))
        later = ends[ends > pos]
        stop = int(later[0]) if len(later) else len(kinds)
        body = kinds[pos + 1 : stop]
        pattern = np.resize(_FACET_LINES, len(body))
        wrong = np.flatnonzero(body != pattern)
        if len(wrong):
            k = pos + 1 + int(wrong[0])
            expected, found = _NAMES[int(pattern[wrong[0]])], _NAMES[int(kinds[k])]
            raise ReadError(path, f"expected '{expected}', found '{found}'", where(k))
        if len(body) % 7:
            expected = _NAMES[int(_FACET_LINES[len(body) % 7])]
            if stop == len(kinds):
                raise ReadError(path, f"the file ends where '{expected}' belongs", where(stop - 1))
            raise ReadError(path, f"expected '{expected}', found 'endsolid'", where(stop))
        if stop == len(kinds):
            raise ReadError(
                path, "the file ends inside a solid: no 'endsolid' line", where(stop - 1)
            )
        groups.append(np.full(len(body) // 7, len(groups), dtype=np.int64))
        pos = stop + 1
    need = np.array([_TOKENS.get(k, 0) for k in range(7)])[kinds]
    bad = np.flatnonzero((need > 0) & (tokens != need))
    if len(bad):
        k = int(bad[0])
        raise ReadError(
            path,
            f"a '{_NAMES[int(kinds[k])]}' line has {int(tokens[k])} words, expected {need[k]}",
            where(k),
        )
    return np.concatenate(groups) if len(groups) > 1 else None


def _raise_bad_number(path, buf, line_starts, newlines, lines, kinds, where) -> None:
    for k in np.flatnonzero((kinds == _VERTEX) | (kinds == _FACET)):
        line = int(lines[k])
        words = bytes(buf[line_starts[line] : newlines[line]]).split()
        for token in words[1 if kinds[k] == _VERTEX else 2 :]:
            try:
                float(token)
            except ValueError:
                text = token.decode("utf-8", "replace")
                raise ReadError(path, f"{text!r} is not a number", where(int(k))) from None
    raise ReadError(path, "a value is not a number numpy can read")


# ------------------------------------------------------------------------------------- scan
def count_stl(path: str | os.PathLike, head: bytes, size: int, read_all) -> tuple[int, int]:
    """``(n_verts, n_triangles)`` as :func:`read_stl` returns them (without weld).

    A binary file's count comes from its header and is checked against the size; an ASCII
    file (``read_all()`` gives its bytes) is counted by its ``endfacet`` lines.
    """
    if size == 0:
        raise ReadError(path, "the file is empty")
    ascii_start = head.lstrip()[:5].lower() == b"solid"
    if ascii_start:
        data = read_all()
        if not is_binary_stl(data):
            n = data.lower().count(b"endfacet")
            return 3 * n, n
    if size < _HEADER:
        raise ReadError(path, f"{size} bytes: shorter than a binary STL header (84 bytes)")
    count = int.from_bytes(head[80:84], "little")
    _check_count(path, count, size - _HEADER)
    return 3 * count, count
