"""OFF (Geomview's Object File Format), read with numpy: ASCII here, ``OFF BINARY`` in
``off_binary.py``, what both share (keyword, counts, faces) in ``off_common.py``.

Header keyword ``[ST][C][N]OFF`` (also lower-case ``off``, or none at all: "recommended but
optional" says the format), then ``NVertices NFaces [NEdges]`` (on the keyword's line too, as
ModelNet's ``OFF490 518 0`` has it), then one vertex per line (``x y z [nx ny nz] [r g b [a]]
[s t]``) and one face per line (``n v0 .. v(n-1) [r g b [a]]``). ``#`` starts a comment;
blank lines are skipped. ``4OFF`` / ``nOFF`` (homogeneous / n-dimensional coordinates) are
refused. ``OFF BINARY``: the same data as 32-bit big-endian ints and floats, vertex colors as
4 floats (RGBA), each face as ``n v0 .. v(n-1) ncolors c0 ..`` (a file whose big-endian counts
cannot fit its size is read as little-endian, as older writers produced).

Colors are kept as stored: integers (no ``.`` or exponent in the first colored row, every value
a whole number) as ``uint8`` 0..255, otherwise floats in the sample's dtype. A plain ``OFF`` whose
vertex rows hold 6 or 7 numbers carries colors too (PyTorch3D reads such files so).
"""

from __future__ import annotations

import os
import re

import numpy as np

from hetload.io.lines import first_token, token_counts
from hetload.io.off_binary import count_binary_off, read_binary_off
from hetload.io.off_common import (
    BINARY,
    FIELD_NAMES,
    Layout,
    float_dtype,
    is_binary_off,
    keyword,
    parse_counts,
    put_faces,
)
from hetload.io.options import LoadOptions
from hetload.io.read_error import ReadError, check_finite
from hetload.io.text import NotNumbers, parse_numbers

__all__ = ["count_off", "is_binary_off", "read_off"]

_COMMENT = re.compile(rb"#[^\n]*")
_FLOAT_CHARS = (b".", b"e", b"E", b"n", b"N", b"i", b"I")


def read_off(path: str | os.PathLike, data: bytes, options: LoadOptions) -> dict[str, np.ndarray]:
    """Parse OFF bytes into a sample: ``verts`` ``[N, 3]``, ``faces`` i64 ``[F, 3]`` (polygons
    fan-triangulated), and where the file has them ``normals`` / ``colors`` / ``uvs`` per vertex
    and ``face_colors`` per triangle (see :func:`hetload.io.load`)."""
    if not data.strip():
        raise ReadError(path, "the file is empty")
    binary = BINARY.match(data)
    if binary is not None:
        return read_binary_off(path, data, binary, options)
    return _read_ascii(path, data, options)


