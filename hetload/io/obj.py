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
_CONTINUATION = re.compile(rb"\\[ \t]*\n")


class _Irregular(Exception):
    """The fast path does not apply; the per-line parser takes over."""


@dataclass
class _Parsed:
    """What an OBJ file says, before indices are resolved (raw, 1-based or negative)."""

    v: np.ndarray  # float64 [Nv, 3]
    v_line: np.ndarray  # int64 [Nv], 0-based line of each vertex
    colors: np.ndarray | None  # float64 [Nv, 3] when every v line has r g b
    vt: np.ndarray  # float64 [Nt, 2]
    vn: np.ndarray  # float64 [Nn, 3]
    face_line: np.ndarray  # int64 [F], 0-based line of each face
    arity: np.ndarray  # int64 [F]
    cv: np.ndarray  # int64 [C] raw vertex index of each corner
    ct: np.ndarray | None  # int64 [C] raw uv index, None unless every corner has one
    cn: np.ndarray | None  # int64 [C] raw normal index, None unless every corner has one
    before: dict[str, np.ndarray]  # "v" / "vt" / "vn" -> int64 [F]: such lines before the face
    group_line: np.ndarray  # int64 [G] line of each o / g statement
    group_names: list[str]


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
    starts = starts[starts < len(arr) - 1]
    first, second = arr[starts], arr[starts + 1]
    if ((first == _SPACE) | (first == _TAB)).any():
        return count_obj(_LEADING_SPACE.sub(b"", data))
    spaced = (second == _SPACE) | (second == _TAB)
    verts = int(np.count_nonzero(spaced & (first == ord("v"))))
    face_starts = starts[spaced & (first == ord("f"))]
    if len(face_starts) == 0:
        return verts, 0, 0
    # a face line runs to its newline (or the end of the file)
    ends = np.searchsorted(starts, face_starts, side="right")
    face_ends = np.append(starts, len(arr))[ends]
    blank = arr <= _SPACE
    token = ~blank
    token[1:] &= blank[:-1]
    bounds = np.stack([face_starts, face_ends], axis=1).reshape(-1)
    if bounds[-1] == len(arr):
        bounds = bounds[:-1]  # reduceat's last segment runs to the end anyway
    tokens = np.add.reduceat(token, bounds, dtype=np.int64)[::2]
    if np.add.reduceat(token & (arr == ord("#")), bounds, dtype=np.int64)[::2].any():
        return verts, len(face_starts), None
    # tokens - 1 corners (the keyword is a token); a face of < 3 corners is refused by load
    triangles = int(np.maximum(tokens - 3, 0).sum())
    return verts, len(face_starts), triangles


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
    ends = np.flatnonzero(arr == _NL)
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
    lines = {name: np.flatnonzero(mask) for name, mask in kinds.items()}

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
    arity, corners, has_t, has_n = _faces(text, starts, ends, face_line)
    before = {
        name: np.searchsorted(lines[name], face_line).astype(np.int64) for name in ("v", "vt", "vn")
    }
    group_line = lines["group"]
    names = [text[starts[i] + 1 : ends[i]].strip().decode("utf-8", "replace") for i in group_line]
    return _Parsed(
        v=v[:, :3].reshape(-1, 3),
        v_line=lines["v"],
        colors=v[:, 3:6] if width == 6 else None,
        vt=vt[:, :2].reshape(-1, 2),
        vn=vn.reshape(-1, 3),
        face_line=face_line,
        arity=arity,
        cv=corners[:, 0],
        ct=corners[:, 1] if has_t else None,
        cn=corners[:, -1] if has_n else None,
        before=before,
        group_line=group_line,
        group_names=names,
    )


