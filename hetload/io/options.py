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
        dtype: floating dtype of ``verts``, ``normals``, ``uvs`` and float colors (extra PLY
            properties keep their stored type): float32 (the default: a PLY ``double``
            coordinate is rounded, 500000.456 becomes 500000.47), float64, or ``None`` for "as
            stored" (a PLY property's own type, integers widened to a float that holds them;
            float64 for text numbers).
        index_dtype: integer dtype of ``faces``, ``faces_uvs``, ``faces_normals``, ``polygons``.
        polygons: also return the polygons as written: ``polygons`` (flat vertex indices,
            ``[sum P_j]``) and ``polygon_sizes`` (``[P]``).
        allow_nonfinite: keep NaN / infinite values instead of raising; checked in every float
            field (positions, normals, uvs, float colors, float extra properties).
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
        dtype = None if self.dtype is None else np.dtype(self.dtype)
        index_dtype = np.dtype(self.index_dtype)
        if dtype is not None and dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32, float64 or None (as stored), got {dtype}")
        if index_dtype not in (np.int32, np.int64):
            raise ValueError(f"index_dtype must be int32 or int64, got {index_dtype}")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "index_dtype", index_dtype)

    def float_dtype(self, *stored: Any) -> np.dtype:
        """The dtype of a float field whose values are stored as ``stored`` dtypes: ``dtype``, or
        for ``dtype=None`` the stored type (integers widened to a float that holds them exactly:
        uint8 / int16 -> float32, int32 -> float64)."""
        if self.dtype is not None:
            return self.dtype
        return np.result_type(*(np.dtype(d).newbyteorder("=") for d in stored), np.float32)
