"""The layout datasets against what their users write by hand, in one run.

- SemanticKITTI: ``ds[i]`` (checks, float32 copies, label decode, a learning map) vs the
  semantic-kitti-api way (``np.fromfile(...).reshape(-1, 4)``, ``label & 0xFFFF``, ``>> 16``, a
  lookup table), on synthetic scans of 120,000 points (an HDL-64 sweep).
- ScanNetScenes: ``ds[i]`` (hetload's PLY reader, label properties as int64) vs ``plyfile``
  (``PlyData.read`` and the vertex columns stacked), on a synthetic binary scene with ScanNet's
  pair of files: ``_vh_clean_2.ply`` (x y z red green blue alpha, faces) and
  ``_vh_clean_2.labels.ply`` (the same + ``label``); both read each time.

Times are medians of ``--repeats`` reads after a warm-up, one thread, files in the page cache.

    python scripts/bench_layouts.py            # the BENCHMARKS.md table
    python scripts/bench_layouts.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hetload.data import ScanNetScenes, SemanticKITTI

try:
    from plyfile import PlyData
except ImportError:  # the peer is a dev dependency
    PlyData = None

LEARNING_MAP = {0: 0, 10: 1, 40: 9, 252: 1}


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kitti(root: Path, n_points: int, repeats: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    seq = root / "sequences" / "00"
    (seq / "velodyne").mkdir(parents=True)
    (seq / "labels").mkdir()
    points = rng.normal(size=(n_points, 4)).astype("<f4")
    raw = rng.choice(list(LEARNING_MAP), size=n_points).astype("<u4") | (7 << 16)
    (seq / "velodyne" / "000000.bin").write_bytes(points.tobytes())
    (seq / "labels" / "000000.label").write_bytes(raw.astype("<u4").tobytes())
    ds = SemanticKITTI(root, learning_map=LEARNING_MAP)
    lut = np.zeros(max(LEARNING_MAP) + 100, dtype=np.int64)
    for k, v in LEARNING_MAP.items():
        lut[k] = v

    def by_hand():
        scan = np.fromfile(seq / "velodyne" / "000000.bin", dtype=np.float32).reshape(-1, 4)
        label = np.fromfile(seq / "labels" / "000000.label", dtype=np.uint32)
        return scan[:, :3], scan[:, 3], lut[label & 0xFFFF], (label >> 16).astype(np.int64)

    return [
        ("SemanticKITTI ds[0]", median_seconds(lambda: ds[0], repeats)),
        ("np.fromfile + lut (semantic-kitti-api)", median_seconds(by_hand, repeats)),
    ]


def scannet(root: Path, n_verts: int, repeats: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    scene = root / "scene0000_00"
    scene.mkdir()
    columns = [(c, "<f4") for c in "xyz"] + [(c, "u1") for c in ("red", "green", "blue", "alpha")]
    vertex = np.empty(n_verts, dtype=[*columns, ("label", "<u2")])
    for name in ("x", "y", "z"):
        vertex[name] = rng.normal(size=n_verts)
    for name in ("red", "green", "blue", "alpha"):
        vertex[name] = rng.integers(0, 256, size=n_verts)
    vertex["label"] = rng.integers(0, 40, size=n_verts)
    n_faces = 2 * n_verts
    face = np.empty(n_faces, dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"] = 3
    face["i"] = rng.integers(0, n_verts, size=(n_faces, 3))
    props = "".join(f"property {t} {n}\n" for n, t in [*zip("xyz", ["float"] * 3)])
    props += "".join(f"property uchar {c}\n" for c in ("red", "green", "blue", "alpha"))
    faces = f"element face {n_faces}\nproperty list uchar int vertex_indices\nend_header\n"
    start = f"ply\nformat binary_little_endian 1.0\nelement vertex {n_verts}\n{props}"
    # ScanNet's pair: the mesh with the scan's colors, and the same mesh with `label`
    plain = scene / "scene0000_00_vh_clean_2.ply"
    plain.write_bytes(
        (start + faces).encode()
        + vertex[[n for n, _ in columns]].astype(columns).tobytes()
        + face.tobytes()
    )
    path = scene / "scene0000_00_vh_clean_2.labels.ply"
    path.write_bytes(
        (start + "property ushort label\n" + faces).encode() + vertex.tobytes() + face.tobytes()
    )
    ds = ScanNetScenes(root, index=None)
    rows = [("ScanNetScenes ds[0]", median_seconds(lambda: ds[0], repeats))]
    if PlyData is not None:

        def by_plyfile():
            ply = PlyData.read(str(plain))
            v = ply["vertex"]
            verts = np.stack([v["x"], v["y"], v["z"]], axis=1)
            colors = np.stack([v["red"], v["green"], v["blue"], v["alpha"]], axis=1)
            faces = np.stack(ply["face"]["vertex_indices"])
            labels = PlyData.read(str(path))["vertex"]["label"].astype(np.int64)
            return verts, colors, labels, faces

        rows.append(("plyfile.PlyData.read + columns", median_seconds(by_plyfile, repeats)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, few repeats")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 3 if args.quick else args.repeats
    n_points = 12_000 if args.quick else 120_000
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kitti").mkdir()
        (Path(tmp) / "scans").mkdir()
        for title, rows in (
            (
                f"SemanticKITTI, one scan of {n_points:,} points",
                kitti(Path(tmp) / "kitti", n_points, repeats),
            ),
            (
                f"ScanNet, one scene of {n_points:,} vertices",
                scannet(Path(tmp) / "scans", n_points, repeats),
            ),
        ):
            print(f"\n{title}")
            base = rows[0][1]
            for name, seconds in rows:
                print(f"  {name:<42} {seconds * 1e3:8.2f} ms   {seconds / base:5.2f}x hetload")


if __name__ == "__main__":
    main()
