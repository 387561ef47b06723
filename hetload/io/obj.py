"""Wavefront OBJ: a vectorized reader that keeps the file's vertex array as written.

Faithful where trimesh is not: vertices keep the file's order and count (no splitting at uv or
normal seams, no dropping of unreferenced vertices); per-corner uv / normal indices are kept as
``faces_uvs`` / ``faces_normals`` (PyTorch3D's ``textures_idx``); ``o`` / ``g`` statements become
one sample with a per-triangle ``face_groups`` id.

Speed comes from never looping over lines in Python on the common path: lines are classified by
their first bytes with numpy, the bytes of each kind are gathered into one buffer with the
keyword blanked out, and numbers are parsed in one ``np.fromstring`` call per kind. Files that
do not fit that shape (mixed corner formats such as ``1/2 3//4``, mixed vertex widths, a number
numpy cannot parse) are re-read by a plain per-line parser, which is also what names the line
of an error.
"""

from __future__ import annotations

import io
import os
import re
from array import array
from dataclasses import dataclass

import numpy as np

from hetload.io.options import LoadOptions
from hetload.io.polygons import fan_triangles
from hetload.io.read_error import ReadError, check_finite
from hetload.io.text import NotNumbers, parse_numbers, parse_table

__all__ = ["count_obj", "read_obj"]

_SPACE, _TAB, _NL = 32, 9, 10
# corner formats as (slashes, '//' pairs) per corner -> integers per corner, has uv, has normal
_CORNER_FORMATS = {(0, 0): (1, False, False), (1, 0): (2, True, False), (2, 1): (2, False, True)}
_CORNER_FORMATS[(2, 0)] = (3, True, True)
_LEADING_SPACE = re.compile(rb"(?m)^[ \t]+")
# face lines parsed per np.fromstring call: the int64 numbers of one chunk are a bounded
# temporary, so a file of short face lines does not hold 8 bytes per digit at once
_FACE_CHUNK = 1 << 14
_CONTINUATION = re.compile(rb"\\[ \t]*\n")
#: a corner without a uv / normal index (the per-line parser; no file index can be this value)
MISSING = np.iinfo(np.int64).min


class _Irregular(Exception):
    """The fast path does not apply; the per-line parser takes over."""


@dataclass
class _Parsed:
    """What an OBJ file says, before indices are resolved (raw, 1-based or negative)."""

    v: np.ndarray  # float64 [Nv, 3]
    v_line: np.ndarray  # int64 [Nv], 0-based line of each vertex
    colors: np.ndarray | None  # float64 [Nv, 3] when every v line has r g b
    weights: np.ndarray | None  # float64 [Nv]: 'v x y z w' (1.0 where a line has no w)
    vt: np.ndarray  # float64 [Nt, 2]
    vn: np.ndarray  # float64 [Nn, 3]
    face_line: np.ndarray  # int [F], 0-based line of each face
    arity: np.ndarray  # int64 [F]
    cv: np.ndarray  # int32 | int64 [C] raw vertex index of each corner (contiguous, owned)
    ct: (
        np.ndarray | None
    )  # [C] raw uv index (MISSING where a corner has none), None if no corner has
    cn: np.ndarray | None  # [C] raw normal index, likewise
    kind_line: dict[str, np.ndarray]  # "v" / "vt" / "vn" -> int [K]: the line of each such line
    group_line: np.ndarray  # int [G] line of each o / g statement
    group_names: list[str]  # each name's words joined by one space ('g a  b' is 'g a b')
    # 'l' polylines and 'p' points: (line of each statement int64 [S], vertices per statement
    # int64 [S], raw vertex indices int64 [sum]); None where the file has none (the fast path)
    polylines: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def read_obj(path: str | os.PathLike, data: bytes, options: LoadOptions) -> dict[str, np.ndarray]:
    """Parse OBJ bytes into a sample (see :func:`hetload.io.load` for the fields)."""
    text = _normalize(path, data)
    try:
        parsed = _parse_fast(text)
    except _Irregular:
        parsed = _parse_lines(path, text)
    return _assemble(path, parsed, options)


