"""Wavefront OBJ: a vectorized reader that keeps the file's vertex array as written.

Faithful where trimesh is not: vertices keep the file's order and count (no splitting at uv or
normal seams, no dropping of unreferenced vertices); per-corner uv / normal indices are kept as
``faces_uvs`` / ``faces_normals`` (PyTorch3D's ``textures_idx``); ``o`` / ``g`` statements become
one sample with a per-triangle ``face_groups`` id.

Two parsers fill one :class:`~hetload.io.obj_lines.ParsedObj`: the vectorized fast path
(``obj_fast.py``) and, for the files it declines, the per-line parser (``obj_lines.py``), which
also names the line of an error. This module resolves indices and assembles the sample;
``obj_count.py`` counts for ``scan``.
"""

from __future__ import annotations

import os

import numpy as np

from hetload.io.obj_count import CONTINUATION, count_obj
from hetload.io.obj_fast import Irregular, parse_fast
from hetload.io.obj_lines import MISSING, ParsedObj, parse_lines
from hetload.io.options import LoadOptions
from hetload.io.polygons import fan_triangles
from hetload.io.read_error import ReadError, check_finite

__all__ = ["count_obj", "read_obj"]


def read_obj(path: str | os.PathLike, data: bytes, options: LoadOptions) -> dict[str, np.ndarray]:
    """Parse OBJ bytes into a sample (see :func:`hetload.io.load` for the fields)."""
    text = _normalize(path, data)
    try:
        parsed = parse_fast(text)
    except Irregular:
        parsed = parse_lines(path, text)
    return _assemble(path, parsed, options)


def _normalize(path: str | os.PathLike, data: bytes) -> bytes:
    if not data or data.isspace():
        raise ReadError(path, "the file is empty")
    if b"\0" in data:
        raise ReadError(path, "the file holds NUL bytes: binary data, not a text OBJ")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\\" in data:
        data = CONTINUATION.sub(b" ", data)
    if not data.endswith(b"\n"):
        data += b"\n"
    return data


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
    path: str | os.PathLike, parsed: ParsedObj, options: LoadOptions
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
    path: str | os.PathLike, parsed: ParsedObj, sample: dict, options: LoadOptions
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


def _face_groups(parsed: ParsedObj) -> np.ndarray:
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