def _faces(
    text: bytes, starts: np.ndarray, ends: np.ndarray, face_line: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """``(arity int64 [F], corners int64 [C, k], has_uv, has_normal)`` of the ``f`` lines.

    The corner format (``v``, ``v/t``, ``v//n``, ``v/t/n``) is read from the first corner; the
    slash and ``//`` totals and every line's number count must then agree with it exactly.
    """
    if len(face_line) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 1), np.int64), False, False
    buf, line_starts = _gather(text, starts, ends, face_line)
    first = bytes(buf[line_starts[0] + 1 : line_starts[1] if len(line_starts) > 1 else None])
    corner = first.split()[:1]
    if not corner:
        raise _Irregular
    key = (corner[0].count(b"/"), corner[0].count(b"//"))
    if key not in _CORNER_FORMATS:
        raise _Irregular
    per_corner, has_t, has_n = _CORNER_FORMATS[key]
    slash = buf == ord("/")
    slashes = int(np.count_nonzero(slash))
    pairs = int(np.count_nonzero(slash[:-1] & slash[1:])) if slashes else 0
    buf[slash] = _SPACE
    # 0 is no OBJ index, so it can mark lines: the keyword 'f' becomes a 0 (a 0 in the file
    # makes the marks disagree, and the per-line parser refuses it)
    buf[line_starts] = ord("0")
    try:
        values = parse_numbers(buf.tobytes(), np.int64, None)
    except NotNumbers as exc:
        raise _Irregular from exc
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
    else:
        keep = np.ones(len(values), dtype=bool)
        keep[marks] = False
        numbers = values[keep]
    return arity, numbers.reshape(-1, per_corner), has_t, has_n