def count_obj(data: bytes) -> tuple[int, int, int | None]:
    """``(vertices, faces, triangles)``: the ``v`` and ``f`` lines, and the triangles ``load``
    makes of the faces (corners - 2 per ``f`` line), counted without parsing a number.

    ``triangles`` is ``None`` where a face line holds a comment (the reader drops it, so the
    token count is no corner count).
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\\" in data:
        data = _CONTINUATION.sub(b" ", data)
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


def _normalize(path: str | os.PathLike, data: bytes) -> bytes:
    if not data or data.isspace():
        raise ReadError(path, "the file is empty")
    if b"\0" in data:
        raise ReadError(path, "the file holds NUL bytes: binary data, not a text OBJ")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\\" in data:
        data = _CONTINUATION.sub(b" ", data)
    if not data.endswith(b"\n"):
        data += b"\n"
    return data


def _line_table(text: bytes) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """Line starts / ends (exclusive) and the first three bytes of each line."""
    arr = np.frombuffer(text, dtype=np.uint8)
    # int32 offsets below 2 GiB: these per-line tables are most of the memory of short lines
    ends = np.flatnonzero(arr == _NL).astype(_offset_dtype(len(arr)))
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    if np.isin(arr[starts], (_SPACE, _TAB)).any():
        text = _LEADING_SPACE.sub(b"", text)
        return _line_table(text)
    # text ends with a newline, so clamping only touches bytes of blank (or 1-byte) lines
    last = len(arr) - 1
    heads = np.stack(
        [arr[starts], arr[np.minimum(starts + 1, last)], arr[np.minimum(starts + 2, last)]],
        axis=1,
    )
    return text, starts, ends, heads


def _offset_dtype(n: int) -> type:
    return np.int32 if n < 2**31 - 1 else np.int64


def _blank(c: np.ndarray) -> np.ndarray:
    return (c == _SPACE) | (c == _TAB) | (c == _NL)


def _gather(
    text: bytes, starts: np.ndarray, ends: np.ndarray, lines: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of ``lines``, each ending with ``\\n``, as a writable uint8 array, and where
    each line starts in it (int64 ``[L]``). Consecutive lines are one slice of the file, so a
    file written kind by kind costs one copy per kind."""
    breaks = np.flatnonzero(np.diff(lines) != 1) + 1
    run_first = np.concatenate([[0], breaks])
    run_last = np.concatenate([breaks - 1, [len(lines) - 1]])
    pieces = [text[starts[lines[a]] : ends[lines[b]] + 1] for a, b in zip(run_first, run_last)]
    buf = np.frombuffer(bytearray().join(pieces), dtype=np.uint8)
    run_len = np.array([len(p) for p in pieces], dtype=np.int64)
    run_base = np.concatenate([[0], np.cumsum(run_len)[:-1]])
    run_of_line = np.repeat(np.arange(len(pieces)), run_last - run_first + 1)
    line_starts = starts[lines] - starts[lines[run_first]][run_of_line] + run_base[run_of_line]
    return buf, line_starts


def _rows(
    text: bytes, starts: np.ndarray, ends: np.ndarray, lines: np.ndarray, keyword: int
) -> tuple[np.ndarray, int]:
    """Parse ``lines`` that must all hold the same number of numbers: ``(float64 [L, k], k)``."""
    if len(lines) == 0:
        return np.zeros((0, 0)), 0
    buf, line_starts = _gather(text, starts, ends, lines)
    for k in range(keyword):  # blank the keyword ('v', 'vt', 'vn') out of every line
        buf[line_starts + k] = _SPACE
    try:
        table = parse_table(buf.tobytes(), np.float64, len(lines))
    except NotNumbers as exc:
        raise _Irregular from exc
    return table, table.shape[1]


