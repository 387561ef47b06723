"""OFF (Geomview's Object File Format), ASCII and binary, read with numpy.

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
import struct

import numpy as np

from hetload.io.lines import first_token, token_counts
from hetload.io.options import LoadOptions
from hetload.io.polygons import fan_triangles
from hetload.io.read_error import ReadError, check_finite, check_fits
from hetload.io.text import NotNumbers, parse_numbers

__all__ = ["count_off", "is_binary_off", "read_off"]

_KEYWORD = re.compile(rb"(ST)?(C)?(N)?(4)?(n)?OFF|(?i:off)")
_BINARY = re.compile(rb"\A[ \t\r\n]*[A-Za-z4]*OFF[ \t]+BINARY[ \t]*(\r\n|\n|\r)")
_COMMENT = re.compile(rb"#[^\n]*")
_FLOAT_CHARS = (b".", b"e", b"E", b"n", b"N", b"i", b"I")


class _Layout:
    """What the keyword says a vertex row holds."""

    def __init__(self, normals: bool = False, colors: bool = False, uvs: bool = False) -> None:
        self.normals, self.colors, self.uvs = normals, colors, uvs


def is_binary_off(head: bytes) -> bool:
    """Whether the file starting with ``head`` is a binary OFF (``OFF BINARY`` keyword line)."""
    return _BINARY.match(head) is not None


def read_off(path: str | os.PathLike, data: bytes, options: LoadOptions) -> dict[str, np.ndarray]:
    """Parse OFF bytes into a sample: ``verts`` ``[N, 3]``, ``faces`` i64 ``[F, 3]`` (polygons
    fan-triangulated), and where the file has them ``normals`` / ``colors`` / ``uvs`` per vertex
    and ``face_colors`` per triangle (see :func:`hetload.io.load`)."""
    if not data.strip():
        raise ReadError(path, "the file is empty")
    binary = _BINARY.match(data)
    if binary is not None:
        return _read_binary(path, data, binary, options)
    return _read_ascii(path, data, options)


# ----------------------------------------------------------------------------------- header
def _keyword(path: str | os.PathLike, token: bytes, where: str) -> tuple[_Layout, bytes] | None:
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
    return _Layout(bool(m.group(3)), bool(m.group(2)), bool(m.group(1))), rest


def _counts(path: str | os.PathLike, tokens: list[bytes], where: str) -> tuple[int, int]:
    if len(tokens) not in (2, 3) or not all(t.isdigit() for t in tokens):
        text = b" ".join(tokens).decode("utf-8", "replace")
        raise ReadError(
            path, f"expected the counts 'NVertices NFaces NEdges', found {text!r}", where
        )
    return int(tokens[0]), int(tokens[1])


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
    found = _keyword(path, head[0], where(int(rows[0])))
    used = 1
    if found is None:
        layout, count_tokens = _Layout(), head  # no keyword: the first line holds the counts
    else:
        layout, glued = found
        count_tokens = ([glued] if glued else []) + head[1:]
        if not count_tokens:
            if len(rows) < 2:
                raise ReadError(path, "the file ends after its keyword: no counts line")
            count_tokens = line_tokens(int(rows[1]))
            used = 2
    n_verts, n_faces = _counts(path, count_tokens, where(int(rows[used - 1])))
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
        return values.astype(_dtype(options, np.float64))


def _dtype(options: LoadOptions, stored) -> np.dtype:
    # dtype=None ("as stored") where LoadOptions allows it
    return np.dtype(stored if options.dtype is None else options.dtype)


def _vertices(
    path, buf, line_starts, newlines, counts, vrows, layout: _Layout, options: LoadOptions, where
) -> dict[str, np.ndarray]:
    dtype = _dtype(options, np.float64)
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
                check_finite(path, _WHAT[name], sample[name], row_where)
    return sample


_WHAT = {"verts": "vertex", "normals": "normal", "colors": "color", "uvs": "uv"}


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
    _put_faces(sample, flat, sizes, face_colors, options)


def _put_faces(
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


# ----------------------------------------------------------------------------------- binary
def _read_binary(
    path: str | os.PathLike, data: bytes, header: re.Match, options: LoadOptions
) -> dict[str, np.ndarray]:
    token = data[: header.end()].split()[0]
    found = _keyword(path, token, "line 1")
    if found is None or found[1]:
        raise ReadError(path, f"{token.decode('latin-1')!r} is not an OFF keyword", "line 1")
    layout = found[0]
    start = header.end()
    check_fits(path, 12, len(data) - start, "the counts", f"byte {start}")
    order = ">"
    n_verts, n_faces, _ = struct.unpack_from(">3i", data, start)
    width = 3 + 3 * layout.normals + 4 * layout.colors + 2 * layout.uvs
    if n_verts < 0 or n_faces < 0 or 12 + 4 * (width * n_verts + 2 * n_faces) > len(data) - start:
        little = struct.unpack_from("<3i", data, start)
        if min(little[:2]) >= 0 and 4 * (width * little[0] + 2 * little[1]) <= len(data) - start:
            order, (n_verts, n_faces, _) = "<", little
    if n_verts < 0 or n_faces < 0:
        raise ReadError(path, f"negative counts ({n_verts} vertices, {n_faces} faces)", "header")
    offset = start + 12
    need = n_verts * width * 4
    check_fits(path, need, len(data) - offset, f"{n_verts} vertices", f"byte {offset}")
    table = np.frombuffer(data, dtype=order + "f4", count=n_verts * width, offset=offset)
    table = table.reshape(n_verts, width)
    offset += need
    dtype = _dtype(options, np.float32)
    sample = {"verts": table[:, :3].astype(dtype)}
    col = 3
    if layout.normals:
        sample["normals"] = table[:, col : col + 3].astype(dtype)
        col += 3
    if layout.colors:
        sample["colors"] = table[:, col : col + 4].astype(dtype)
        col += 4
    if layout.uvs:
        sample["uvs"] = table[:, col : col + 2].astype(dtype)
    if not options.allow_nonfinite:
        for name in ("verts", "normals", "colors", "uvs"):
            if name in sample:
                check_finite(path, _WHAT[name], sample[name], lambda k: f"vertex {k}")
    flat, sizes, colors, offset = _binary_faces(path, data, offset, n_faces, n_verts, order)
    if offset != len(data) and data[offset:].strip(b"\0\r\n \t"):
        raise ReadError(
            path,
            f"{len(data) - offset} bytes follow the last face: the counts do not describe the "
            "whole file",
            f"byte {offset}",
        )
    if colors is not None:
        colors = colors.astype(dtype)
        if not options.allow_nonfinite:
            check_finite(path, "face color", colors, lambda k: f"face {k}")
    if n_faces:
        _put_faces(sample, flat, sizes, colors, options)
    return sample


def _binary_faces(
    path: str | os.PathLike, data: bytes, offset: int, n_faces: int, n_verts: int, order: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """``(flat indices, sizes, colors or None, end offset)`` of the binary face records
    ``n v0 .. v(n-1) ncolors c0 .. c(ncolors-1)`` (int32, int32..., int32, float32...)."""
    check_fits(path, 8 * n_faces, len(data) - offset, f"{n_faces} faces", f"byte {offset}")
    if n_faces == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), None, offset
    i4 = struct.Struct(order + "i")
    # the first face's layout, tried for every face at once
    n = i4.unpack_from(data, offset)[0]
    fits = n >= 3 and offset + 8 + 4 * n <= len(data)
    nc = i4.unpack_from(data, offset + 4 + 4 * n)[0] if fits else -1
    if n >= 3 and nc in (0, 3, 4):
        record = np.dtype(
            [("n", order + "i4"), ("v", order + "i4", (n,)), ("nc", order + "i4")]
            + ([("c", order + "f4", (nc,))] if nc else [])
        )
        if n_faces * record.itemsize <= len(data) - offset:
            rows = np.frombuffer(data, dtype=record, count=n_faces, offset=offset)
            if (rows["n"] == n).all() and (rows["nc"] == nc).all():
                flat = rows["v"].astype(np.int64).reshape(-1)
                _check_binary_indices(path, flat, np.full(n_faces, n), n_verts)
                colors = rows["c"].astype(np.float32) if nc else None
                sizes = np.full(n_faces, n, dtype=np.int64)
                return flat, sizes, colors, offset + n_faces * record.itemsize
    # mixed sizes: one pass over the records to find where each starts, then gather
    starts = np.empty(n_faces, dtype=np.int64)
    sizes = np.empty(n_faces, dtype=np.int64)
    ncs = np.empty(n_faces, dtype=np.int64)
    pos, end = offset, len(data)
    for face in range(n_faces):
        if pos + 4 > end:
            raise ReadError(path, f"face {face} of {n_faces} starts past the end: truncated")
        n = i4.unpack_from(data, pos)[0]
        if n < 3:
            raise ReadError(path, f"face {face} has {n} corners; a face needs at least 3")
        if pos + 8 + 4 * n > end:
            raise ReadError(path, f"face {face} of {n_faces} runs past the end: truncated")
        nc = i4.unpack_from(data, pos + 4 + 4 * n)[0]
        if nc not in (0, 3, 4):
            raise ReadError(
                path, f"face {face} has {nc} color values; a face color is 0, 3 or 4 values"
            )
        starts[face], sizes[face], ncs[face] = pos, n, nc
        pos += 8 + 4 * n + 4 * nc
    if pos > end:
        raise ReadError(path, "the last face runs past the end of the file: truncated")
    if (ncs != ncs[0]).any():
        k = int(np.flatnonzero(ncs != ncs[0])[0])
        raise ReadError(path, f"face {k} has {int(ncs[k])} color values, face 0 has {int(ncs[0])}")
    buf = np.frombuffer(data, dtype=np.uint8)
    words = np.repeat(starts + 4, sizes) + 4 * (
        np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    )
    flat = buf[words[:, None] + np.arange(4)].copy().view(order + "i4").reshape(-1)
    flat = flat.astype(np.int64)
    _check_binary_indices(path, flat, sizes, n_verts)
    colors = None
    if ncs[0]:
        first = (starts + 8 + 4 * sizes)[:, None] + 4 * np.arange(int(ncs[0]))
        raw = buf[first.reshape(-1)[:, None] + np.arange(4)].copy().view(order + "f4")
        colors = raw.reshape(n_faces, int(ncs[0])).astype(np.float32)
    return flat, sizes, colors, pos


def _check_binary_indices(path, flat: np.ndarray, sizes: np.ndarray, n_verts: int) -> None:
    bad = np.flatnonzero((flat < 0) | (flat >= n_verts))
    if len(bad):
        k = int(bad[0])
        face = int(np.searchsorted(np.cumsum(sizes), k, side="right"))
        raise ReadError(
            path, f"face {face} refers to vertex {int(flat[k])}, outside [0, {n_verts})"
        )


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
    binary = _BINARY.match(data)
    if binary is None:
        return _ascii_triangles(path, data)
    start = binary.end()
    check_fits(path, 12, len(data) - start, "the counts", f"byte {start}")
    n_verts, n_faces, _ = struct.unpack_from(">3i", data, start)
    if n_verts < 0 or n_faces < 0 or 12 + 12 * n_verts > len(data) - start:
        n_verts, n_faces, _ = struct.unpack_from("<3i", data, start)
    if n_verts < 0 or n_faces < 0:
        raise ReadError(path, f"negative counts ({n_verts}, {n_faces})", "header")
    return n_verts, n_faces, None
