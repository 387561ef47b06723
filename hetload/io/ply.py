"""PLY (ascii, binary little- and big-endian): every element and property, read with numpy.

The header (``ply_header.py``) says which body reader runs (``ply_ascii.py``,
``ply_binary.py``); this module turns their per-element columns into a sample: ``verts``,
``faces`` (polygons fan-triangulated, tristrips unrolled), normals, colors, uvs, and every other
property under its own name.
"""

from __future__ import annotations

import os

import numpy as np

from hetload.io.options import LoadOptions
from hetload.io.ply_ascii import read_ascii
from hetload.io.ply_binary import read_binary
from hetload.io.ply_header import FACE_LISTS, FORMATS, Element, PlyHeader, Values, read_ply_header
from hetload.io.polygons import fan_triangles
from hetload.io.read_error import ReadError, check_finite

__all__ = ["FACE_LISTS", "PlyHeader", "read_ply", "read_ply_header"]

_UV_NAMES = (("u", "v"), ("s", "t"), ("texture_u", "texture_v"), ("texture_s", "texture_t"))


def read_ply(path: str | os.PathLike, data: bytes, options: LoadOptions) -> dict[str, np.ndarray]:
    """Parse PLY bytes into a sample (see :func:`hetload.io.load` for the fields)."""
    header = read_ply_header(path, data)
    if header.fmt == "ascii":
        values = read_ascii(path, data, header)
    else:
        values = read_binary(path, data, header, FORMATS[header.fmt])
    return _assemble(path, header, values, options)


def _assemble(
    path: str | os.PathLike, header: PlyHeader, values: list[Values], options: LoadOptions
) -> dict[str, np.ndarray]:
    by_name = {e.name: (e, v) for e, v in zip(header.elements, values)}
    sample: dict[str, np.ndarray] = {}
    if "vertex" in by_name:
        _vertex(path, *by_name["vertex"], sample, options)
    else:
        sample["verts"] = np.zeros((0, 3), dtype=options.float_dtype(np.float32))
    n_verts = len(sample["verts"])

    flat = np.zeros(0, dtype=np.int64)
    sizes = np.zeros(0, dtype=np.int64)
    per_face: list[str] = []
    if "face" in by_name:
        flat, sizes, per_face = _face(path, *by_name["face"], sample, n_verts, options)
    if "tristrips" in by_name:
        strips = _tristrips(path, *by_name["tristrips"], n_verts)
        if len(strips) and len(sizes):
            raise ReadError(path, "both 'face' and 'tristrips' hold faces; expected one of them")
        if len(strips):
            flat, sizes = strips.reshape(-1), np.full(len(strips), 3, dtype=np.int64)
    if len(sizes) and (sizes == 3).all():
        sample["faces"] = flat.reshape(-1, 3).astype(options.index_dtype, copy=False)
        if "faces_uvs" in sample:
            sample["faces_uvs"] = sample["faces_uvs"].reshape(-1, 3).astype(options.index_dtype)
    elif len(sizes):
        corners, owner = fan_triangles(sizes)
        sample["faces"] = flat[corners].astype(options.index_dtype)
        for key in per_face:
            sample[key] = sample[key][owner]
        if "faces_uvs" in sample:
            sample["faces_uvs"] = sample["faces_uvs"][corners].astype(options.index_dtype)
    if len(sizes) and options.polygons:
        sample["polygons"] = flat.astype(options.index_dtype)
        sample["polygon_sizes"] = np.array(sizes, dtype=np.int64)
    for element, vals in zip(header.elements, values):
        if element.name in ("vertex", "face", "tristrips"):
            continue
        for p in element.props:
            _put_extra(path, sample, f"{element.name}_{p.name}", vals[p.name], element, options)
    return sample


def _native(values: np.ndarray) -> np.ndarray:
    """A writable copy in native byte order (file views may be big-endian and read-only)."""
    return np.array(values, dtype=values.dtype.newbyteorder("="))


def _columns(vals: Values, names: tuple[str, ...] | list[str], dtype) -> np.ndarray:
    """Scalar properties side by side, ``[count, len(names)]``, converted in one pass each."""
    first = vals[names[0]]
    out = np.empty((len(first), len(names)), dtype=dtype)
    for i, name in enumerate(names):
        out[:, i] = vals[name]
    return out