# ------------------------------------------------------------------------------------ ascii
def _clean(data: bytes) -> np.ndarray:
    """The bytes as a uint8 array with ``\n`` line ends and comments removed (each line keeps
    its number: a comment runs to the end of its line)."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"#" in data:
        data = _COMMENT.sub(b"", data)
    if not data.endswith(b"\n"):
        data += b"\n"
    return np.frombuffer(data, dtype=np.uint8)


def _ascii_rows(path: str | os.PathLike, data: bytes):
    """The header and the line structure: ``(buf, line_starts, newlines, counts, layout,
    vertex lines, face lines, where)``; raises unless the counts match the lines."""
    buf = _clean(data)
    newlines = np.flatnonzero(buf == 10)
    line_starts = np.concatenate([[0], newlines[:-1] + 1])
    counts = token_counts(buf, line_starts)
    rows = np.flatnonzero(counts)  # non-blank lines
    if not len(rows):
        raise ReadError(path, "the file holds only comments and blank lines")

    def line_tokens(line: int) -> list[bytes]:
        return bytes(buf[line_starts[line] : newlines[line]]).split()

    def where(line: int) -> str:
        return f"line {line + 1}"

    head = line_tokens(int(rows[0]))
    found = keyword(path, head[0], where(int(rows[0])))
    used = 1
    if found is None:
        layout, count_tokens = Layout(), head  # no keyword: the first line holds the counts
    else:
        layout, glued = found
        count_tokens = ([glued] if glued else []) + head[1:]
        if not count_tokens:
            if len(rows) < 2:
                raise ReadError(path, "the file ends after its keyword: no counts line")
            count_tokens = line_tokens(int(rows[1]))
            used = 2
    n_verts, n_faces = parse_counts(path, count_tokens, where(int(rows[used - 1])))
    body = rows[used:]
    if n_verts + n_faces > len(body):
        raise ReadError(
            path,
            f"the header declares {n_verts} vertices and {n_faces} faces but only {len(body)} "
            "lines follow: the file is truncated or its counts are wrong",
            where(int(rows[used - 1])),
        )
    if len(body) > n_verts + n_faces:
        extra = int(body[n_verts + n_faces])
        raise ReadError(
            path,
            f"{len(body) - n_verts - n_faces} lines follow the last face: the counts do not "
            "describe the whole file",
            where(extra),
        )
    vrows, frows = body[:n_verts], body[n_verts:]
    return buf, line_starts, newlines, counts, layout, vrows, frows, where


def _read_ascii(
    path: str | os.PathLike, data: bytes, options: LoadOptions
) -> dict[str, np.ndarray]:
    buf, line_starts, newlines, counts, layout, vrows, frows, where = _ascii_rows(path, data)
    sample = _vertices(path, buf, line_starts, newlines, counts, vrows, layout, options, where)
    if len(frows):
        _faces(path, buf, line_starts, newlines, counts, frows, len(vrows), sample, options, where)
    return sample


def _ascii_triangles(path: str | os.PathLike, data: bytes) -> tuple[int, int, int | None]:
    """``(n_verts, n_faces, n_triangles)``: the triangles from the first number of each face
    line alone, read as decimal digits (``None`` where one is not a whole number >= 3 that
    its line has room for: ``load`` names that line)."""
    buf, line_starts, _, counts, _, vrows, frows, _ = _ascii_rows(path, data)
    if not len(frows):
        return len(vrows), 0, 0
    start = first_token(buf, line_starts[frows])
    sizes = np.zeros(len(frows), dtype=np.int64)
    pos = start.copy()
    for _ in range(10):  # up to 9 digits; a longer count is no face size a line can hold
        byte = buf[np.minimum(pos, len(buf) - 1)]
        digit = (byte >= 48) & (byte <= 57)
        if not digit.any():
            break
        sizes[digit] = sizes[digit] * 10 + (byte[digit] - 48)
        pos[digit] += 1
    ended = buf[np.minimum(pos, len(buf) - 1)] <= 32
    if not (ended & (pos > start) & (sizes >= 3) & (sizes + 1 <= counts[frows])).all():
        return len(vrows), len(frows), None  # load names the line
    return len(vrows), len(frows), int((sizes - 2).sum())


def _parse_block(
    path: str | os.PathLike,
    buf: np.ndarray,
    line_starts: np.ndarray,
    newlines: np.ndarray,
    lines: np.ndarray,
    n: int,
    where,
) -> np.ndarray:
    """Every number on ``lines`` (consecutive non-blank lines, blank ones between allowed)."""
    region = buf[line_starts[lines[0]] : newlines[lines[-1]]]
    try:
        return parse_numbers(region, np.float64, n)
    except NotNumbers:
        pass
    for line in lines:  # name the first bad token's line
        for token in bytes(buf[line_starts[line] : newlines[line]]).split():
            try:
                float(token)
            except ValueError:
                text = token.decode("utf-8", "replace")
                raise ReadError(path, f"{text!r} is not a number", where(int(line))) from None
    raise ReadError(path, "a value is not a number numpy can read", where(int(lines[0])))


def _color_dtype(
    path, values: np.ndarray, first_row: list[bytes], options: LoadOptions, what: str, where
):
    """Colors as stored: uint8 when written as integers, else floats; ``where(k)`` names the
    place of row ``k``."""
    integers = not any(c in tok for tok in first_row for c in _FLOAT_CHARS)
    if integers and np.isfinite(values).all() and (values == np.floor(values)).all():
        bad = np.flatnonzero(((values < 0) | (values > 255)).any(axis=1))
        if len(bad):
            k = int(bad[0])
            raise ReadError(
                path, f"{what} {k}: integer color {values[k].tolist()} is outside 0..255", where(k)
            )
        return values.astype(np.uint8)
    with np.errstate(over="ignore"):
        return values.astype(float_dtype(options, np.float64))


def _vertices(
    path, buf, line_starts, newlines, counts, vrows, layout: Layout, options: LoadOptions, where
) -> dict[str, np.ndarray]:
    dtype = float_dtype(options, np.float64)
    n = len(vrows)
    if n == 0:
        return {"verts": np.zeros((0, 3), dtype=dtype)}
    tokens = counts[vrows]
    width = int(tokens[0])
    odd = np.flatnonzero(tokens != width)
    if len(odd):
        k = int(odd[0])
        raise ReadError(
            path,
            f"vertex {k} has {int(tokens[k])} values, vertex 0 has {width}",
            where(int(vrows[k])),
        )
    table = _parse_block(path, buf, line_starts, newlines, vrows, n * width, where).reshape(
        n, width
    )
    extra = width - 3 - 3 * layout.normals - 2 * layout.uvs
    colors = extra if layout.colors else (extra if extra in (3, 4) else 0)
    if (layout.colors and colors not in (3, 4)) or (not layout.colors and extra not in (0, 3, 4)):
        keyword = f"{'ST' * layout.uvs}{'C' * layout.colors}{'N' * layout.normals}OFF"
        raise ReadError(
            path,
            f"a vertex line has {width} values; a {keyword} vertex has "
            f"{3 + 3 * layout.normals + 2 * layout.uvs} (+3 or 4 color values)",
            where(int(vrows[0])),
        )

    def row_where(k: int) -> str:
        return where(int(vrows[k]))

    with np.errstate(over="ignore"):  # past float32's range: inf, refused below
        sample = {"verts": table[:, :3].astype(dtype)}
        if layout.normals:
            sample["normals"] = table[:, 3:6].astype(dtype)
        if layout.uvs:
            sample["uvs"] = table[:, width - 2 :].astype(dtype)
    col = 3 + 3 * layout.normals
    if colors:
        first = bytes(buf[line_starts[vrows[0]] : newlines[vrows[0]]]).split()[col : col + colors]
        sample["colors"] = _color_dtype(
            path, table[:, col : col + colors], first, options, "vertex", row_where
        )
    if not options.allow_nonfinite:
        for name in ("verts", "normals", "colors", "uvs"):
            if name in sample and sample[name].dtype.kind == "f":
                # on the cast values: a coordinate past float32's range is inf there
                check_finite(path, FIELD_NAMES[name], sample[name], row_where)
    return sample


def _faces(
    path, buf, line_starts, newlines, counts, frows, n_verts: int, sample, options, where
) -> None:
    tokens = counts[frows]
    values = _parse_block(path, buf, line_starts, newlines, frows, int(tokens.sum()), where)
    row_start = np.concatenate([[0], np.cumsum(tokens)[:-1]])
    sizes_f = values[row_start]

    def face_where(k: int) -> str:
        return where(int(frows[k]))

    whole = np.isfinite(sizes_f) & (sizes_f >= 3) & (sizes_f == np.floor(sizes_f))
    bad = np.flatnonzero(~whole | (sizes_f + 1 > tokens))
    if len(bad):
        k = int(bad[0])
        size = sizes_f[k]
        reason = (
            f"face {k} declares {size:g} corners; a face needs at least 3"
            if not whole[k]
            else f"face {k} declares {size:g} corners but its line holds {int(tokens[k]) - 1}"
        )
        raise ReadError(path, reason, face_where(k))
    sizes = sizes_f.astype(np.int64)
    n_colors = tokens - 1 - sizes
    if (n_colors != n_colors[0]).any():
        k = int(np.flatnonzero(n_colors != n_colors[0])[0])
        raise ReadError(
            path,
            f"face {k} has {int(n_colors[k])} color values, face 0 has {int(n_colors[0])}: "
            "colors on some faces only are not supported",
            face_where(k),
        )
    width = int(n_colors[0])
    if width not in (0, 3, 4):
        raise ReadError(
            path,
            f"faces carry {width} values after their corners; a face color is 3 or 4 values "
            "(colormap indices are not supported)",
            face_where(0),
        )
    if (sizes == sizes[0]).all():  # one polygon size (all triangles, say): column slices
        flat_f = values.reshape(len(sizes), -1)[:, 1 : 1 + int(sizes[0])].reshape(-1)
    else:
        index = np.repeat(row_start + 1 - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
        index += np.arange(len(index), dtype=np.int64)
        flat_f = values[index]
    flat = flat_f.astype(np.int64)
    wrong = np.flatnonzero((flat_f != flat) | (flat < 0) | (flat >= n_verts))
    if len(wrong):
        k = int(wrong[0])
        face = int(np.searchsorted(np.cumsum(sizes), k, side="right"))
        raise ReadError(
            path,
            f"face {face} refers to vertex {flat_f[k]:g}, outside [0, {n_verts})",
            face_where(face),
        )
    face_colors = None
    if width:
        cols = values[(row_start + 1 + sizes)[:, None] + np.arange(width)]
        first = bytes(buf[line_starts[frows[0]] : newlines[frows[0]]]).split()[-width:]
        face_colors = _color_dtype(path, cols, first, options, "face", face_where)
        if face_colors.dtype.kind == "f" and not options.allow_nonfinite:
            check_finite(path, "face color", face_colors, face_where)
    put_faces(sample, flat, sizes, face_colors, options)


# ------------------------------------------------------------------------------------- scan
def count_off(path: str | os.PathLike, data: bytes) -> tuple[int, int, int | None]:
    """``(n_verts, n_faces, n_triangles or None)``: a binary file's counts from its header
    (triangles ``None``); an ASCII file's (the whole file in ``data``) from its counts line and
    the first number of each face line, no float parsed.

    Raises:
        ReadError: no counts where the header should hold them, or counts the lines contradict.
    """
    if not data.strip():
        raise ReadError(path, "the file is empty")
    binary = BINARY.match(data)
    if binary is None:
        return _ascii_triangles(path, data)
    return (*count_binary_off(path, data, binary), None)
