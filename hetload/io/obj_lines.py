"""The OBJ per-line parser, and what either OBJ parser returns (:class:`ParsedObj`).

The per-line parser reads every OBJ shape the fast path (``obj_fast.py``) declines: mixed corner
formats, mixed vertex widths, ``l`` / ``p`` statements, a number numpy cannot parse; and it is
what names the line of an error.
"""

from __future__ import annotations

import io
import os
from array import array
from dataclasses import dataclass

import numpy as np

from hetload.io.read_error import ReadError

__all__ = ["MISSING", "ParsedObj", "group_name", "parse_lines"]

#: a corner without a uv / normal index (the per-line parser; no file index can be this value)
MISSING = np.iinfo(np.int64).min


@dataclass
class ParsedObj:
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
    # [C] raw uv / normal index of each corner, MISSING where a corner has none; None where
    # no corner has one
    ct: np.ndarray | None
    cn: np.ndarray | None
    kind_line: dict[str, np.ndarray]  # "v" / "vt" / "vn" -> int [K]: the line of each such line
    group_line: np.ndarray  # int [G] line of each o / g statement
    group_names: list[str]  # each name's words joined by one space ('g a  b' is 'g a b')
    # 'l' polylines and 'p' points: (line of each statement int64 [S], vertices per statement
    # int64 [S], raw vertex indices int64 [sum]); None where the file has none (the fast path)
    polylines: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def group_name(words: list[bytes]) -> str:
    """An ``o`` / ``g`` name: its words joined by one space, as both parsers compare them."""
    return b" ".join(words).decode("utf-8", "replace")


def parse_lines(path: str | os.PathLike, text: bytes) -> ParsedObj:
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
            names.append(group_name(values))
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

    return ParsedObj(
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