def _parse_lines(path: str | os.PathLike, text: bytes) -> _Parsed:
    """The plain per-line parser: every OBJ shape the fast path declines, with line numbers.

    Lines are read one at a time and numbers go straight into typed arrays (8 bytes each), so
    memory stays a small multiple of the file size: a list of line objects or of Python floats
    costs 5-10 times the bytes of the text it holds.
    """
    v, colors, vt, vn = (array("d") for _ in range(4))
    v_line, face_line, arity, cv, ct, cn, group_line = (array("q") for _ in range(7))
    widths: set[int] = set()
    before: dict[str, array] = {"v": array("q"), "vt": array("q"), "vn": array("q")}
    names: list[str] = []
    for number, raw in enumerate(io.BytesIO(text)):
        parts = raw.split()
        if not parts:
            continue
        comment = next((i for i, p in enumerate(parts) if p.startswith(b"#")), None)
        if comment is not None and parts[0] in (b"v", b"vt", b"vn", b"f"):
            parts = parts[:comment]  # a trailing comment ('1.#IND' is no comment)
        keyword, values = parts[0], parts[1:]
        where = f"line {number + 1}"
        if keyword == b"v":
            if len(values) not in (3, 4, 6):
                raise ReadError(
                    path, f"a 'v' line needs x y z [w | r g b], got {len(values)} values", where
                )
            widths.add(len(values))
            v_line.append(number)
            row = _floats(path, values, where)
            v.extend(row[:3])
            colors.extend(row[3:6] if len(row) == 6 else ())
        elif keyword == b"vt":
            if not 1 <= len(values) <= 3:
                raise ReadError(path, f"a 'vt' line needs u [v [w]], got {len(values)}", where)
            uv = _floats(path, values, where)
            vt.extend([*uv, 0.0][:2])
        elif keyword == b"vn":
            if len(values) != 3:
                raise ReadError(path, f"a 'vn' line needs x y z, got {len(values)} values", where)
            vn.extend(_floats(path, values, where))
        elif keyword == b"f":
            face_line.append(number)
            arity.append(len(values))
            for name, seen, width in (("v", v, 3), ("vt", vt, 2), ("vn", vn, 3)):
                before[name].append(len(seen) // width)
            for corner in values:
                fields = corner.split(b"/")
                if len(fields) > 3 or not fields[0]:
                    raise ReadError(path, f"bad face corner {corner!r}", where)
                cv.append(_int(path, fields[0], where))
                ct.append(_int(path, fields[1], where) if len(fields) > 1 and fields[1] else 0)
                cn.append(_int(path, fields[2], where) if len(fields) > 2 and fields[2] else 0)
        elif keyword in (b"o", b"g"):
            group_line.append(number)
            names.append(b" ".join(values).decode("utf-8", "replace"))

    def ints(values: array) -> np.ndarray:
        return np.frombuffer(values, dtype=np.int64)

    ct_arr, cn_arr = ints(ct), ints(cn)
    return _Parsed(
        v=np.frombuffer(v, dtype=np.float64).reshape(-1, 3),
        v_line=ints(v_line),
        colors=np.frombuffer(colors, dtype=np.float64).reshape(-1, 3) if widths == {6} else None,
        vt=np.frombuffer(vt, dtype=np.float64).reshape(-1, 2),
        vn=np.frombuffer(vn, dtype=np.float64).reshape(-1, 3),
        face_line=ints(face_line),
        arity=ints(arity),
        cv=ints(cv),
        ct=ct_arr if len(ct_arr) and (ct_arr != 0).all() else None,
        cn=cn_arr if len(cn_arr) and (cn_arr != 0).all() else None,
        before={name: ints(b) for name, b in before.items()},
        group_line=ints(group_line),
        group_names=names,
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
    if not -(2**63) <= value < 2**63:
        raise ReadError(path, f"index {value} is out of any array's range", where)
    return value


def _resolve(
    path: str | os.PathLike,
    raw: np.ndarray,
    before: np.ndarray,
    total: int,
    what: str,
    parsed: _Parsed,
) -> np.ndarray:
    """1-based / negative (relative) OBJ indices -> 0-based, every one checked."""
    if len(raw) and raw.min() > 0 and raw.max() <= total:
        return raw - 1
    base = np.repeat(before, parsed.arity)
    index = np.where(raw > 0, raw - 1, base + raw)
    bad = (raw == 0) | (index < 0) | (index >= total)
    if bad.any():
        corner = int(np.flatnonzero(bad)[0])
        face = int(np.searchsorted(np.cumsum(parsed.arity), corner, side="right"))
        value = int(raw[corner])
        reason = (
            "index 0 is not valid: OBJ indices start at 1"
            if value == 0
            else f"{what} index {value} is out of range for {total} {what} line(s)"
        )
        raise ReadError(path, reason, f"line {int(parsed.face_line[face]) + 1}")
    return index


def _assemble(
    path: str | os.PathLike, parsed: _Parsed, options: LoadOptions
) -> dict[str, np.ndarray]:
    sample: dict[str, np.ndarray] = {}
    with np.errstate(over="ignore"):
        verts = parsed.v.astype(options.dtype)
    if not options.allow_nonfinite:
        # after the cast: a finite double beyond float32's range becomes an infinity
        check_finite(path, "vertex", verts, lambda row: f"line {parsed.v_line[row] + 1}")
    sample["verts"] = verts
    if parsed.colors is not None:
        sample["colors"] = parsed.colors.astype(options.dtype)
    if len(parsed.vn):
        sample["normals"] = parsed.vn.astype(options.dtype)
    if len(parsed.vt):
        sample["uvs"] = parsed.vt.astype(options.dtype)
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
    if (parsed.arity == 3).all():
        corners, owner = None, None
    else:
        corners, owner = fan_triangles(parsed.arity)

    def triangles(per_corner: np.ndarray) -> np.ndarray:
        tri = per_corner.reshape(-1, 3) if corners is None else per_corner[corners]
        return tri.astype(index_dtype, copy=False)

    cv = _resolve(path, parsed.cv, parsed.before["v"], len(parsed.v), "vertex", parsed)
    sample["faces"] = triangles(cv)
    # corners that name uv / normal lines a file does not have (some exporters write
    # 'f 1//1' with no 'vn' at all) carry no attribute: the geometry is still exact
    if parsed.ct is not None and len(parsed.vt):
        ct = _resolve(path, parsed.ct, parsed.before["vt"], len(parsed.vt), "uv", parsed)
        sample["faces_uvs"] = triangles(ct)
    if parsed.cn is not None and len(parsed.vn):
        cn = _resolve(path, parsed.cn, parsed.before["vn"], len(parsed.vn), "normal", parsed)
        sample["faces_normals"] = triangles(cn)
    if len(parsed.group_line):
        groups = _face_groups(parsed)
        sample["face_groups"] = groups if owner is None else groups[owner]
    if options.polygons:
        sample["polygons"] = cv.astype(index_dtype)
        sample["polygon_sizes"] = parsed.arity.astype(np.int64)
    return sample


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
