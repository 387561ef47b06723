"""The embedded demo dataset: ``hetload demo-data DST`` writes heterogeneous OBJ / PLY files.

The set looks like real data so that everything downstream (readers, sampler, stats, bench) has
something honest to chew on without a download:

- sizes are log-normal, median :data:`MEDIAN_VERTICES`, spread ``sigma`` = :data:`SIGMA`, truncated
  to ``[MIN_VERTICES, MAX_VERTICES]`` (300 .. 200,000 vertices). With the default ``n = 500`` the
  set holds ~3 million vertices in ~150 MB and takes ~15-30 s to write on a 2-core machine; the
  cap keeps one unlucky draw from producing a multi-GB file;
- four mesh classes under ``meshes/``, one folder each (ModelNet-style, the folder is the
  class): ``sphere``, ``torus``, ``blob`` (a sphere displaced by random low-frequency waves) and
  ``box`` (a box of quads with circular holes cut in its sides, seam vertices duplicated, as CAD
  exports do); and point clouds under ``scans/`` (a few primitives each, with a per-point
  ``label``);
- four encodings: OBJ, ASCII PLY, binary little-endian and big-endian PLY (scans are PLY only:
  OBJ cannot carry labels); normals on about a third of the files, colors on about a third;
- a ModelNet-style miniature under ``modelnet/<class>/<split>/*.off`` (:data:`MODELNET`: small
  meshes of the four classes in ``train`` and ``test``), where ``box/test/`` is an empty folder:
  ``hl.data.ModelNet(demo / "modelnet", split="test")`` still numbers the classes as ``train``.

Every file is a function of ``(seed, index)`` only, so the set is deterministic by seed and a
file can be regenerated alone. Files are written under a temporary name and renamed, and
``manifest.tsv`` (one row per file: shape, format, counts, which extras) is written last, so a
folder with a manifest is complete.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FORMATS",
    "MAX_VERTICES",
    "MEDIAN_VERTICES",
    "MIN_VERTICES",
    "MODELNET",
    "SHAPES",
    "SIGMA",
    "DemoFile",
    "generate",
    "sample_sizes",
]

MEDIAN_VERTICES = 2_000
SIGMA = 1.4
MIN_VERTICES = 300
MAX_VERTICES = 200_000

SHAPES = ("sphere", "torus", "blob", "box", "scan")
#: (name, file suffix); PLY encodings as named in the PLY header
FORMATS = ("obj", "ply-ascii", "ply-le", "ply-be")
MANIFEST = "manifest.tsv"
#: the ModelNet-style miniature: files per (class, split); box has no test file (empty folder)
MODELNET = {
    ("blob", "train"): 4,
    ("blob", "test"): 2,
    ("box", "train"): 4,
    ("box", "test"): 0,
    ("sphere", "train"): 4,
    ("sphere", "test"): 2,
    ("torus", "train"): 4,
    ("torus", "test"): 2,
}
_MANIFEST_COLUMNS = (
    "file",
    "shape",
    "format",
    "n_vertices",
    "n_faces",
    "normals",
    "colors",
    "labels",
)


@dataclass(frozen=True)
class DemoFile:
    """One generated file, as listed in ``manifest.tsv``. ``n_faces`` counts the file's polygons
    (boxes are quads, everything else triangles); 0 for point clouds."""

    file: str
    shape: str
    format: str
    n_vertices: int
    n_faces: int
    normals: bool
    colors: bool
    labels: bool


@dataclass
class _Mesh:
    verts: np.ndarray  # f32 [N, 3]
    faces: np.ndarray | None  # i64 [F, k] (k = 3 triangles, 4 quads), None for point clouds
    normals: np.ndarray | None = None  # f32 [N, 3]
    colors: np.ndarray | None = None  # u8 [N, 3]
    labels: np.ndarray | None = None  # i32 [N]


def sample_sizes(n: int, seed: int) -> np.ndarray:
    """Target vertex counts ``int64 [n]``: log-normal, truncated to the documented range (draws
    outside it are redrawn, so no spike builds up at either end)."""
    rng = np.random.default_rng([seed, 0x5EED])
    sizes = rng.lognormal(np.log(MEDIAN_VERTICES), SIGMA, size=n)
    while True:
        outside = (sizes < MIN_VERTICES) | (sizes > MAX_VERTICES)
        if not outside.any():
            return np.rint(sizes).astype(np.int64)
        sizes[outside] = rng.lognormal(np.log(MEDIAN_VERTICES), SIGMA, size=int(outside.sum()))


def generate(
    dst: str | os.PathLike,
    n: int = 500,
    seed: int = 0,
    *,
    progress: Callable[[Iterator[int], int], Iterator[int]] | None = None,
) -> list[DemoFile]:
    """Write ``n`` demo files under ``dst`` and return what was written.

    Args:
        dst: the output folder; created if missing. A non-empty folder without a demo
            ``manifest.tsv`` is refused (it is somebody's data); a previous demo set is replaced.
        n: number of files (``>= 1``).
        seed: the same seed gives byte-identical files.
        progress: wraps the index iterator (e.g. ``tqdm``) given ``(iterator, total)``.

    Raises:
        ValueError: ``n < 1``, or ``dst`` is a non-empty folder that is not a demo set.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    root = Path(dst)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a folder")
    previous = _previous_files(root)
    sizes = sample_sizes(int(n), seed)
    indices: Iterator[int] = iter(range(int(n)))
    if progress is not None:
        indices = progress(indices, int(n))
    written = [_write_one(root, seed, i, int(sizes[i])) for i in indices]
    written += _write_modelnet(root, seed)
    for stale in previous - {f.file for f in written}:
        (root / stale).unlink(missing_ok=True)
        for folder in (root / stale).parents:
            if folder == root or any(folder.iterdir()):
                break
            folder.rmdir()
    _write_manifest(root, written)
    return written


def _previous_files(root: Path) -> set[str]:
    if not root.exists() or not any(root.iterdir()):
        return set()
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise ValueError(
            f"{root} is not empty and holds no {MANIFEST} (it is not a demo set); "
            "choose an empty or new folder"
        )
    with manifest.open(newline="") as f:
        return {row["file"] for row in csv.DictReader(f, delimiter="\t")}


def _write_manifest(root: Path, files: list[DemoFile]) -> None:
    lines = ["\t".join(_MANIFEST_COLUMNS)]
    for f in files:
        row = [str(getattr(f, c)) for c in _MANIFEST_COLUMNS]
        lines.append(
            "\t".join(v if v not in ("True", "False") else str(int(v == "True")) for v in row)
        )
    _atomic_write(root / MANIFEST, ("\n".join(lines) + "\n").encode())


# ---------------------------------------------------------------------------- one file
def _write_one(root: Path, seed: int, index: int, n_vertices: int) -> DemoFile:
    rng = np.random.default_rng([seed, index])
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    mesh = _BUILDERS[shape](n_vertices, rng)
    if shape == "scan":
        fmt = FORMATS[1 + int(rng.integers(3))]
    else:
        fmt = FORMATS[int(rng.choice(4, p=[0.3, 0.2, 0.25, 0.25]))]
    if mesh.normals is None and rng.random() < 0.35 and mesh.faces is not None:
        mesh.normals = _vertex_normals(mesh.verts, mesh.faces)
    if mesh.colors is None and rng.random() < 0.35:
        mesh.colors = _colors(mesh.verts, rng)
    folder = "scans" if shape == "scan" else f"meshes/{shape}"
    name = f"{folder}/{shape}_{index:05d}.{'obj' if fmt == 'obj' else 'ply'}"
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    body = _obj_bytes(mesh) if fmt == "obj" else _ply_bytes(mesh, fmt)
    _atomic_write(path, body)
    return DemoFile(
        file=name,
        shape=shape,
        format=fmt,
        n_vertices=len(mesh.verts),
        n_faces=0 if mesh.faces is None else len(mesh.faces),
        normals=mesh.normals is not None,
        colors=mesh.colors is not None,
        labels=mesh.labels is not None,
    )


def _write_modelnet(root: Path, seed: int) -> list[DemoFile]:
    """The ModelNet-style miniature (see the module docstring): small meshes, OFF files."""
    out = []
    number = 0
    for (shape, split), count in MODELNET.items():
        folder = root / "modelnet" / shape / split
        folder.mkdir(parents=True, exist_ok=True)  # box/test stays empty, as a class can
        for _ in range(count):
            number += 1
            rng = np.random.default_rng([seed, 0x0FF, number])
            mesh = _BUILDERS[shape](int(rng.integers(MIN_VERTICES, 3 * MIN_VERTICES)), rng)
            name = f"modelnet/{shape}/{split}/{shape}_{number:04d}.off"
            _atomic_write(root / name, _off_bytes(mesh))
            out.append(
                DemoFile(name, shape, "off", len(mesh.verts), len(mesh.faces), False, False, False)
            )
    return out


def _off_bytes(mesh: _Mesh) -> bytes:
    """Object File Format, as ModelNet ships it: ``OFF``, counts, vertices, ``k i j ...``."""
    k = mesh.faces.shape[1]
    head = f"OFF\n{len(mesh.verts)} {len(mesh.faces)} 0\n"
    body = _format_rows("%.6g %.6g %.6g\n", mesh.verts)
    body += _format_rows(f"{k}" + " %d" * k + "\n", mesh.faces)
    return (head + body).encode("ascii")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- shapes
def _grid_faces(rows: int, cols: int, wrap_rows: bool, wrap_cols: bool) -> np.ndarray:
    """Two triangles per cell of a ``rows x cols`` vertex grid (row-major ids): i64 [F, 3]."""
    r = np.arange(rows if wrap_rows else rows - 1)
    c = np.arange(cols if wrap_cols else cols - 1)
    rr, cc = np.meshgrid(r, c, indexing="ij")
    a = rr * cols + cc
    b = rr * cols + (cc + 1) % cols
    d = ((rr + 1) % rows) * cols + cc
    e = ((rr + 1) % rows) * cols + (cc + 1) % cols
    tri = np.stack([np.stack([a, d, b], -1), np.stack([b, d, e], -1)], axis=-2)
    return tri.reshape(-1, 3).astype(np.int64)


def _sphere_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere of about ``n`` vertices: unit directions f64 [N, 3], faces i64 [F, 3]."""
    rings = max(3, round(np.sqrt(n / 2)))
    segs = max(4, round((n - 2) / (rings - 1)))
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segs, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    body = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0.0, 0.0, 1.0]], body, [[0.0, 0.0, -1.0]]])
    grid = _grid_faces(rings - 1, segs, wrap_rows=False, wrap_cols=True) + 1
    ring = np.arange(segs)
    top = np.stack([np.zeros(segs, np.int64), 1 + ring, 1 + (ring + 1) % segs], -1)
    last = 1 + (rings - 2) * segs
    south = len(verts) - 1
    bottom = np.stack([np.full(segs, south), last + (ring + 1) % segs, last + ring], -1)
    return verts, np.concatenate([top, grid, bottom]).astype(np.int64)


def _sphere(n: int, rng: np.random.Generator) -> _Mesh:
    dirs, faces = _sphere_grid(n)
    radius = rng.uniform(0.5, 2.0)
    verts = (dirs * radius + rng.normal(0, 0.5, 3)).astype(np.float32)
    normals = dirs.astype(np.float32) if rng.random() < 0.5 else None
    return _Mesh(verts, faces, normals=normals)


def _torus(n: int, rng: np.random.Generator) -> _Mesh:
    ratio = rng.uniform(2.0, 4.0)  # segments around the ring per segment around the tube
    tube = max(3, round(np.sqrt(n / ratio)))
    ring = max(3, round(n / tube))
    big, small = rng.uniform(1.0, 2.0), rng.uniform(0.2, 0.6)
    u, v = np.meshgrid(
        np.linspace(0, 2 * np.pi, ring, endpoint=False),
        np.linspace(0, 2 * np.pi, tube, endpoint=False),
        indexing="ij",
    )
    verts = np.stack(
        [
            (big + small * np.cos(v)) * np.cos(u),
            (big + small * np.cos(v)) * np.sin(u),
            small * np.sin(v),
        ],
        -1,
    ).reshape(-1, 3)
    normals = np.stack([np.cos(v) * np.cos(u), np.cos(v) * np.sin(u), np.sin(v)], -1).reshape(-1, 3)
    faces = _grid_faces(ring, tube, wrap_rows=True, wrap_cols=True)
    keep_normals = rng.random() < 0.5
    return _Mesh(
        verts.astype(np.float32),
        faces,
        normals=normals.astype(np.float32) if keep_normals else None,
    )


def _blob(n: int, rng: np.random.Generator) -> _Mesh:
    dirs, faces = _sphere_grid(n)
    waves = rng.normal(size=(5, 3)) * rng.uniform(1.0, 4.0, size=(5, 1))
    phases = rng.uniform(0, 2 * np.pi, 5)
    amps = rng.uniform(0.05, 0.25, 5)
    radius = 1.0 + (amps * np.sin(dirs @ waves.T + phases)).sum(-1)
    return _Mesh((dirs * radius[:, None]).astype(np.float32), faces)


def _box(n: int, rng: np.random.Generator) -> _Mesh:
    """Six ``k x k`` quad grids (seam vertices duplicated), circular holes cut in some sides."""
    k = max(2, round(np.sqrt(n / 6)) - 1)
    side = np.linspace(-1.0, 1.0, k + 1)
    a, b = np.meshgrid(side, side, indexing="ij")
    a, b = a.ravel(), b.ravel()
    one = np.ones_like(a)
    sides = [
        (np.stack([a, b, one], -1), False),
        (np.stack([a, b, -one], -1), True),
        (np.stack([a, one, b], -1), True),
        (np.stack([a, -one, b], -1), False),
        (np.stack([one, a, b], -1), False),
        (np.stack([-one, a, b], -1), True),
    ]
    cell = np.arange(k)
    ci, cj = np.meshgrid(cell, cell, indexing="ij")
    ci, cj = ci.ravel(), cj.ravel()
    quad_local = np.stack(
        [
            ci * (k + 1) + cj,
            (ci + 1) * (k + 1) + cj,
            (ci + 1) * (k + 1) + cj + 1,
            ci * (k + 1) + cj + 1,
        ],
        -1,
    )
    centers = np.stack([side[ci] + side[ci + 1], side[cj] + side[cj + 1]], -1) / 2
    verts, quads = [], []
    for s, (grid, flip) in enumerate(sides):
        keep = np.ones(len(quad_local), bool)
        for _ in range(int(rng.integers(0, 3))):
            center = rng.uniform(-0.5, 0.5, 2)
            keep &= np.linalg.norm(centers - center, axis=1) > rng.uniform(0.15, 0.45)
        q = quad_local[keep] + s * len(a)
        quads.append(q[:, ::-1] if flip else q)
        verts.append(grid)
    all_verts = np.concatenate(verts) * rng.uniform(0.5, 2.0, 3)
    all_quads = np.concatenate(quads)
    used = np.unique(all_quads)
    remap = np.full(len(all_verts), -1, np.int64)
    remap[used] = np.arange(len(used))
    return _Mesh(all_verts[used].astype(np.float32), remap[all_quads])


def _scan(n: int, rng: np.random.Generator) -> _Mesh:
    """A labelled point cloud: ``2..5`` primitives, points split among them, label = primitive."""
    parts = int(rng.integers(2, 6))
    share = rng.dirichlet(np.ones(parts))
    counts = np.diff(np.rint(np.concatenate([[0], np.cumsum(share)]) * n).astype(np.int64))
    points, normals, labels = [], [], []
    for label, count in enumerate(counts):
        kind = int(rng.integers(3))
        if kind == 0:  # sphere surface
            d = rng.normal(size=(count, 3))
            d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
            p, nrm = d * rng.uniform(0.2, 0.8), d
        elif kind == 1:  # floor / wall patch
            p = np.column_stack([rng.uniform(-2, 2, (count, 2)), np.zeros(count)])
            nrm = np.tile([0.0, 0.0, 1.0], (count, 1))
        else:  # upright cylinder
            angle = rng.uniform(0, 2 * np.pi, count)
            nrm = np.column_stack([np.cos(angle), np.sin(angle), np.zeros(count)])
            p = nrm * rng.uniform(0.1, 0.5) + np.column_stack(
                [np.zeros((count, 2)), rng.uniform(0, 2, count)]
            )
        points.append(p + rng.uniform(-2, 2, 3) + rng.normal(0, 0.005, (count, 3)))
        normals.append(nrm)
        labels.append(np.full(count, label, np.int32))
    mesh = _Mesh(np.concatenate(points).astype(np.float32), None, labels=np.concatenate(labels))
    if rng.random() < 0.5:
        mesh.normals = np.concatenate(normals).astype(np.float32)
    return mesh


_BUILDERS: dict[str, Callable[[int, np.random.Generator], _Mesh]] = {
    "sphere": _sphere,
    "torus": _torus,
    "blob": _blob,
    "box": _box,
    "scan": _scan,
}


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals f32 [N, 3] (polygons fanned into triangles)."""
    v = verts.astype(np.float64)
    acc = np.zeros_like(v)
    for j in range(1, faces.shape[1] - 1):
        tri = faces[:, [0, j, j + 1]]
        fn = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
        for c in range(3):
            for axis in range(3):
                acc[:, axis] += np.bincount(tri[:, c], fn[:, axis], minlength=len(v))
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    return (acc / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def _colors(verts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """u8 [N, 3]: a random gradient along a random direction, like a baked-in shading."""
    t = verts @ rng.normal(size=3)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-12)
    lo, hi = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return np.rint(lo + t[:, None] * (hi - lo)).astype(np.uint8)


# ---------------------------------------------------------------------------- writers
def _format_rows(fmt: str, values: np.ndarray) -> str:
    """Rows of ``values [R, C]`` through a printf row format (fast: one % over all numbers)."""
    if len(values) == 0:
        return ""
    return (fmt * len(values)) % tuple(values.ravel().tolist())


def _obj_bytes(mesh: _Mesh) -> bytes:
    parts = ["# hetload demo-data\n"]
    if mesh.colors is not None:
        rows = np.column_stack([mesh.verts, mesh.colors / 255.0])
        parts.append(_format_rows("v %.6g %.6g %.6g %.4g %.4g %.4g\n", rows))
    else:
        parts.append(_format_rows("v %.6g %.6g %.6g\n", mesh.verts))
    if mesh.faces is not None:
        k = mesh.faces.shape[1]
        one_based = mesh.faces + 1
        if mesh.normals is not None:
            parts.append(_format_rows("vn %.5g %.5g %.5g\n", mesh.normals))
            corners = np.repeat(one_based, 2, axis=1)  # v//vn with the same index
            parts.append(_format_rows("f" + " %d//%d" * k + "\n", corners))
        else:
            parts.append(_format_rows("f" + " %d" * k + "\n", one_based))
    return "".join(parts).encode()


def _vertex_properties(mesh: _Mesh) -> list[tuple[str, str, np.ndarray]]:
    """``(ply type, numpy type, column(s))`` per vertex property group, in header order."""
    props = [("float", "f4", mesh.verts)]
    if mesh.normals is not None:
        props.append(("float", "f4", mesh.normals))
    if mesh.colors is not None:
        props.append(("uchar", "u1", mesh.colors))
    if mesh.labels is not None:
        props.append(("int", "i4", mesh.labels[:, None]))
    return props


def _ply_bytes(mesh: _Mesh, fmt: str) -> bytes:
    encoding = {
        "ply-ascii": "ascii",
        "ply-le": "binary_little_endian",
        "ply-be": "binary_big_endian",
    }[fmt]
    names = [["x", "y", "z"]]
    if mesh.normals is not None:
        names.append(["nx", "ny", "nz"])
    if mesh.colors is not None:
        names.append(["red", "green", "blue"])
    if mesh.labels is not None:
        names.append(["label"])
    props = _vertex_properties(mesh)
    header = ["ply", f"format {encoding} 1.0", "comment hetload demo-data"]
    header.append(f"element vertex {len(mesh.verts)}")
    for (ply_type, _, _), group in zip(props, names):
        header += [f"property {ply_type} {name}" for name in group]
    if mesh.faces is not None:
        header.append(f"element face {len(mesh.faces)}")
        header.append("property list uchar int vertex_indices")
    header.append("end_header")
    head = ("\n".join(header) + "\n").encode("ascii")
    if encoding == "ascii":
        columns = np.column_stack([g.astype(np.float64) for _, _, g in props])
        row = " ".join(
            ("%.6g" if t == "float" else "%d") for (t, _, g) in props for _ in range(g.shape[1])
        )
        body = _format_rows(row + "\n", columns)
        if mesh.faces is not None:
            k = mesh.faces.shape[1]
            body += _format_rows(f"{k}" + " %d" * k + "\n", mesh.faces)
        return head + body.encode("ascii")
    order = "<" if encoding.endswith("little_endian") else ">"
    dtype = np.dtype(
        [(name, order + np_type) for (_, np_type, _), group in zip(props, names) for name in group]
    )
    table = np.empty(len(mesh.verts), dtype)
    for (_, _, g), group in zip(props, names):
        for j, name in enumerate(group):
            table[name] = g[:, j]
    body = table.tobytes()
    if mesh.faces is not None:
        k = mesh.faces.shape[1]
        face_table = np.empty(len(mesh.faces), np.dtype([("n", "u1"), ("i", order + "i4", (k,))]))
        face_table["n"] = k
        face_table["i"] = mesh.faces
        body += face_table.tobytes()
    return head + body
