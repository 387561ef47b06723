"""``load``: one file -> one sample dict; ``scan``: its sizes without parsing a number."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hetload.guards import NotRegularFile, open_regular, read_regular
from hetload.io.fallback import read_with_trimesh
from hetload.io.formats import FALLBACK_EXTENSIONS, MESH_EXTENSIONS
from hetload.io.obj import count_obj, read_obj
from hetload.io.off import count_off, is_binary_off, read_off
from hetload.io.options import LoadOptions
from hetload.io.ply import FACE_LISTS, PlyHeader, read_ply, read_ply_header
from hetload.io.read_error import ReadError
from hetload.io.stl import count_stl, read_stl

__all__ = ["MeshInfo", "load", "scan"]

_HEADER_CHUNK = 1 << 16


class _Counts(NamedTuple):
    format: str
    n_verts: int
    n_faces: int


class MeshInfo(_Counts):
    """What :func:`scan` learns from a file without parsing its numbers.

    ``n_faces`` counts faces as the file stores them: OBJ ``f`` lines and PLY ``face`` rows
    (polygons, before triangulation), plus one per PLY ``tristrips`` row; OBJ ``l`` / ``p``
    statements (returned by ``load`` as ``lines`` / ``point_indices``) are not counted.

    ``n_triangles`` is the number of rows ``load(path)["faces"]`` has (polygons fan-triangulated)
    where the file tells it cheaply: OBJ (corners per ``f`` line), binary PLY whose face element
    is a vertex-index list beside fixed-size properties, other formats; ``None`` where it does
    not (ASCII PLY, tristrips, extra list properties, an OBJ face line with a comment), and a
    size budget must then load the file. It is an attribute, not a tuple item, so a
    ``MeshInfo`` still compares and unpacks as ``(format, n_verts, n_faces)``.
    """

    n_triangles: int | None

    def __new__(
        cls, format: str, n_verts: int, n_faces: int, n_triangles: int | None = None
    ) -> MeshInfo:
        info = super().__new__(cls, format, n_verts, n_faces)
        info.n_triangles = n_triangles
        return info

    def __repr__(self) -> str:
        return (
            f"MeshInfo(format={self.format!r}, n_verts={self.n_verts}, n_faces={self.n_faces}, "
            f"n_triangles={self.n_triangles})"
        )


_OWN = {".obj": "obj", ".ply": "ply", ".off": "off", ".stl": "stl"}


def _format(path: Path, head: bytes) -> str:
    """The reader of ``path``: its suffix, else a ``ply`` / ``OFF`` magic at the start.

    Raises:
        ReadError: a suffix no reader handles (the message lists the ones that are read).
    """
    suffix = path.suffix.lower()
    if suffix in _OWN:
        return _OWN[suffix]
    if head.startswith(b"ply"):
        return "ply"
    if head.lstrip()[:3] == b"OFF":
        return "off"
    if suffix in FALLBACK_EXTENSIONS:
        return suffix.lstrip(".")
    raise ReadError(
        path,
        f"no reader for {suffix or 'suffix-less'!r} files; hetload reads "
        f"{' '.join(MESH_EXTENSIONS)}",
    )


def load(
    path: str | os.PathLike,
    *,
    dtype: Any = np.float32,
    index_dtype: Any = np.int64,
    polygons: bool = False,
    allow_nonfinite: bool = False,
    weld: bool = False,
) -> dict[str, np.ndarray]:
    """Read one mesh or point cloud file into a sample dict.

    OBJ, PLY, OFF and STL are read by hetload's own readers, faithfully: ``verts`` is the
    file's vertex array, in the file's order and count (STL: three vertices per triangle, as
    stored). GLB / glTF, 3MF, DAE and XYZ go through trimesh (which may merge or split
    vertices); any other suffix is refused (:data:`hetload.io.formats.MESH_EXTENSIONS`).

    Args:
        path: the file; the format comes from the suffix (a ``ply`` magic also counts).
        dtype: float32 (default: a PLY ``double`` coordinate is rounded, 500000.456 ->
            500000.47), float64, or ``None`` for each field as stored (PLY double stays
            float64, float stays float32; OBJ text numbers are parsed as float64).
        index_dtype: int64 (default) or int32 for the index fields.
        polygons: also return ``polygons`` / ``polygon_sizes``, the faces as written.
        allow_nonfinite: keep NaN / infinite values instead of raising; checked in every float
            field (positions, normals, uvs, float colors, weights, float PLY properties).
        weld: STL: merge exactly equal vertices (first occurrence order); the other formats
            index shared vertices already.

    Returns:
        A dict of numpy arrays, present when the file has them:

        - ``verts`` f32 ``[N, 3]`` (always);
        - ``faces`` i64 ``[F, 3]``: triangles (polygons fan-triangulated); absent for point
          clouds;
        - ``normals`` ``[N, 3]`` (PLY, per vertex) or ``[Nn, 3]`` (OBJ ``vn``, indexed by
          ``faces_normals`` i64 ``[F, 3]``);
        - ``uvs`` ``[T, 2]``, indexed by ``faces_uvs`` i64 ``[F, 3]`` when the file has per-corner
          uvs (OBJ ``vt``, PLY face ``texcoord``), else per vertex. Where only some OBJ corners
          have a uv (normal) index, the others hold -1 in ``faces_uvs`` (``faces_normals``),
          as PyTorch3D pads them; ``collate`` refuses -1, so drop the field or fill it first;
        - ``colors`` ``[N, 3|4]`` (uint8 as stored in PLY, float for OBJ ``v x y z r g b``;
          OFF: uint8 where written as integers, else float);
        - ``face_colors`` ``[F, 3|4]`` per triangle (PLY face colors, OFF face colorspecs);
        - ``face_normals`` ``[F, 3]`` (STL facet normals as written) and, for binary STL
          whose attribute words are not all 0, ``face_attributes`` uint16 ``[F]``;
        - ``face_groups`` i64 ``[F]``: OBJ ``o`` / ``g`` group of each triangle (names compared
          word by word: ``g a  b`` is ``g a b``); the solid of each triangle in an ASCII STL
          with several solids;
        - OBJ ``lines`` i64 ``[E, 2]`` (each segment of each ``l`` polyline), ``point_indices``
          i64 ``[P]`` (``p`` statements), ``vertex_weights`` ``[N]`` (the ``w`` of
          ``v x y z w``, 1.0 where a line has none; never divided into x y z);
        - PLY extra properties by name: vertex ones as ``[N]`` (``vertex_<name>`` where the name
          is taken), face ones as ``face_<name>`` ``[F]`` (per triangle), other elements as
          ``<element>_<name>``; list properties as flat values plus ``<name>_sizes``;
        - with ``polygons=True``: ``polygons`` i64 ``[sum P_j]`` and ``polygon_sizes`` ``[P]``.

    Raises:
        ReadError: for every file that cannot be read exactly; the message names the file and
            the place (line, or element and byte offset).
    """
    options = LoadOptions(dtype, index_dtype, polygons, allow_nonfinite, weld)
    path = Path(path)
    try:
        data = read_regular(path)  # a FIFO or device would block or never end
    except NotRegularFile as exc:
        raise ReadError(path, f"is {exc.kind}, not a regular file") from None
    except OSError as exc:
        raise ReadError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    fmt = _format(path, data[:64])
    if fmt == "obj":
        return read_obj(path, data, options)
    if fmt == "ply":
        return read_ply(path, data, options)
    if fmt == "off":
        return read_off(path, data, options)
    if fmt == "stl":
        return read_stl(path, data, options)
    return read_with_trimesh(path, options)


def scan(path: str | os.PathLike) -> MeshInfo:
    """Vertex and face counts of a file without parsing a number.

    PLY: from the header alone (the body is not read), and a binary file shorter than its
    header's declared rows is refused here already; the triangles of a binary face element
    follow from its byte size. OBJ: the ``v`` and ``f`` lines, counted by prefix, and the
    corners of each ``f`` line. OFF: the counts line, and the triangles from the first
    number of each ASCII face line (``None`` for a binary file). STL: a binary file's
    triangle count, checked against its size; an ASCII file's ``endfacet`` lines (``n_verts``
    is three per triangle, as ``load`` returns them without ``weld``). Other formats are
    loaded through trimesh.

    Raises:
        ReadError: the file cannot be read, or its header is broken.
    """
    path = Path(path)
    try:
        with open_regular(path) as fh:
            head = fh.read(_HEADER_CHUNK)
            fmt = _format(path, head[:64])
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
        if fmt == "stl":
            n_verts, n_triangles = count_stl(path, head, size, path.read_bytes)
            return MeshInfo("stl", n_verts, n_triangles, n_triangles)
        if fmt == "off":
            if not is_binary_off(head) and len(head) < size:
                head += path.read_bytes()[len(head) :]  # ASCII: the face lines tell triangles
            return MeshInfo("off", *count_off(path, head))
    except NotRegularFile as exc:
        raise ReadError(path, f"is {exc.kind}, not a regular file") from None
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
            "ply",
            header.count("vertex"),
            header.count("face") + header.count("tristrips"),
            _ply_triangles(header, size),
        )
    sample = read_with_trimesh(path, LoadOptions(allow_nonfinite=True))
    n_faces = len(sample.get("faces", ()))
    return MeshInfo(fmt, len(sample["verts"]), n_faces, n_faces)


def _ply_triangles(header: PlyHeader, size: int) -> int | None:
    """The triangles ``load`` makes of a PLY face element, or ``None`` where the header and the
    file size do not tell them.

    In a binary file whose every other element has fixed-size rows, the face element's bytes are
    what the body leaves over; with one list (the vertex indices) beside fixed properties, they
    are ``F * (count + fixed) + corners * index`` bytes, so ``corners - 2 F`` are the triangles.
    A reader-tolerated padding after the body would show as extra corners: a remainder refuses,
    and a padding of whole indices can only raise the count, never lower it.
    """
    if any(e.name == "tristrips" and e.count for e in header.elements):
        return None
    faces = [e for e in header.elements if e.name == "face"]
    if not faces or all(e.count == 0 for e in faces):
        return 0
    if len(faces) != 1 or header.fmt == "ascii":
        return None
    face = faces[0]
    lists = [p for p in face.props if p.count_dtype is not None]
    if len(lists) != 1 or lists[0].name not in FACE_LISTS:
        return None
    others = [e for e in header.elements if e is not face]
    if not all(e.fixed for e in others):
        return None
    fixed = sum(e.count * sum(p.dtype.itemsize for p in e.props) for e in others)
    row = sum(p.dtype.itemsize for p in face.props if p.count_dtype is None)
    row += lists[0].count_dtype.itemsize
    index_bytes = size - header.body - fixed - face.count * row
    corners, remainder = divmod(index_bytes, lists[0].dtype.itemsize)
    if remainder or corners < 3 * face.count:
        return None
    return corners - 2 * face.count
