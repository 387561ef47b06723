"""Binary OFF (``[ST][C][N]OFF BINARY``): 32-bit big-endian ints and floats after the keyword
line (little-endian where the big-endian counts cannot fit the file, as older writers wrote).

Counts ``NVertices NFaces NEdges`` (int32), vertex rows of float32 (``x y z``, ``nx ny nz``
with N, ``r g b a`` with C, ``s t`` with ST), then per face ``n v0 .. v(n-1) ncolors
c0 .. c(ncolors-1)`` (int32 ..., float32 colors).
"""

from __future__ import annotations

import os
import re
import struct

import numpy as np

from hetload.io.off_common import FIELD_NAMES, float_dtype, keyword, put_faces
from hetload.io.options import LoadOptions
from hetload.io.read_error import ReadError, check_finite, check_fits

__all__ = ["count_binary_off", "read_binary_off"]


def read_binary_off(
    path: str | os.PathLike, data: bytes, header: re.Match, options: LoadOptions
) -> dict[str, np.ndarray]:
    token = data[: header.end()].split()[0]
    found = keyword(path, token, "line 1")
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
    dtype = float_dtype(options, np.float32)
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
                check_finite(path, FIELD_NAMES[name], sample[name], lambda k: f"vertex {k}")
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
        put_faces(sample, flat, sizes, colors, options)
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


def count_binary_off(path: str | os.PathLike, data: bytes, header: re.Match) -> tuple[int, int]:
    """``(n_verts, n_faces)`` from a binary file's counts."""
    start = header.end()
    check_fits(path, 12, len(data) - start, "the counts", f"byte {start}")
    n_verts, n_faces, _ = struct.unpack_from(">3i", data, start)
    if n_verts < 0 or n_faces < 0 or 12 + 12 * n_verts > len(data) - start:
        n_verts, n_faces, _ = struct.unpack_from("<3i", data, start)
    if n_verts < 0 or n_faces < 0:
        raise ReadError(path, f"negative counts ({n_verts}, {n_faces})", "header")
    return n_verts, n_faces
