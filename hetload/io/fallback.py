"""Formats without a hetload reader (GLB / glTF, 3MF, DAE, XYZ: ``FALLBACK_EXTENSIONS`` in
``formats.py``), read through trimesh."""

from __future__ import annotations

import os

import numpy as np

from hetload.io.options import LoadOptions
from hetload.io.read_error import ReadError, check_finite

__all__ = ["read_with_trimesh"]


def read_with_trimesh(path: str | os.PathLike, options: LoadOptions) -> dict[str, np.ndarray]:
    """``verts`` (and ``faces`` for a mesh) as trimesh reads them (``process=False``).

    A scene is merged into one sample. trimesh may merge or split vertices in these formats;
    OBJ, PLY, OFF and STL are read faithfully by hetload itself.
    """
    import trimesh

    try:
        loaded = trimesh.load(os.fspath(path), process=False)
    except Exception as exc:  # trimesh raises anything from KeyError to struct.error
        raise ReadError(path, f"trimesh could not read it: {type(exc).__name__}: {exc}") from exc
    if isinstance(loaded, trimesh.Scene):
        geometry = [g for g in loaded.dump() if hasattr(g, "vertices")]
        meshes = [g for g in geometry if isinstance(g, trimesh.Trimesh)]
        loaded = trimesh.util.concatenate(meshes) if meshes else None
        if loaded is None:
            return {"verts": np.zeros((0, 3), dtype=options.float_dtype(np.float64))}
    verts = np.asarray(loaded.vertices, dtype=np.float64).reshape(-1, 3)
    if not options.allow_nonfinite:
        check_finite(path, "vertex", verts, lambda row: f"vertex {row}")
    sample = {"verts": verts.astype(options.float_dtype(np.float64))}
    faces = getattr(loaded, "faces", None)
    if faces is not None and len(faces):
        sample["faces"] = np.asarray(faces).astype(options.index_dtype)
    return sample
