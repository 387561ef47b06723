"""Polygons to triangles, shared by the OBJ and PLY readers."""

from __future__ import annotations

import numpy as np

__all__ = ["fan_triangles"]


def fan_triangles(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate polygons given only their sizes.

    Args:
        sizes: int64 ``[P]``, corners per polygon, each ``>= 3``; polygon ``j`` owns the corners
            ``starts[j] : starts[j] + sizes[j]`` of a flat corner array.

    Returns:
        ``(corners, owner)``: ``corners`` int64 ``[T, 3]`` indexes the flat corner array, triangle
        ``(c0, c_k, c_k+1)`` for ``k = 1 .. size-2`` (the fan around the first corner, so a convex
        polygon keeps its winding); ``owner`` int64 ``[T]`` is the polygon of each triangle.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    if len(sizes) and (sizes == 3).all():
        return starts[:, None] + np.arange(3, dtype=np.int64), np.arange(len(sizes))
    per = sizes - 2
    owner = np.repeat(np.arange(len(sizes), dtype=np.int64), per)
    first = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(per[:-1], out=first[1:])
    k = np.arange(len(owner), dtype=np.int64) - first[owner] + 1
    base = starts[owner]
    return np.stack([base, base + k, base + k + 1], axis=1), owner
