"""Mutated OBJ / PLY / OFF / STL inputs and the contract every reader result must meet.

Shared by ``tests/test_fuzz_readers.py`` (a short run in the default suite) and
``scripts/fuzz_readers.py`` (the long local run). A mutation is ``(kind, seed)``: ``kind`` names
what is done to the bytes, ``seed`` drives a ``random.Random`` that picks where and with what, so
every failing input is reproduced from ``(seed file, [(kind, seed), ...])`` alone.

The contract (:func:`check_load`): ``hetload.io.load`` either returns a valid sample (the fields
``load`` documents, with consistent shapes and every index inside the array it indexes) or raises
``hetload.io.ReadError``; nothing else, within ``CPU_SECONDS`` of CPU time and ``MEMORY_FACTOR``
times the file size plus ``MEMORY_CONSTANT`` bytes of peak allocation (numpy's included: it
reports its buffers to ``tracemalloc``).
"""

from __future__ import annotations

import random
import re
import signal
import tempfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import hetload.io as hio

CPU_SECONDS = 2.0
MEMORY_FACTOR = 10
MEMORY_CONSTANT = 1 << 20
#: real files of at most this size from ../shared/data/meshes join the generated seeds
MAX_CORPUS_SEED = 64 * 1024


# ------------------------------------------------------------------------------------ seeds
def _mesh(seed: int, n_verts: int, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    verts = rng.standard_normal((n_verts, 3)).astype(np.float32)
    faces = rng.integers(0, n_verts, size=(n_faces, 3))
    return verts, faces


def _ply_header(fmt: str, elements: list[tuple[str, int, list[str]]]) -> bytes:
    lines = ["ply", f"format {fmt} 1.0", "comment fuzz seed"]
    for name, count, props in elements:
        lines.append(f"element {name} {count}")
        lines += [f"property {p}" for p in props]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode()


def generated_seeds() -> dict[str, bytes]:
    """Small valid files covering the readers' paths: OBJ with uvs / normals / groups / quads /
    negative indices / colors, partial uv / normal corners, polylines and points, point-cloud
    OBJ; ASCII, little- and big-endian binary PLY with lists, extra properties, extra elements
    and tristrips."""
    seeds: dict[str, bytes] = {}
    verts, faces = _mesh(0, 12, 16)

    lines = [f"v {x:.6g} {y:.6g} {z:.6g}" for x, y, z in verts.tolist()]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces.tolist()]
    seeds["plain.obj"] = ("# plain\n" + "\n".join(lines) + "\n").encode()

    lines = ["mtllib x.mtl", "o first"]
    lines += [f"v {x:.6g} {y:.6g} {z:.6g}" for x, y, z in verts.tolist()]
    lines += [f"vt {u:.3f} {v:.3f}" for u, v in verts[:, :2].tolist()]
    lines += [f"vn {x:.3f} {y:.3f} {z:.3f}" for x, y, z in verts.tolist()]
    lines.append("usemtl m\ns 1")
    lines += [
        f"f {a + 1}/{a + 1}/{a + 1} {b + 1}/{b + 1}/{b + 1} {c + 1}/{c + 1}/{c + 1}"
        for a, b, c in faces[:8].tolist()
    ]
    lines.append("g second")
    lines += [
        f"f {a + 1}//{a + 1} {b + 1}//{b + 1} {c + 1}//{c + 1}" for a, b, c in faces[8:].tolist()
    ]
    seeds["uv_normals_groups.obj"] = ("\n".join(lines) + "\n").encode()

    lines = [f"v {x:.4f} {y:.4f} {z:.4f} 0.5 0.25 1" for x, y, z in verts.tolist()]
    lines += ["f -1 -2 -3 -4", "f 1 2 3 4 5", "f 3 4 5", "l 1 2"]
    seeds["quads_negative_colors.obj"] = ("\r\n".join(lines) + "\r\n").encode()

    seeds["points.obj"] = "".join(f"v {x} {y} {z}\n" for x, y, z in verts.tolist()).encode()

    # uvs on some faces only (-1 elsewhere), polylines, points, 'v x y z w'
    lines = [f"v {x:.5g} {y:.5g} {z:.5g} 0.5" for x, y, z in verts.tolist()]
    lines += ["vt 0 0", "vt 1 0", "vn 0 0 1", "g a  b", "f 1/1 2/2 3/1", "f 2 3 4", "g a b"]
    lines += ["f 3//1 4//1 5//1 6", "l 1 2 3 -1", "p 4 5 -2"]
    seeds["partial_lines_points.obj"] = ("\n".join(lines) + "\n").encode()

    header = _ply_header(
        "ascii",
        [
            (
                "vertex",
                12,
                ["float x", "float y", "float z", "uchar red", "uchar green", "uchar blue"],
            ),
            ("face", 16, ["list uchar int vertex_indices"]),
        ],
    )
    rows = [f"{x:.6g} {y:.6g} {z:.6g} 10 20 30" for x, y, z in verts.tolist()]
    rows += [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
    seeds["ascii.ply"] = header + ("\n".join(rows) + "\n").encode()

    for order, tag in (("<", "binary_little_endian"), (">", "binary_big_endian")):
        vertex = np.zeros(
            12,
            dtype=[
                ("x", order + "f4"),
                ("y", order + "f4"),
                ("z", order + "f4"),
                ("nx", order + "f4"),
                ("ny", order + "f4"),
                ("nz", order + "f4"),
                ("quality", order + "f8"),
            ],
        )
        for i, name in enumerate("xyz"):
            vertex[name] = verts[:, i]
            vertex["n" + name] = verts[:, i] / 2
        vertex["quality"] = np.arange(12)
        face = np.zeros(16, dtype=[("n", "u1"), ("i", order + "i4", (3,)), ("flag", order + "u2")])
        face["n"], face["i"], face["flag"] = 3, faces, 7
        edge = np.array([(0, 1), (2, 3)], dtype=[("a", order + "i4"), ("b", order + "i4")])
        header = _ply_header(
            tag,
            [
                (
                    "vertex",
                    12,
                    [
                        "float x",
                        "float y",
                        "float z",
                        "float nx",
                        "float ny",
                        "float nz",
                        "double quality",
                    ],
                ),
                ("face", 16, ["list uchar int vertex_indices", "ushort flag"]),
                ("edge", 2, ["int vertex1", "int vertex2"]),
            ],
        )
        body = vertex.tobytes() + face.tobytes() + edge.tobytes()
        seeds[f"binary_{tag.split('_')[1]}.ply"] = header + body

    # mixed polygon sizes in a binary list, and tristrips
    header = _ply_header(
        "binary_little_endian",
        [
            ("vertex", 12, ["float x", "float y", "float z"]),
            ("face", 3, ["list uchar uint vertex_indices"]),
        ],
    )
    polys = b"".join(
        np.uint8(len(p)).tobytes() + np.asarray(p, "<u4").tobytes()
        for p in ([0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 10, 11])
    )
    seeds["polygons.ply"] = header + verts.astype("<f4").tobytes() + polys
    header = _ply_header(
        "binary_little_endian",
        [
            ("vertex", 12, ["float x", "float y", "float z"]),
            ("tristrips", 1, ["list int int vertex_indices"]),
        ],
    )
    strip = np.asarray([8, 0, 1, 2, 3, -1, 4, 5, 6], "<i4").tobytes()
    seeds["tristrips.ply"] = header + verts.astype("<f4").tobytes() + strip
    header = _ply_header(
        "binary_little_endian", [("vertex", 12, ["float x", "float y", "float z"])]
    )
    seeds["points.ply"] = header + verts.astype("<f4").tobytes()
    seeds.update(off_stl_seeds())
    return seeds


def off_stl_seeds() -> dict[str, bytes]:
    """OFF (plain, ModelNet's glued counts, COFF with comments and face colors, NSTOFF, binary
    with mixed polygons) and STL (binary with a 'solid' header and attributes, ASCII with two
    solids and CRLF)."""
    seeds: dict[str, bytes] = {}
    verts, faces = _mesh(1, 10, 12)
    v_rows = [f"{x:.6g} {y:.6g} {z:.6g}" for x, y, z in verts.tolist()]
    f_rows = [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
    seeds["plain.off"] = ("OFF\n10 12 0\n" + "\n".join(v_rows + f_rows) + "\n").encode()
    seeds["modelnet.off"] = ("OFF10 12 0\n" + "\n".join(v_rows + f_rows) + "\n").encode()
    colored = [f"{row} {10 * i} 20 30 255" for i, row in enumerate(v_rows)]
    polys = [f"4 {a} {b} {c} {(c + 1) % 10} 0.5 0.25 1.0 # quad" for a, b, c in faces.tolist()]
    seeds["colors_comments.off"] = (
        "# a comment\nCOFF\n\n10 12 0\n" + "\n".join(colored + polys) + "\n"
    ).encode()
    rich = [f"{row} 0 0 1 0.5 0.5" for row in v_rows]
    seeds["normals_uvs.off"] = ("STNOFF\n10 12 0\n" + "\n".join(rich + f_rows) + "\n").encode()
    body = [b"OFF BINARY\n", np.asarray([10, 3, 0], ">i4").tobytes(), verts.astype(">f4").tobytes()]
    for poly in ([0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 0, 1]):
        body.append(np.asarray([len(poly), *poly, 0], ">i4").tobytes())
    seeds["binary.off"] = b"".join(body)

    tri = verts[faces].astype("<f4")  # [12, 3, 3]
    rows = np.zeros(12, dtype=[("n", "<f4", (3,)), ("v", "<f4", (9,)), ("a", "<u2")])
    rows["n"], rows["v"], rows["a"] = verts[0], tri.reshape(12, 9), 7
    seeds["binary.stl"] = (
        b"solid binary header".ljust(80) + np.uint32(12).tobytes() + rows.tobytes()
    )
    lines = []
    for name, part in (("a", tri[:5]), ("b", tri[5:])):
        lines.append(f"solid {name}")
        for t in part.tolist():
            lines += ["facet normal 0 0 1", " outer loop"]
            lines += [f"  vertex {x:.6g} {y:.6g} {z:.6g}" for x, y, z in t]
            lines += [" endloop", "endfacet"]
        lines.append(f"endsolid {name}")
    seeds["ascii.stl"] = ("\r\n".join(lines) + "\r\n").encode()
    return seeds


def corpus_seeds(root: Path, limit: int = MAX_CORPUS_SEED) -> dict[str, bytes]:
    """The real OBJ / PLY / OFF / STL files of at most ``limit`` bytes under ``root`` (none if
    absent)."""
    if not root.is_dir():
        return {}
    suffixes = (".obj", ".ply", ".off", ".stl")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    return {
        p.relative_to(root).as_posix(): p.read_bytes() for p in found if p.stat().st_size <= limit
    }


# ------------------------------------------------------------------------------------ mutations
_NUMBER = re.compile(rb"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_HUGE = [
    b"1e400",
    b"-1e400",
    b"nan",
    b"NaN",
    b"inf",
    b"-inf",
    b"3.5e38",
    b"99999999999999999999",
    b"-99999999999999999999",
    b"9223372036854775807",
    b"2147483648",
    b"-2147483649",
    b"4294967296",
    b"0x10",
    b"1e-400",
    b"+",
    b"-",
    b".",
    b"1..2",
    b"1e",
    b"--1",
    b"",
]
_COUNTS = [0, 1, 2, 7, 255, 256, 65536, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**64, 10**30]
_TAGS = [b"binary_little_endian", b"binary_big_endian", b"ascii"]
_TYPES = [
    b"char",
    b"uchar",
    b"short",
    b"ushort",
    b"int",
    b"uint",
    b"float",
    b"double",
    b"int8",
    b"uint8",
    b"int16",
    b"uint16",
    b"int32",
    b"uint32",
    b"float32",
    b"float64",
    b"int64",
    b"list",
    b"string",
    b"bool",
]
_INJECT = [
    b"\x00",
    b"\x00\x00\x00\x00",
    b"\xff\xfe",
    b"\x80",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\r",
    b"\n",
    b"\r\n",
    b"\t",
    b" ",
    b"\\\n",
    b"#",
    b"/",
    b"//",
    b"\x1a",
    b"\xef\xbb\xbf",
]


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [data]


def _truncate(data: bytes, r: random.Random) -> bytes:
    return data[: r.randrange(len(data) + 1)]


def _flip_bytes(data: bytes, r: random.Random) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(r.randint(1, 8)):
        out[r.randrange(len(out))] ^= 1 << r.randrange(8)
    return bytes(out)


def _random_bytes(data: bytes, r: random.Random) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    start = r.randrange(len(out))
    for i in range(start, min(len(out), start + r.randint(1, 16))):
        out[i] = r.randrange(256)
    return bytes(out)


def _duplicate_line(data: bytes, r: random.Random) -> bytes:
    lines = _lines(data)
    i = r.randrange(len(lines))
    return b"".join(lines[:i] + [lines[i]] * r.randint(2, 5) + lines[i + 1 :])


def _drop_line(data: bytes, r: random.Random) -> bytes:
    lines = _lines(data)
    del lines[r.randrange(len(lines))]
    return b"".join(lines)


def _swap_lines(data: bytes, r: random.Random) -> bytes:
    lines = _lines(data)
    i, j = r.randrange(len(lines)), r.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"".join(lines)


def _declared_count(data: bytes, r: random.Random) -> bytes:
    """A PLY ``element`` count (or, in OBJ, a face index) replaced by another or an absurd one."""
    sites = list(re.finditer(rb"(element \S+ )(\d+)", data))
    value = str(r.choice([*_COUNTS, r.randrange(64)])).encode()
    if r.random() < 0.2:
        value = b"-" + value
    if sites:
        m = r.choice(sites)
        return data[: m.start(2)] + value + data[m.end(2) :]
    faces = list(re.finditer(rb"(?m)^f[ \t]+(-?\d+)", data))
    if not faces:
        return data
    m = r.choice(faces)
    return data[: m.start(1)] + value + data[m.end(1) :]


def _number(data: bytes, r: random.Random) -> bytes:
    """A number in the text replaced by NaN, an infinity, an overflow or a malformed token."""
    found = list(_NUMBER.finditer(data))
    if not found:
        return data
    m = r.choice(found)
    return data[: m.start()] + r.choice(_HUGE) + data[m.end() :]


def _binary_value(data: bytes, r: random.Random) -> bytes:
    """Bytes of a NaN, an infinity, a huge float or a huge / negative int in a binary body."""
    body = data.find(b"end_header")
    start = body + 11 if body >= 0 else 0
    if start >= len(data):
        return data
    pattern = r.choice(
        [
            np.float32(np.nan).tobytes(),
            np.float32(np.inf).tobytes(),
            np.float64(-np.inf).tobytes(),
            np.float32(3.4e38).tobytes(),
            np.int32(-1).tobytes(),
            np.int32(2**31 - 1).tobytes(),
            np.uint8(255).tobytes(),
            np.uint8(0).tobytes(),
            np.int32(12).tobytes()[::-1],
        ]
    )
    at = r.randrange(start, len(data))
    return data[:at] + pattern + data[at + len(pattern) :]


def _inject(data: bytes, r: random.Random) -> bytes:
    """NUL, non-UTF-8, line-end or syntax bytes inserted (or written over) somewhere."""
    at = r.randrange(len(data) + 1)
    piece = r.choice(_INJECT) * r.randint(1, 3)
    if r.random() < 0.5:
        return data[:at] + piece + data[at:]
    return data[:at] + piece + data[at + len(piece) :]


def _format_tag(data: bytes, r: random.Random) -> bytes:
    """The PLY format line's encoding or version changed (endianness swapped, ascii <-> binary)."""
    m = re.search(rb"format (\S+) (\S+)", data)
    if m is None:
        return data
    if r.random() < 0.8:
        return data[: m.start(1)] + r.choice(_TAGS) + data[m.end(1) :]
    return data[: m.start(2)] + r.choice([b"2.0", b"1", b"x", b""]) + data[m.end(2) :]


def _property_type(data: bytes, r: random.Random) -> bytes:
    """A PLY property's (or list's count / item) type replaced by another, or an unknown one."""
    found = list(re.finditer(rb"property (?:list )?(\w+)(?: (\w+))? \w+", data))
    if not found:
        return data
    m = r.choice(found)
    group = r.choice([g for g in (1, 2) if m.group(g) is not None])
    return data[: m.start(group)] + r.choice(_TYPES) + data[m.end(group) :]


def _splice(data: bytes, r: random.Random) -> bytes:
    """A random slice of the file repeated or removed (overlapping rows, shifted bodies)."""
    if not data:
        return data
    a = r.randrange(len(data))
    b = min(len(data), a + r.randint(1, 64))
    if r.random() < 0.5:
        return data[:a] + data[b:]
    return data[:b] + data[a:b] * r.randint(1, 4) + data[b:]


def _off_stl_count(data: bytes, r: random.Random) -> bytes:
    """An OFF counts line or face corner count, or a binary STL's triangle count, replaced by
    another or an absurd one."""
    value = r.choice([*_COUNTS, r.randrange(64)])
    binary_stl = not data.startswith((b"ply", b"OFF")) and b"\0" in data[84:400]
    if binary_stl and len(data) >= 84:
        return data[:80] + (value % 2**32).to_bytes(4, "little") + data[84:]
    text = str(value if r.random() < 0.8 else -value).encode()
    sites = list(re.finditer(rb"(?m)^(?:OFF|COFF|STNOFF)?[ \t]*(\d+)[ \t]+(\d+)", data))
    sites += list(re.finditer(rb"(?m)^()(\d+)[ \t]+\d+[ \t]+\d+[ \t]+\d+", data))[:50]
    if not sites:
        return data
    m = r.choice(sites)
    group = r.choice([g for g in (1, 2) if m.group(g)])
    return data[: m.start(group)] + text + data[m.end(group) :]


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": _truncate,
    "flip_bytes": _flip_bytes,
    "random_bytes": _random_bytes,
    "duplicate_line": _duplicate_line,
    "drop_line": _drop_line,
    "swap_lines": _swap_lines,
    "declared_count": _declared_count,
    "number": _number,
    "binary_value": _binary_value,
    "inject": _inject,
    "format_tag": _format_tag,
    "property_type": _property_type,
    "splice": _splice,
    "off_stl_count": _off_stl_count,
}


def mutate(data: bytes, steps: list[tuple[str, int]]) -> bytes:
    """``data`` after each ``(kind, seed)`` mutation in turn."""
    for kind, seed in steps:
        data = MUTATIONS[kind](data, random.Random(seed))
    return data


# ------------------------------------------------------------------------------------ contract
class ContractError(AssertionError):
    """A reader result that breaks the contract (a wrong exception, a bad sample, a bound)."""


class _CpuLimit(BaseException):
    """Raised by the CPU timer; a BaseException so a reader's ``except Exception`` keeps it."""


@dataclass
class Outcome:
    """What one input did: ``"ok"`` (a valid sample) or ``"read_error"``, with its costs."""

    result: str
    peak_bytes: int
    cpu_seconds: float
    size: int

    @property
    def memory_share(self) -> float:
        """Peak allocation as a share of the bound (1.0 = at the limit)."""
        return self.peak_bytes / (MEMORY_FACTOR * self.size + MEMORY_CONSTANT)


def check_sample(sample: dict[str, np.ndarray], fmt: str) -> None:
    """Raise :class:`ContractError` unless ``sample`` has the shapes ``hetload.io.load``
    documents and every index lies inside the array it indexes.

    ``fmt`` is ``"obj"`` or ``"ply"``: OBJ ``vn`` / ``vt`` tables are returned as written, so
    without ``faces_normals`` / ``faces_uvs`` they need not have a row per vertex; PLY ones do.
    """

    def fail(reason: str) -> None:
        raise ContractError(f"invalid sample: {reason}")

    for name, value in sample.items():
        if not isinstance(value, np.ndarray):
            fail(f"{name} is a {type(value).__name__}, not an array")
    verts = sample.get("verts")
    if verts is None or verts.dtype != np.float32 or verts.ndim != 2 or verts.shape[1] != 3:
        fail(
            f"verts must be float32 [N, 3], got {getattr(verts, 'dtype', None)} "
            f"{getattr(verts, 'shape', None)}"
        )
    if not np.isfinite(verts).all():
        fail("verts holds a NaN or an infinity without allow_nonfinite")
    n = len(verts)

    for name, value in sample.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            fail(f"{name} holds a NaN or an infinity without allow_nonfinite")

    def indices(name: str, into: int, what: str, lowest: int = 0, shape=(3,)) -> int:
        """``lowest`` -1: a corner may have no uv / normal (others in the file do)."""
        idx = sample[name]
        if idx.dtype != np.int64 or idx.shape[1:] != shape:
            fail(f"{name} must be int64 [F, {shape}], got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < lowest or idx.max() >= into):
            fail(f"{name} holds indices in [{idx.min()}, {idx.max()}] for {into} {what}")
        return len(idx)

    for name, shape in (("lines", (2,)), ("point_indices", ())):
        if name in sample:
            indices(name, n, "vertices", shape=shape)

    n_faces = indices("faces", n, "vertices") if "faces" in sample else None
    for name, table in (("faces_uvs", "uvs"), ("faces_normals", "normals")):
        if name in sample:
            if table not in sample:
                fail(f"{name} without {table}")
            if n_faces is None or len(sample[name]) != n_faces:
                fail(f"{name} has {len(sample[name])} rows, faces {n_faces}")
            indices(name, len(sample[table]), table, lowest=-1)
    for name, width in (("normals", (3,)), ("uvs", (2,)), ("colors", (3, 4))):
        if name in sample:
            value = sample[name]
            if value.ndim != 2 or value.shape[1] not in width:
                fail(f"{name} has shape {value.shape}")
            indexed = f"faces_{name}" in sample or (fmt == "obj" and name != "colors")
            if not indexed and len(value) != n:
                fail(f"per-vertex {name} has {len(value)} rows for {n} vertices")
    for name in ("face_groups", "face_colors", "face_normals", "face_attributes"):
        if name in sample and len(sample[name]) != (n_faces or 0):
            fail(f"{name} has {len(sample[name])} rows, faces {n_faces}")
    for name, value in sample.items():
        if name.endswith("_sizes"):
            flat = sample.get(name[: -len("_sizes")])
            if flat is None:
                fail(f"{name} without its values")
            if value.size and value.min() < 0:
                fail(f"{name} holds a negative size")
            if int(value.sum()) != len(flat):
                fail(f"{name} sums to {int(value.sum())}, its values have {len(flat)}")


def _cpu_time() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load_once(path: Path) -> tuple[str, dict[str, np.ndarray] | None]:
    """``("ok", sample)`` or ``("read_error", None)``; any other exception is a
    :class:`ContractError`, and so is a ``ReadError`` whose message does not start with the
    file."""
    try:
        return "ok", hio.load(path)
    except hio.ReadError as exc:
        if not str(exc).startswith(str(path)):
            raise ContractError(f"ReadError does not name the file first: {exc}") from None
        return "read_error", None
    except Exception as exc:
        raise ContractError(f"raised {type(exc).__name__}, not ReadError: {exc}") from exc


def check_load(path: Path, size: int | None = None) -> Outcome:
    """Load ``path`` under the contract; raise :class:`ContractError` when it is broken.

    Two loads: one under a process CPU-time timer (``ITIMER_PROF``: other load on the machine
    does not count, and a loop that runs too long is interrupted rather than waited for), then
    one under ``tracemalloc`` for the peak allocation (tracing slows Python code several times,
    so it is kept out of the timed load).
    """
    size = path.stat().st_size if size is None else size

    def on_timer(signum, frame):
        raise _CpuLimit

    previous = signal.signal(signal.SIGPROF, on_timer)
    started = _cpu_time()
    signal.setitimer(signal.ITIMER_PROF, CPU_SECONDS)
    try:
        result, sample = _load_once(path)
    except _CpuLimit:
        raise ContractError(f"load took more than {CPU_SECONDS} s of CPU time") from None
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
    cpu = _cpu_time() - started
    if sample is not None:
        check_sample(sample, path.suffix.lower().lstrip("."))
    del sample

    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        again, _ = _load_once(path)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not tracing:
            tracemalloc.stop()
    if again != result:
        raise ContractError(f"the same file gave {result} and then {again}")
    limit = MEMORY_FACTOR * size + MEMORY_CONSTANT
    if peak > limit:
        raise ContractError(
            f"peak allocation {peak} bytes > {MEMORY_FACTOR} x {size} + {MEMORY_CONSTANT}"
        )
    return Outcome(result, peak, cpu, size)


def run_case(seed_name: str, seed: bytes, steps: list[tuple[str, int]], workdir: Path) -> Outcome:
    """Write the mutated file (under the seed's suffix) and check it; the error says how to
    reproduce the input."""
    data = mutate(seed, steps)
    path = workdir / f"case{Path(seed_name).suffix}"
    path.write_bytes(data)
    try:
        return check_load(path, len(data))
    except ContractError as exc:
        keep = Path(tempfile.gettempdir()) / f"hetload-fuzz-failure{Path(seed_name).suffix}"
        keep.write_bytes(data)
        raise ContractError(
            f"{exc}\n  seed file: {seed_name}\n  mutations: {steps}\n  input kept at {keep}"
        ) from exc
