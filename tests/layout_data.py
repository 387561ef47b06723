"""Miniature copies of the on-disk layouts (ModelNet, ShapeNetCore, ScanNet, SemanticKITTI) for
the config and preprocess tests, with what each sample must hold written beside them.

Every writer returns ``{key: {field: array or int}}``: the values the layout's reader must give
(``verts`` f32 ``[N, 3]``; ``label`` the class index; ``labels`` / ``semantic`` / ``instance``
int64 ``[N]`` per point, raw ids, before any label map).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def _points(n: int, offset: float) -> np.ndarray:
    """``n`` distinct points whose x tells the row (``i + offset``)."""
    i = np.arange(n, dtype=np.float32)
    return np.stack([i + offset, np.sin(i), np.cos(i)], axis=1).astype(np.float32)


def _strip(n: int) -> np.ndarray:
    return np.array([(i, i + 1, i + 2) for i in range(n - 2)], dtype=np.int64)


def write_modelnet(root: Path, per_class: int = 3) -> dict[str, dict]:
    """``root/<class>/<split>/<class>_0001.off``: classes bowl, cone (and an empty ``desk``)."""
    ref = {}
    classes = ["bowl", "cone", "desk"]
    for c, name in enumerate(classes):
        (root / name / "train").mkdir(parents=True, exist_ok=True)
        (root / name / "test").mkdir(parents=True, exist_ok=True)
        if name == "desk":
            continue
        for split in ("train", "test"):
            for k in range(per_class):
                n = 4 + 3 * k + c
                verts = _points(n, 10.0 * c + k)
                faces = _strip(n)
                text = ["OFF", f"{n} {len(faces)} 0"]
                text += [" ".join(repr(float(v)) for v in row) for row in verts]
                text += [f"3 {a} {b} {d}" for a, b, d in faces]
                stem = f"{name}_{k + 1:04d}"
                (root / name / split / f"{stem}.off").write_text("\n".join(text) + "\n")
                ref[f"{name}/{split}/{stem}"] = {"verts": verts, "label": c}
    return ref


def write_shapenet(root: Path) -> dict[str, dict]:
    """``root/<synset>/<model>/models/model_normalized.obj``, two synsets."""
    ref = {}
    synsets = ["02691156", "03001627"]
    for c, synset in enumerate(synsets):
        for k in range(3):
            n = 5 + 2 * k + c
            verts = _points(n, 100.0 * c + k)
            path = root / synset / f"m{k}" / "models" / "model_normalized.obj"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = [f"v {x!r} {y!r} {z!r}" for x, y, z in verts.tolist()]
            lines += [f"f {a + 1} {b + 1} {d + 1}" for a, b, d in _strip(n)]
            path.write_text("\n".join(lines) + "\n")
            ref[f"{synset}/m{k}"] = {"verts": verts, "label": c}
    return ref


def _ply(path: Path, verts: np.ndarray, props: list[tuple[str, str, str, np.ndarray]]) -> None:
    """A binary little-endian PLY of ``verts``, extra vertex properties and a triangle strip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    faces = _strip(len(verts))
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(verts)}"]
    header += ["property float x", "property float y", "property float z"]
    header += [f"property {ptype} {name}" for name, ptype, _, _ in props]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + [(n, dt) for n, _, dt, _ in props]
    body = np.empty(len(verts), dtype=dtype)
    body["x"], body["y"], body["z"] = verts.T
    for name, _, _, values in props:
        body[name] = values
    data = ("\n".join(header) + "\n").encode() + body.tobytes()
    data += b"".join(struct.pack("<B3i", 3, *f) for f in faces.tolist())
    path.write_bytes(data)


def write_scannet(root: Path) -> dict[str, dict]:
    """Three ScanNet v2 scenes: ``<scene>_vh_clean_2.ply`` + ``.labels.ply`` (``label``)."""
    ref = {}
    for s in range(3):
        scene = f"scene000{s}_00"
        n = 8 + 5 * s
        verts = _points(n, 1000.0 * s)
        labels = (np.arange(n) * (s + 3) % 7).astype(np.uint16)
        colors = [
            (c, "uchar", "u1", (np.arange(n) * (k + 1) % 256).astype(np.uint8))
            for k, c in enumerate(("red", "green", "blue"))
        ]
        _ply(root / scene / f"{scene}_vh_clean_2.ply", verts, colors)
        _ply(
            root / scene / f"{scene}_vh_clean_2.labels.ply",
            verts,
            [("label", "ushort", "<u2", labels)],
        )
        ref[scene] = {"verts": verts, "labels": labels.astype(np.int64)}
    return ref


#: the raw SemanticKITTI ids the writer uses, and a learning map of them
KITTI_IDS = (0, 10, 40, 252)
KITTI_MAP = {0: 0, 10: 1, 40: 2, 252: 1}


def write_kitti(root: Path) -> dict[str, dict]:
    """``root/sequences/<seq>/velodyne/<frame>.bin`` + ``labels/<frame>.label``: seqs 00, 08."""
    rng = np.random.default_rng(3)
    ref = {}
    for seq, frames in (("00", 3), ("08", 2)):
        for f in range(frames):
            n = int(rng.integers(6, 30))
            points = rng.normal(size=(n, 4)).astype(np.float32)
            points[:, 0] = np.arange(n) + 100 * f
            semantic = rng.choice(KITTI_IDS, size=n).astype(np.uint32)
            instance = rng.integers(0, 5, size=n).astype(np.uint32)
            folder = root / "sequences" / seq
            (folder / "velodyne").mkdir(parents=True, exist_ok=True)
            (folder / "labels").mkdir(parents=True, exist_ok=True)
            frame = f"{f:06d}"
            (folder / "velodyne" / f"{frame}.bin").write_bytes(points.astype("<f4").tobytes())
            raw = (instance << 16) | semantic
            (folder / "labels" / f"{frame}.label").write_bytes(raw.astype("<u4").tobytes())
            ref[f"{seq}/{frame}"] = {
                "verts": points[:, :3],
                "semantic": semantic.astype(np.int64),
                "instance": instance.astype(np.int64),
            }
    return ref