def _parse_fast(text: bytes) -> _Parsed:
    text, starts, ends, heads = _line_table(text)
    c0, c1, c2 = heads[:, 0], heads[:, 1], heads[:, 2]
    kinds = {
        "v": (c0 == ord("v")) & _blank(c1),
        "vt": (c0 == ord("v")) & (c1 == ord("t")) & _blank(c2),
        "vn": (c0 == ord("v")) & (c1 == ord("n")) & _blank(c2),
        "f": (c0 == ord("f")) & _blank(c1),
        "group": ((c0 == ord("o")) | (c0 == ord("g"))) & _blank(c1),
    }
    if (((c0 == ord("l")) | (c0 == ord("p"))) & _blank(c1)).any():
        raise _Irregular  # polylines / points: rare, and the per-line parser returns them
    offset = _offset_dtype(len(starts))
    lines = {name: np.flatnonzero(mask).astype(offset) for name, mask in kinds.items()}
    del kinds, heads, c0, c1, c2

    v, width = _rows(text, starts, ends, lines["v"], 1)
    if width not in (0, 3, 4, 6):
        raise _Irregular
    vt, t_width = _rows(text, starts, ends, lines["vt"], 2)
    if t_width not in (0, 2, 3):
        raise _Irregular
    vn, n_width = _rows(text, starts, ends, lines["vn"], 2)
    if n_width not in (0, 3):
        raise _Irregular

    face_line = lines["f"]
    arity, cv, ct, cn = _faces(text, starts, ends, face_line)
    group_line = lines["group"]
    names = [_group_name(text[starts[i] + 1 : ends[i]].split()) for i in group_line]
    return _Parsed(
        v=v[:, :3].reshape(-1, 3),
        v_line=lines["v"],
        colors=v[:, 3:6] if width == 6 else None,
        weights=v[:, 3] if width == 4 else None,
        vt=vt[:, :2].reshape(-1, 2),
        vn=vn.reshape(-1, 3),
        face_line=face_line,
        arity=arity,
        cv=cv,
        ct=ct,
        cn=cn,
        kind_line={name: lines[name] for name in ("v", "vt", "vn")},
        group_line=group_line,
        group_names=names,
    )