def _put_extra(
    path: str | os.PathLike, sample: dict, key: str, value, element: Element, options: LoadOptions
) -> None:
    """A property as its own field, in its stored type; a list as flat items plus sizes."""
    if isinstance(value, tuple):
        items = sample[key] = _native(value[0]).reshape(-1)
        sizes = sample[key + "_sizes"] = np.array(value[1], dtype=np.int64)
        ends = np.cumsum(sizes)
        _check_finite(
            path, options, key, items, element, lambda k: np.searchsorted(ends, k, "right")
        )
    else:
        sample[key] = _native(value)
        _check_finite(path, options, key, sample[key], element)


def _check_finite(
    path: str | os.PathLike,
    options: LoadOptions,
    field: str,
    values: np.ndarray,
    element: Element,
    row_of=lambda k: k,
) -> None:
    """NaN / infinity in a float field is an error naming the field and the element's row,
    unless ``allow_nonfinite``; ``row_of(k)`` maps a row of ``values`` to the element's row."""
    if options.allow_nonfinite or values.dtype.kind != "f":
        return
    check_finite(
        path,
        f"field {field!r}: row",
        values,
        lambda k: f"element {element.name!r} row {int(row_of(k))}",
    )


def _vertex(
    path: str | os.PathLike, element: Element, vals: Values, sample: dict, options: LoadOptions
) -> None:
    names = {p.name for p in element.props}
    if not {"x", "y", "z"} <= names:
        raise ReadError(path, "element 'vertex' has no x, y, z properties", "header")

    def floats(field: str, columns: tuple[str, ...] | list[str]) -> None:
        dtype = options.float_dtype(*(vals[c].dtype for c in columns))
        # checked after the cast: a finite double beyond float32's range becomes an infinity
        sample[field] = _columns(vals, columns, dtype)
        _check_finite(path, options, field, sample[field], element)

    floats("verts", ("x", "y", "z"))
    used = {"x", "y", "z"}
    if {"nx", "ny", "nz"} <= names:
        floats("normals", ("nx", "ny", "nz"))
        used |= {"nx", "ny", "nz"}
    channels = [c for c in ("red", "green", "blue", "alpha") if c in names]
    if {"red", "green", "blue"} <= names:
        kind = np.result_type(*(vals[c].dtype for c in channels))
        if kind.kind == "f":
            floats("colors", channels)
        else:
            sample["colors"] = _columns(vals, channels, kind.newbyteorder("="))
        used |= set(channels)
    for u, v in _UV_NAMES:
        if {u, v} <= names:
            floats("uvs", (u, v))
            used |= {u, v}
            break
    for p in element.props:
        if p.name not in used:
            clash = p.name in _RESERVED or p.name in sample
            key = f"vertex_{p.name}" if clash else p.name
            _put_extra(path, sample, key, vals[p.name], element, options)


_RESERVED = {
    "verts", "faces", "normals", "colors", "uvs", "faces_uvs", "faces_normals", "face_groups",
    "polygons", "polygon_sizes", "points", "edges", "label", "path", "key", "lines",
    "point_indices", "vertex_weights",
}  # fmt: skip


