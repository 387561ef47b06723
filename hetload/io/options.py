"""The options every reader takes, validated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LoadOptions"]


@dataclass(frozen=True)
class LoadOptions:
    """How a file becomes a sample.

    Attributes:
        dtype: floating dtype of ``verts``, ``normals``, ``uvs`` and float colors (float32, or
            float64 to keep a double-precision file's bits).
        index_dtype: integer dtype of ``faces``, ``faces_uvs``, ``faces_normals``, ``polygons``.
        polygons: also return the polygons as written: ``polygons`` (flat vertex indices,
            ``[sum P_j]``) and ``polygon_sizes`` (``[P]``).
        allow_nonfinite: keep NaN / infinite vertex coordinates instead of raising.
        weld: STL only: merge exactly equal vertices (first occurrence order) instead of
            three vertices per triangle as stored. The other formats index shared vertices
            already and are returned as stored.
    """

    dtype: Any = np.float32
    index_dtype: Any = np.int64
    polygons: bool = False
    allow_nonfinite: bool = False
    weld: bool = False

    def __post_init__(self) -> None:
        dtype = np.dtype(self.dtype)
        index_dtype = np.dtype(self.index_dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        if index_dtype not in (np.int32, np.int64):
            raise ValueError(f"index_dtype must be int32 or int64, got {index_dtype}")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "index_dtype", index_dtype)
