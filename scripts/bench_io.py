"""Reader speed: hetload.io vs trimesh.load(process=False) vs plyfile vs the read+frombuffer floor.

Run:  .venv/bin/python scripts/bench_io.py [--repeat 5] [--verts 100000]

Cases: a generated grid mesh (~100k vertices, ~200k triangles) written as OBJ, ASCII PLY (6
digits, as Blender / MeshLab write, and plyfile's 17-20 digits), binary little- / big-endian
PLY, ASCII OFF (as ModelNet's files: 6 digits) and binary OFF, binary and ASCII STL (the same
triangles, 3 vertices each), and the largest files of ../shared/data/meshes. Prints medians
(ms) and ratios; ``scan`` is compared with a full hetload load of the same file. Both
wall-clock and the thread's CPU time are reported: the development machine is shared, and CPU
time is what other processes' load disturbs least.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import plyfile
import trimesh
from tqdm import tqdm

import hetload as hl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "meshes"
REAL_FILES = [
    "google__draco/testdata/bun_zipper.ply",
    "mikedh__trimesh/models/cycloidal.ply",
    "NVIDIAGameWorks__kaolin/sample_data/meshes/armchair.obj",
    "NVIDIAGameWorks__kaolin/sample_data/meshes/fox.obj",
]


def grid_mesh(n_verts: int) -> tuple[np.ndarray, np.ndarray]:
    """A wavy square grid: ``verts f32 [side^2, 3]``, ``faces i64 [2 (side-1)^2, 3]``."""
    side = round(n_verts**0.5)
    u, v = np.meshgrid(np.linspace(0, 1, side), np.linspace(0, 1, side), indexing="ij")
    w = 0.1 * np.sin(8 * u) * np.cos(6 * v)
    verts = np.stack([u, v, w], axis=-1).reshape(-1, 3).astype(np.float32)
    ids = np.arange(side * side).reshape(side, side)
    a, b, c, d = ids[:-1, :-1], ids[1:, :-1], ids[1:, 1:], ids[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1), np.stack([a, c, d], -1)]).reshape(-1, 3)
    return verts, faces.astype(np.int64)


def write_files(folder: Path, verts: np.ndarray, faces: np.ndarray) -> dict[str, Path]:
    out = {}
    v_text = "".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts.tolist())
    f_text = "".join(f"f {a} {b} {c}\n" for a, b, c in (faces + 1).tolist())
    out["OBJ"] = folder / "grid.obj"
    out["OBJ"].write_text(v_text + f_text)
    # most writers (Blender, MeshLab) print ~6 significant digits; plyfile below prints 17-20
    short = folder / "grid_ascii_short.ply"
    header = (
        f"ply\nformat ascii 1.0\nelement vertex {len(verts)}\nproperty float x\n"
        f"property float y\nproperty float z\nelement face {len(faces)}\n"
        "property list uchar int vertex_indices\nend_header\n"
    )
    v_rows = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts.tolist())
    f_rows = "".join(f"3 {a} {b} {c}\n" for a, b, c in faces.tolist())
    short.write_text(header + v_rows + f_rows)
    out["PLY ascii %.6f"] = short
    for name, fmt in (
        ("PLY ascii plyfile", "ascii"),
        ("PLY binary LE", "binary_little_endian"),
        ("PLY binary BE", "binary_big_endian"),
    ):
        path = folder / f"grid_{fmt}.ply"
        vertex = np.empty(len(verts), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
        vertex["x"], vertex["y"], vertex["z"] = verts.T
        face = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
        face["vertex_indices"] = faces
        data = plyfile.PlyData(
            [
                plyfile.PlyElement.describe(vertex, "vertex"),
                plyfile.PlyElement.describe(face, "face"),
            ],
            text=fmt == "ascii",
            byte_order="<" if fmt.endswith("little_endian") else ">" if fmt != "ascii" else "=",
        )
        data.write(str(path))
        out[name] = path
    out.update(write_off_stl(folder, verts, faces))
    return out


def write_off_stl(folder: Path, verts: np.ndarray, faces: np.ndarray) -> dict[str, Path]:
    out = {}
    v_rows = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts.tolist())
    f_rows = "".join(f"3 {a} {b} {c}\n" for a, b, c in faces.tolist())
    out["OFF ascii %.6f"] = folder / "grid.off"
    out["OFF ascii %.6f"].write_text(f"OFF\n{len(verts)} {len(faces)} 0\n" + v_rows + f_rows)
    records = np.empty(len(faces), dtype=[("n", ">i4"), ("v", ">i4", (3,)), ("nc", ">i4")])
    records["n"], records["v"], records["nc"] = 3, faces, 0
    out["OFF binary"] = folder / "grid_binary.off"
    out["OFF binary"].write_bytes(
        b"OFF BINARY\n"
        + np.asarray([len(verts), len(faces), 0], ">i4").tobytes()
        + verts.astype(">f4").tobytes()
        + records.tobytes()
    )
    tri = verts[faces]  # [F, 3, 3]
    rows = np.zeros(len(faces), dtype=[("n", "<f4", (3,)), ("v", "<f4", (9,)), ("a", "<u2")])
    rows["v"] = tri.reshape(-1, 9)
    out["STL binary"] = folder / "grid.stl"
    out["STL binary"].write_bytes(
        b"bench".ljust(80) + np.uint32(len(faces)).tobytes() + rows.tobytes()
    )
    lines = ["solid grid"]
    for t in tri.tolist():
        lines += ["facet normal 0 0 0", "outer loop"]
        lines += [f"vertex {x:.6e} {y:.6e} {z:.6e}" for x, y, z in t]
        lines += ["endloop", "endfacet"]
    out["STL ascii %e"] = folder / "grid_ascii.stl"
    out["STL ascii %e"].write_text("\n".join([*lines, "endsolid grid"]) + "\n")
    return out


def medians_ms(fns: dict[str, object], repeat: int, clock) -> dict[str, float]:
    """Median ms of each function on ``clock``, run round-robin so that load from other
    processes on this shared machine hits every competitor alike."""
    for fn in fns.values():
        fn()  # warm: page cache, imports
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def binary_floor(path: Path) -> float:
    """Read the bytes and view both elements with frombuffer (fixed-size triangle rows)."""
    header = hl.io.ply.read_ply_header(path, path.read_bytes()[:4096])
    order = "<" if header.fmt == "binary_little_endian" else ">"
    n_v, n_f = header.count("vertex"), header.count("face")
    vdt = np.dtype([("xyz", order + "f4", (3,))])
    fdt = np.dtype([("n", "u1"), ("idx", order + "i4", (3,))])

    def run():
        data = path.read_bytes()
        v = np.frombuffer(data, vdt, n_v, header.body)
        f = np.frombuffer(data, fdt, n_f, header.body + n_v * vdt.itemsize)
        return v["xyz"].astype(np.float32), f["idx"].astype(np.int64)

    return run


def stl_floor(path: Path):
    """Read the bytes and view the triangle records: three float32 vertices per triangle."""
    record = np.dtype([("n", "<f4", (3,)), ("v", "<f4", (9,)), ("a", "<u2")])

    def run():
        data = path.read_bytes()
        rows = np.frombuffer(data, record, offset=84)
        verts = rows["v"].reshape(-1, 3).astype(np.float32)
        return verts, np.arange(len(verts), dtype=np.int64).reshape(-1, 3), rows["n"].copy()

    return run


def off_floor(path: Path):
    """Read the bytes and view the big-endian vertex rows and triangle records."""

    def run():
        data = path.read_bytes()
        n_v, n_f, _ = np.frombuffer(data, ">i4", 3, 11)
        v = np.frombuffer(data, ">f4", 3 * n_v, 23).reshape(-1, 3)
        rec = np.dtype([("n", ">i4"), ("v", ">i4", (3,)), ("nc", ">i4")])
        f = np.frombuffer(data, rec, n_f, 23 + 12 * n_v)
        return v.astype(np.float32), f["v"].astype(np.int64)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--verts", type=int, default=100_000)
    args = parser.parse_args()

    wall: list[dict] = []
    cpu: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        verts, faces = grid_mesh(args.verts)
        files = write_files(Path(tmp), verts, faces)
        cases = [(f"generated {name}", path) for name, path in files.items()]
        cases += [(p.split("/")[-1], SHARED / p) for p in REAL_FILES if (SHARED / p).exists()]
        for label, path in tqdm(cases, desc="bench_io", unit="file"):
            fns = {
                "hetload": lambda p=path: hl.io.load(p),
                "scan": lambda p=path: hl.io.scan(p),
                "trimesh": lambda p=path: trimesh.load(p, process=False),
            }
            try:
                trimesh.load(path, process=False)
            except Exception:  # binary OFF: trimesh reads only ASCII OFF
                del fns["trimesh"]
            if path.suffix == ".ply":
                fns["plyfile"] = lambda p=path: plyfile.PlyData.read(str(p))
            if label.startswith("generated PLY binary"):
                fns["floor"] = binary_floor(path)
            elif label == "generated STL binary":
                fns["floor"] = stl_floor(path)
            elif label == "generated OFF binary":
                fns["floor"] = off_floor(path)
            for clock, table in ((time.perf_counter, wall), (time.thread_time, cpu)):
                row = {"plyfile": float("nan"), "floor": float("nan"), "trimesh": float("nan")}
                row.update(medians_ms(fns, args.repeat, clock))
                row.update(case=label, MB=path.stat().st_size / 2**20)
                table.append(row)

    for title, rows in (("wall-clock", wall), ("CPU time of this thread", cpu)):
        print_table(f"median ms ({title}) over {args.repeat} round-robin runs", rows)
    print(
        "\n'vs trimesh' / 'vs plyfile': how many times faster hetload is; 'vs floor': hetload's "
        "time over read+frombuffer (1.00x = the floor); 'load/scan': full load over scan."
    )


def print_table(title: str, rows: list[dict]) -> None:
    head = (
        f"{'case':<30}{'MB':>6}{'hetload':>9}{'trimesh':>9}{'plyfile':>9}{'floor':>7}"
        f"{'scan':>8}  {'vs trimesh':>10}{'vs plyfile':>11}{'vs floor':>9}{'load/scan':>10}"
    )
    print(f"\n{title}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['case']:<30}{r['MB']:>6.1f}{r['hetload']:>9.1f}{r['trimesh']:>9.1f}"
            f"{r['plyfile']:>9.1f}{r['floor']:>7.1f}{r['scan']:>8.2f}  "
            f"{r['trimesh'] / r['hetload']:>9.1f}x{r['plyfile'] / r['hetload']:>10.1f}x"
            f"{r['hetload'] / r['floor']:>8.2f}x{r['hetload'] / r['scan']:>9.0f}x"
        )


if __name__ == "__main__":
    main()