def _face(
    path: str | os.PathLike,
    element: Element,
    vals: Values,
    sample: dict,
    n_verts: int,
    options: LoadOptions,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The polygons ``(flat int64, sizes int64)`` of the face element, and the names of the
    per-face fields put into ``sample`` (to be repeated per triangle); nothing for 0 faces."""
    index_name = next((n for n in FACE_LISTS if isinstance(vals.get(n), tuple)), None)
    if index_name is None:
        raise ReadError(path, "element 'face' has no vertex_indices list", "header")
    flat, sizes = vals[index_name]  # type: ignore[misc]
    flat = _indices(path, flat, "face")
    sizes = sizes.astype(np.int64, copy=False)
    if element.count == 0:
        return flat, sizes, []
    small = np.flatnonzero(sizes < 3) if sizes.min() < 3 else ()
    if len(small):
        raise ReadError(
            path,
            f"face {int(small[0])} has {int(sizes[small[0]])} corners; a face needs at least 3",
            "element 'face'",
        )
    _check_indices(path, flat, sizes, n_verts, "face")
    scalars = {p.name for p in element.props if p.count_dtype is None}
    per_face: list[str] = []
    used = {index_name}
    channels = [c for c in ("red", "green", "blue", "alpha") if c in scalars]
    if {"red", "green", "blue"} <= scalars:
        kind = np.result_type(*(vals[c].dtype for c in channels)).newbyteorder("=")
        sample["face_colors"] = _columns(vals, channels, kind)
        _check_finite(path, options, "face_colors", sample["face_colors"], element)
        per_face.append("face_colors")
        used |= set(channels)
    texcoord = vals.get("texcoord")
    if isinstance(texcoord, tuple) and "uvs" not in sample and (texcoord[1] == 2 * sizes).all():
        # per-corner uvs (MeshLab / VCG): one uv row per corner; faces_uvs index those rows
        uvs = texcoord[0].astype(options.float_dtype(texcoord[0].dtype)).reshape(-1, 2)
        ends = np.cumsum(sizes)
        _check_finite(
            path, options, "uvs", uvs, element, lambda k: np.searchsorted(ends, k, "right")
        )
        sample["uvs"] = uvs
        sample["faces_uvs"] = np.arange(len(flat), dtype=np.int64)
        used.add("texcoord")
    for p in element.props:
        if p.name in used:
            continue
        key = f"face_{p.name}"
        _put_extra(path, sample, key, vals[p.name], element, options)
        if p.count_dtype is None:
            per_face.append(key)
    return flat, sizes, per_face


def _indices(path: str | os.PathLike, values: np.ndarray, element: str) -> np.ndarray:
    """A vertex index list as int64 ``[n]``; a float-typed list must hold whole numbers (a
    cast would turn 1.5 into vertex 1 without a word)."""
    values = values.reshape(-1)
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if len(bad):
            raise ReadError(
                path,
                f"vertex index {values[bad[0]].item()!r} is not a whole number",
                f"element {element!r}",
            )
    return values.astype(np.int64)


def _check_indices(
    path: str | os.PathLike, flat: np.ndarray, sizes: np.ndarray, n_verts: int, name: str
) -> None:
    # as unsigned, a negative index is huge: one max() checks both bounds
    if len(flat) == 0 or flat.view(np.uint64).max() < n_verts:
        return
    bad = np.flatnonzero((flat < 0) | (flat >= n_verts))
    if len(bad):
        k = int(bad[0])
        row = int(np.searchsorted(np.cumsum(sizes), k, side="right"))
        raise ReadError(
            path,
            f"{name} {row} refers to vertex {int(flat[k])}, outside [0, {n_verts})",
            f"element {name!r}",
        )


def _tristrips(path: str | os.PathLike, element: Element, vals: Values, n_verts: int) -> np.ndarray:
    """Triangles ``[T, 3]`` of every strip (``-1`` restarts a strip), alternating winding,
    without the degenerate triangles strips use as joints."""
    index_name = next((n for n in FACE_LISTS if isinstance(vals.get(n), tuple)), None)
    if index_name is None:
        raise ReadError(path, "element 'tristrips' has no vertex_indices list", "header")
    flat = _indices(path, vals[index_name][0], "tristrips")  # type: ignore[index]
    bad = np.flatnonzero((flat < -1) | (flat >= n_verts))
    if len(bad):
        raise ReadError(
            path,
            f"strip index {int(flat[bad[0]])} is outside [0, {n_verts})",
            "element 'tristrips'",
        )
    triangles = []
    for strip in np.split(flat, np.flatnonzero(flat == -1)):
        strip = strip[strip >= 0]
        if len(strip) < 3:
            continue
        k = np.arange(len(strip) - 2)
        tri = np.stack([strip[k], strip[k + 1], strip[k + 2]], axis=1)
        odd = k % 2 == 1
        tri[odd, 0], tri[odd, 1] = tri[odd, 1], tri[odd, 0].copy()
        triangles.append(tri)
    if not triangles:
        return np.zeros((0, 3), dtype=np.int64)
    tri = np.concatenate(triangles)
    keep = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
    return tri[keep]
