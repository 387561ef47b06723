"""The OBJ fast path: no Python loop over lines.

Lines are classified by their first bytes with numpy, the bytes of each kind are gathered into
one buffer with the keyword blanked out, and numbers are parsed in one ``np.fromstring`` call per
kind. A file that does not fit that shape raises :class:`Irregular`, and the per-line parser
(``obj_lines.py``) reads it instead.
"""

from __future__ import annotations

import re

import numpy as np

from hetload.io.obj_lines import ParsedObj, group_name
from hetload.io.text import NotNumbers, parse_numbers, parse_table

__all__ = ["Irregular", "parse_fast"]

_SPACE, _TAB, _NL = 32, 9, 10
# corner formats as (slashes, '//' pairs) per corner -> integers per corner, has uv, has normal
_CORNER_FORMATS = {(0, 0): (1, False, False), (1, 0): (2, True, False), (2, 1): (2, False, True)}
_CORNER_FORMATS[(2, 0)] = (3, True, True)
_LEADING_SPACE = re.compile(rb"(?m)^[ \t]+")
# face lines parsed per np.fromstring call: the int64 numbers of one chunk are a bounded
# temporary, so a file of short face lines does not hold 8 bytes per digit at once
_FACE_CHUNK = 1 << 14


class Irregular(Exception):
    """The fast path does not apply; the per-line parser takes over."""


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
        raise Irregular from exc
    return table, table.shape[1]


def parse_fast(text: bytes) -> ParsedObj:
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
        raise Irregular  # polylines / points: rare, and the per-line parser returns them
    offset = _offset_dtype(len(starts))
    lines = {name: np.flatnonzero(mask).astype(offset) for name, mask in kinds.items()}
    del kinds, heads, c0, c1, c2

    v, width = _rows(text, starts, ends, lines["v"], 1)
    if width not in (0, 3, 4, 6):
        raise Irregular
    vt, t_width = _rows(text, starts, ends, lines["vt"], 2)
    if t_width not in (0, 2, 3):
        raise Irregular
    vn, n_width = _rows(text, starts, ends, lines["vn"], 2)
    if n_width not in (0, 3):
        raise Irregular

    face_line = lines["f"]
    arity, cv, ct, cn = _faces(text, starts, ends, face_line)
    group_line = lines["group"]
    names = [group_name(text[starts[i] + 1 : ends[i]].split()) for i in group_line]
    return ParsedObj(
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
        raise Irregular
    key = (head[0].count(b"/"), head[0].count(b"//"))
    if key not in _CORNER_FORMATS:
        raise Irregular
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


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True


def _every_corner_has(
    buf: np.ndarray, slash: np.ndarray, line_starts: np.ndarray, slashes: int
) -> bool:
    """Whether every corner token of the face lines in ``buf`` holds exactly ``slashes``
    slashes (each line's keyword token none): a per-token count, since per-line or per-file
    totals of a mixed line can match the first corner's format and shift every later number."""
    blank = _WHITESPACE[buf]
    first = ~blank
    first[1:] &= blank[:-1]
    token = np.cumsum(first) - 1
    per_token = np.bincount(token[slash], minlength=int(token[-1]) + 1)
    expected = np.full(len(per_token), slashes, dtype=np.int64)
    expected[token[line_starts]] = 0
    return bool((per_token == expected).all())


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
    if slashes and not _every_corner_has(buf, slash, line_starts, key[0]):
        raise Irregular  # mixed corner formats: totals can agree by chance ("1/1 2 3/1/1")
    buf[slash] = _SPACE
    del slash
    # 0 is no OBJ index, so it can mark lines: the keyword 'f' becomes a 0 (a 0 in the file
    # makes the marks disagree, and the per-line parser refuses it)
    buf[line_starts] = ord("0")
    try:
        values = parse_numbers(buf, np.int64, None)
    except NotNumbers as exc:
        raise Irregular from exc
    del buf, line_starts
    marks = np.flatnonzero(values == 0)
    if len(marks) != len(face_line) or marks[0] != 0:
        raise Irregular
    counts = np.diff(marks, append=len(values)) - 1
    arity = counts // per_corner
    n_corners = int(arity.sum())
    if (counts % per_corner).any() or (slashes, pairs) != (key[0] * n_corners, key[1] * n_corners):
        raise Irregular
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
