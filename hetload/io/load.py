"""``load``: one file -> one sample dict; ``scan``: its sizes without parsing a number."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hetload.io.fallback import read_with_trimesh
from hetload.io.obj import count_obj, read_obj
from hetload.io.options import LoadOptions
from hetload.io.ply import read_ply, read_ply_header
from hetload.io.read_error import ReadError

__all__ = ["MeshInfo", "load", "scan"]

_HEADER_CHUNK = 1 << 16


class MeshInfo(NamedTuple):
    """What :func:`scan` learns from a file without parsing its numbers.

    ``n_faces`` counts faces as the file stores them: OBJ ``f`` lines and PLY ``face`` rows
    (polygons, before triangulation), plus one per PLY ``tristrips`` row.
    """

    format: str
    n_verts: int
    n_faces: int


def _format(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower()
    if suffix == ".ply" or (suffix not in (".obj",) and head.startswith(b"ply")):
        return "ply"
    if suffix == ".obj":
        return "obj"
    return suffix.lstrip(".") or "unknown"


def load(
    path: str | os.PathLike,
    *,
    dtype: Any = np.float32,
    index_dtype: Any = np.int64,
    polygons: bool = False,
    allow_nonfinite: bool = False,
) -> dict[str, np.ndarray]:
    """Read one mesh or point cloud file into a sample dict.

    OBJ and PLY are read by hetload's own readers, faithfully: ``verts`` is the file's vertex
    array, in the file's order and count. Other formats go through trimesh.

    Args:
        path: the file; the format comes from the suffix (a ``ply`` magic also counts).
        dtype: float32 (default) or float64 for the floating fields.
        index_dtype: int64 (default) or int32 for the index fields.
        polygons: also return ``polygons`` / ``polygon_sizes``, the faces as written.
        allow_nonfinite: keep NaN / infinite coordinates instead of raising.

    Returns:
        A dict of numpy arrays, present when the file has them:

        - ``verts`` f32 ``[N, 3]`` (always);
        - ``faces`` i64 ``[F, 3]``: triangles (polygons fan-triangulated); absent for point
          clouds;
        - ``normals`` ``[N, 3]`` (PLY, per vertex) or ``[Nn, 3]`` (OBJ ``vn``, indexed by
          ``faces_normals`` i64 ``[F, 3]``);
        - ``uvs`` ``[T, 2]``, indexed by ``faces_uvs`` i64 ``[F, 3]`` when the file has per-corner
          uvs (OBJ ``vt``, PLY face ``texcoord``), else per vertex;
        - ``colors`` ``[N, 3|4]`` (uint8 as stored in PLY, float for OBJ ``v x y z r g b``);
        - ``face_groups`` i64 ``[F]``: OBJ ``o`` / ``g`` group of each triangle;
        - PLY extra properties by name: vertex ones as ``[N]`` (``vertex_<name>`` where the name
          is taken), face ones as ``face_<name>`` ``[F]`` (per triangle), other elements as
          ``<element>_<name>``; list properties as flat values plus ``<name>_sizes``;
        - with ``polygons=True``: ``polygons`` i64 ``[sum P_j]`` and ``polygon_sizes`` ``[P]``.

    Raises:
        ReadError: for every file that cannot be read exactly; the message names the file and
            the place (line, or element and byte offset).
    """
    options = LoadOptions(dtype, index_dtype, polygons, allow_nonfinite)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReadError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    fmt = _format(path, data[:3])
    if fmt == "obj":
        return read_obj(path, data, options)
    if fmt == "ply":
        return read_ply(path, data, options)
    return read_with_trimesh(path, options)


def scan(path: str | os.PathLike) -> MeshInfo:
    """Vertex and face counts of a file without parsing a number.

    PLY: from the header alone (the body is not read), and a binary file shorter than its
    header's declared rows is refused here already. OBJ: the ``v`` and ``f`` lines, counted by
    prefix. Other formats are loaded through trimesh.

    Raises:
        ReadError: the file cannot be read, or its header is broken.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEADER_CHUNK)
            fmt = _format(path, head[:3])
            if fmt == "ply":
                while b"end_header" not in head and len(head) < (1 << 20):
                    more = fh.read(_HEADER_CHUNK)
                    if not more:
                        break
                    head += more
            elif fmt == "obj":
                fh.seek(0)
                head = fh.read()
        size = path.stat().st_size
    except OSError as exc:
        raise ReadError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    if fmt == "obj":
        if not head or head.isspace():
            raise ReadError(path, "the file is empty")
        return MeshInfo("obj", *count_obj(head))
    if fmt == "ply":
        header = read_ply_header(path, head)
        if header.fmt != "ascii":
            minimum = sum(
                e.count
                * sum(
                    p.count_dtype.itemsize if p.count_dtype else p.dtype.itemsize for p in e.props
                )
                for e in header.elements
            )
            if header.body + minimum > size:
                raise ReadError(
                    path,
                    f"the header declares at least {minimum} bytes of data but the file holds "
                    f"{size - header.body}: truncated",
                    f"byte {header.body}",
                )
        return MeshInfo(
            "ply", header.count("vertex"), header.count("face") + header.count("tristrips")
        )
    sample = read_with_trimesh(path, LoadOptions(allow_nonfinite=True))
    return MeshInfo(fmt, len(sample["verts"]), len(sample.get("faces", ())))