def _faces(
    text: bytes, starts: np.ndarray, ends: np.ndarray, face_line: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(arity int64 [F], cv, ct, cn)`` of the ``f`` lines: raw vertex / uv / normal index of
    each corner, int32 or int64 ``[C]`` each (``ct`` / ``cn`` ``None`` where the corners have none).

    The corner format (``v``, ``v/t``, ``v//n``, ``v/t/n``) is read from the first corner; the
    slash and ``//`` totals and every line's number count must then agree with it exactly.
    Lines are parsed ``_FACE_CHUNK`` at a time.
    """
    if len(face_line) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), None, None
    head = text[starts[face_line[0]] + 1 : ends[face_line[0]]].split()[:1]
    if not head:
        raise _Irregular
    key = (head[0].count(b"/"), head[0].count(b"//"))
    if key not in _CORNER_FORMATS:
        raise _Irregular
    per_corner, has_t, has_n = _CORNER_FORMATS[key]
    arities: list[np.ndarray] = []
    columns: list[list[np.ndarray]] = [[] for _ in range(per_corner)]
    for first in range(0, len(face_line), _FACE_CHUNK):
        lines = face_line[first : first + _FACE_CHUNK]
        arity, chunk_columns = _face_chunk(text, starts, ends, lines, key)
        arities.append(arity)
        for column, part in zip(columns, chunk_columns):
            if len(face_line) > _FACE_CHUNK and len(part) and _fits_int32(part):
                part = part.astype(np.int32)  # half the bytes of int64 one-digit indices
            column.append(part)

    def joined(parts: list[np.ndarray]) -> np.ndarray:
        return parts[0] if len(parts) == 1 else np.concatenate(parts)  # int64 if any is

    arity = joined(arities)
    cv = joined(columns[0])
    ct = joined(columns[1]) if has_t else None
    cn = joined(columns[-1]) if has_n else None
    return arity, cv, ct, cn


def _fits_int32(values: np.ndarray) -> bool:
    return bool(values.min() >= -(2**31) and values.max() < 2**31)


def _face_chunk(
    text: bytes, starts: np.ndarray, ends: np.ndarray, face_line: np.ndarray, key: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(arity int64 [F], columns)`` of some ``f`` lines whose corners must all have the format
    ``key`` (slashes, ``//`` pairs per corner): ``columns`` holds one contiguous int64 ``[C]``
    per number of a corner."""
    per_corner = _CORNER_FORMATS[key][0]
    buf, line_starts = _gather(text, starts, ends, face_line)
    slash = buf == ord("/")
    slashes = int(np.count_nonzero(slash))
    pairs = int(np.count_nonzero(slash[:-1] & slash[1:])) if slashes else 0
    buf[slash] = _SPACE
    del slash
    # 0 is no OBJ index, so it can mark lines: the keyword 'f' becomes a 0 (a 0 in the file
    # makes the marks disagree, and the per-line parser refuses it)
    buf[line_starts] = ord("0")
    try:
        values = parse_numbers(buf, np.int64, None)
    except NotNumbers as exc:
        raise _Irregular from exc
    del buf, line_starts
    marks = np.flatnonzero(values == 0)
    if len(marks) != len(face_line) or marks[0] != 0:
        raise _Irregular
    counts = np.diff(marks, append=len(values)) - 1
    arity = counts // per_corner
    n_corners = int(arity.sum())
    if (counts % per_corner).any() or (slashes, pairs) != (key[0] * n_corners, key[1] * n_corners):
        raise _Irregular
    width = int(counts[0])
    if (counts == width).all():
        numbers = values.reshape(len(face_line), width + 1)[:, 1:]
        return arity, [numbers[:, j::per_corner].reshape(-1) for j in range(per_corner)]
    keep = np.ones(len(values), dtype=bool)
    keep[marks] = False
    numbers = values[keep]
    if per_corner == 1:
        return arity, [numbers]
    return arity, [numbers[j::per_corner].copy() for j in range(per_corner)]


def _group_name(words: list[bytes]) -> str:
    return b" ".join(words).decode("utf-8", "replace")


def _parse_lines(path: str | os.PathLike, text: bytes) -> _Parsed:
    """The plain per-line parser: every OBJ shape the fast path declines, with line numbers.

    Lines are read one at a time and numbers go straight into typed arrays (8 bytes each), so
    memory stays a small multiple of the file size: a list of line objects or of Python floats
    costs 5-10 times the bytes of the text it holds.
    """
    v, colors, weights, vt, vn = (array("d") for _ in range(5))
    v_line, vt_line, vn_line, face_line, arity, cv, ct, cn, group_line = (
        array("q") for _ in range(9)
    )
    # 'l' and 'p' statements: line, vertex count, raw vertex indices
    other: dict[bytes, tuple[array, array, array]] = {
        b"l": (array("q"), array("q"), array("q")),
        b"p": (array("q"), array("q"), array("q")),
    }
    widths: dict[int, int] = {}  # values per 'v' line -> the first such line
    names: list[str] = []
    for number, raw in enumerate(io.BytesIO(text)):
        parts = raw.split()
        if not parts:
            continue
        comment = next((i for i, p in enumerate(parts) if p.startswith(b"#")), None)
        if comment is not None and parts[0] in (b"v", b"vt", b"vn", b"f", b"l", b"p"):
            parts = parts[:comment]  # a trailing comment ('1.#IND' is no comment)
        keyword, values = parts[0], parts[1:]
        where = f"line {number + 1}"
        if keyword == b"v":
            if len(values) not in (3, 4, 6):
                raise ReadError(
                    path, f"a 'v' line needs x y z [w | r g b], got {len(values)} values", where
                )
            widths.setdefault(len(values), number)
            v_line.append(number)
            row = _floats(path, values, where)
            v.extend(row[:3])
            colors.extend(row[3:6] if len(row) == 6 else ())
            weights.append(row[3] if len(row) == 4 else 1.0)  # the OBJ default w
        elif keyword == b"vt":
            if not 1 <= len(values) <= 3:
                raise ReadError(path, f"a 'vt' line needs u [v [w]], got {len(values)}", where)
            uv = _floats(path, values, where)
            vt_line.append(number)
            vt.extend([*uv, 0.0][:2])
        elif keyword == b"vn":
            if len(values) != 3:
                raise ReadError(path, f"a 'vn' line needs x y z, got {len(values)} values", where)
            vn_line.append(number)
            vn.extend(_floats(path, values, where))
        elif keyword == b"f":
            face_line.append(number)
            arity.append(len(values))
            for corner in values:
                fields = corner.split(b"/")
                if len(fields) > 3 or not fields[0]:
                    raise ReadError(path, f"bad face corner {corner!r}", where)
                cv.append(_int(path, fields[0], where))
                has_t, has_n = len(fields) > 1 and fields[1], len(fields) > 2 and fields[2]
                ct.append(_int(path, fields[1], where) if has_t else MISSING)
                cn.append(_int(path, fields[2], where) if has_n else MISSING)
        elif keyword in (b"o", b"g"):
            group_line.append(number)
            names.append(_group_name(values))
        elif keyword in other:
            least = 2 if keyword == b"l" else 1
            if len(values) < least:
                raise ReadError(
                    path,
                    f"a {keyword.decode()!r} line needs at least {least} vertices, "
                    f"got {len(values)}",
                    where,
                )
            lines, counts, indices = other[keyword]
            lines.append(number)
            counts.append(len(values))
            for corner in values:  # 'l' corners may be 'v/vt': the vertex is the first number
                fields = corner.split(b"/")
                if len(fields) > 2 or not fields[0]:
                    raise ReadError(path, f"bad {keyword.decode()!r} vertex {corner!r}", where)
                indices.append(_int(path, fields[0], where))

    def ints(values: array) -> np.ndarray:
        return np.frombuffer(values, dtype=np.int64)

    if 6 in widths and len(widths) > 1:
        # keeping colors for some vertices only would misalign them; dropping them all would
        # lose data without a word
        line = min(n for w, n in widths.items() if w != 6)
        raise ReadError(
            path,
            f"some 'v' lines have colors (x y z r g b, line {widths[6] + 1}) and others not",
            f"line {line + 1}",
        )

    def some(values: np.ndarray) -> np.ndarray | None:
        return values if len(values) and (values != MISSING).any() else None

    def statements(key: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        lines, counts, indices = other[key]
        return (ints(lines), ints(counts), ints(indices)) if len(lines) else None

    return _Parsed(
        v=np.frombuffer(v, dtype=np.float64).reshape(-1, 3),
        v_line=ints(v_line),
        colors=np.frombuffer(colors, dtype=np.float64).reshape(-1, 3) if 6 in widths else None,
        weights=np.frombuffer(weights, dtype=np.float64) if 4 in widths else None,
        vt=np.frombuffer(vt, dtype=np.float64).reshape(-1, 2),
        vn=np.frombuffer(vn, dtype=np.float64).reshape(-1, 3),
        face_line=ints(face_line),
        arity=ints(arity),
        cv=ints(cv),
        ct=some(ints(ct)),
        cn=some(ints(cn)),
        kind_line={"v": ints(v_line), "vt": ints(vt_line), "vn": ints(vn_line)},
        group_line=ints(group_line),
        group_names=names,
        polylines=statements(b"l"),
        points=statements(b"p"),
    )


def _floats(path: str | os.PathLike, values: list[bytes], where: str) -> list[float]:
    try:
        return [float(x) for x in values]
    except ValueError:
        bad = next(x for x in values if not _is_float(x))
        raise ReadError(
            path, f"{bad.decode('utf-8', 'replace')!r} is not a number", where
        ) from None


def _is_float(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _int(path: str | os.PathLike, token: bytes, where: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise ReadError(
            path, f"{token.decode('utf-8', 'replace')!r} is not an integer index", where
        ) from None
    if not MISSING < value < 2**63:
        raise ReadError(path, f"index {value} is out of any array's range", where)
    return value


def _resolve(
    path: str | os.PathLike,
    raw: np.ndarray,
    kind_line: np.ndarray,
    owner_line: np.ndarray,
    arity: np.ndarray,
    what: str,
) -> np.ndarray:
    """1-based / negative (relative) OBJ indices -> 0-based, every one checked; ``MISSING``
    (a corner without this attribute) -> -1, as PyTorch3D pads ``textures_idx``.

    Args:
        raw: int [C], the indices as written, statement after statement; reused (the parser's
            own array) when every index is positive.
        kind_line: int [K], the line of each line of the kind indexed (``v``, ``vt``, ``vn``).
        owner_line: int [S], the line of each statement (``f``, ``l``, ``p``).
        arity: int64 [S], the indices of each statement.
    """
    total = len(kind_line)
    if len(raw) and raw.min() > 0 and raw.max() <= total:
        raw -= 1
        return raw
    # a negative index counts back from its statement's line: the lines of its kind before it
    base = np.repeat(np.searchsorted(kind_line, owner_line), arity)
    index = np.where(raw > 0, raw - 1, base + raw)
    missing = raw == MISSING
    index[missing] = -1
    bad = ~missing & ((raw == 0) | (index < 0) | (index >= total))
    if bad.any():
        corner = int(np.flatnonzero(bad)[0])
        owner = int(np.searchsorted(np.cumsum(arity), corner, side="right"))
        value = int(raw[corner])
        reason = (
            "index 0 is not valid: OBJ indices start at 1"
            if value == 0
            else f"{what} index {value} is out of range for {total} {what} line(s)"
        )
        raise ReadError(path, reason, f"line {int(owner_line[owner]) + 1}")
    return index


def _assemble(
    path: str | os.PathLike, parsed: _Parsed, options: LoadOptions
) -> dict[str, np.ndarray]:
    sample: dict[str, np.ndarray] = {}
    dtype = options.float_dtype(np.float64)  # "as stored": text numbers are parsed as doubles

    def floats(field: str, values: np.ndarray, lines: np.ndarray) -> None:
        with np.errstate(over="ignore"):
            values = values.astype(dtype)
        if not options.allow_nonfinite:
            # after the cast: a finite double beyond float32's range becomes an infinity
            where = lambda row: f"line {lines[row] + 1}"  # noqa: E731
            check_finite(path, f"field {field!r}: row", values, where)
        sample[field] = values

    floats("verts", parsed.v, parsed.v_line)
    if parsed.colors is not None:
        floats("colors", parsed.colors, parsed.v_line)
    if parsed.weights is not None:
        # the w of 'v x y z w' (a rational curve's weight in the OBJ spec): kept as written,
        # never divided into x y z (assimp divides; tinyobjloader keeps it apart, as here)
        floats("vertex_weights", parsed.weights, parsed.v_line)
    if len(parsed.vn):
        floats("normals", parsed.vn, parsed.kind_line["vn"])
    if len(parsed.vt):
        floats("uvs", parsed.vt, parsed.kind_line["vt"])
    _lines_and_points(path, parsed, sample, options)
    if len(parsed.face_line) == 0:
        return sample

    short = np.flatnonzero(parsed.arity < 3)
    if len(short):
        face = int(short[0])
        raise ReadError(
            path,
            f"a face needs at least 3 corners, got {int(parsed.arity[face])}",
            f"line {int(parsed.face_line[face]) + 1}",
        )
    index_dtype = options.index_dtype
    k = int(parsed.arity[0])
    # one arity (all triangles, all quads...): the fan is strided copies, no index arrays
    uniform = bool((parsed.arity == k).all())
    corners = None if uniform else fan_triangles(parsed.arity)[0]

    def triangles(per_corner: np.ndarray) -> np.ndarray:
        if not uniform:
            return per_corner[corners].astype(index_dtype, copy=False)
        if k == 3:
            return per_corner.reshape(-1, 3).astype(index_dtype, copy=False)
        polygon = per_corner.reshape(-1, k)
        tri = np.empty((len(polygon), k - 2, 3), dtype=index_dtype)
        tri[:, :, 0] = polygon[:, :1]
        tri[:, :, 1] = polygon[:, 1:-1]
        tri[:, :, 2] = polygon[:, 2:]
        return tri.reshape(-1, 3)

    def resolve(raw: np.ndarray, kind: str, what: str) -> np.ndarray:
        lines = parsed.kind_line[kind]
        return _resolve(path, raw, lines, parsed.face_line, parsed.arity, what)

    cv = resolve(parsed.cv, "v", "vertex")
    sample["faces"] = triangles(cv)
    if options.polygons:
        sample["polygons"] = cv.astype(index_dtype)
        sample["polygon_sizes"] = parsed.arity.astype(np.int64)
    parsed.cv = cv = None  # the corners are in "faces" now
    # corners that name uv / normal lines a file does not have (some exporters write
    # 'f 1//1' with no 'vn' at all) carry no attribute: the geometry is still exact. Where only
    # some corners have one, the others hold -1 (the uvs / normals are then per corner, never
    # per vertex)
    if parsed.ct is not None and len(parsed.vt):
        ct = resolve(parsed.ct, "vt", "uv")
        parsed.ct = None
        sample["faces_uvs"] = triangles(ct)
        del ct
    if parsed.cn is not None and len(parsed.vn):
        cn = resolve(parsed.cn, "vn", "normal")
        parsed.cn = None
        sample["faces_normals"] = triangles(cn)
        del cn
    if len(parsed.group_line):
        groups = _face_groups(parsed)
        if not uniform:
            groups = groups[fan_triangles(parsed.arity)[1]]
        elif k > 3:
            groups = np.repeat(groups, k - 2)
        sample["face_groups"] = groups
    return sample


def _lines_and_points(
    path: str | os.PathLike, parsed: _Parsed, sample: dict, options: LoadOptions
) -> None:
    """``lines`` ``[E, 2]``: each segment of each ``l`` polyline (``l 1 2 3`` is two); and
    ``point_indices`` ``[P]``: the vertices of the ``p`` statements, in file order."""
    v_line = parsed.kind_line["v"]
    if parsed.polylines is not None:
        lines, counts, raw = parsed.polylines
        index = _resolve(path, raw, v_line, lines, counts, "vertex")
        # segment (i, i + 1) of every polyline: every index but each polyline's last
        last = np.cumsum(counts) - 1
        first = np.ones(len(index), dtype=bool)
        first[last] = False
        starts = np.flatnonzero(first)
        sample["lines"] = np.stack([index[starts], index[starts + 1]], axis=1).astype(
            options.index_dtype
        )
    if parsed.points is not None:
        lines, counts, raw = parsed.points
        index = _resolve(path, raw, v_line, lines, counts, "vertex")
        sample["point_indices"] = index.astype(options.index_dtype)


def _face_groups(parsed: _Parsed) -> np.ndarray:
    """int64 [F]: the group of each face, numbering group names in order of first use.

    Faces before the first ``o`` / ``g`` statement form a group of their own (the default
    group), numbered like any other.
    """
    statement = np.searchsorted(parsed.group_line, parsed.face_line, side="right") - 1
    names = ["", *parsed.group_names]
    used, first_face = np.unique(statement, return_index=True)
    ids: dict[str, int] = {}
    table = np.zeros(len(names), dtype=np.int64)
    for s in used[np.argsort(first_face)]:
        table[s + 1] = ids.setdefault(names[s + 1], len(ids))
    return table[statement + 1]
