"""How each field of a sample is batched: the per-field schema.

PyG decides per attribute which dimension to concatenate and what to add to index attributes
(``__cat_dim__`` / ``__inc__``); our equivalent is a :class:`Field` per name:

===========  ==============================================================================
``ragged``   ``[N_i, *D]`` arrays of varying ``N_i``: packed into a :class:`~hetload.Ragged`
``index``    ``[F_i, *D]`` integer rows indexing another ragged field (``index_of``), re-based
             into that field's packed numbering: faces -> verts
``fixed``    same shape in every sample: stacked into ``[B, *shape]`` as ``default_collate``
``meta``     anything else (strings, paths, dicts): kept as a Python list of ``B`` entries
===========  ==============================================================================

A ``ragged`` or ``index`` field may also name the field it is *aligned with* (``rows_of``): one
row per row of that field, e.g. per-vertex ``normals`` (``rows_of="verts"``) or per-face
``face_colors`` and per-corner ``faces_uvs`` (``rows_of="faces"``). Transforms that drop or reorder
rows use both relations (:mod:`hetload.rows`): aligned fields keep the same rows, index fields
are renumbered. As a string: ``"ragged@verts"``, ``"index:uvs@faces"``.

Unknown names follow ``Schema.unknown``: ``"infer"`` (the default) treats arrays/tensors with at
least one dimension as ``ragged`` along dim 0, numbers and 0-d arrays as ``fixed``, everything
else as ``meta``; ``"error"`` refuses them. The rule looks at the name and the type only, never at
sizes, so a field batches the same way in every batch.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["DEFAULT_SCHEMA", "Field", "Schema"]

Kind = Literal["ragged", "index", "fixed", "meta"]
_KINDS = ("ragged", "index", "fixed", "meta")


@dataclass(frozen=True)
class Field:
    """How one field batches. ``index_of`` names the field an ``index`` field points into;
    ``rows_of`` the field a ``ragged`` / ``index`` field has one row per row of."""

    kind: Kind
    index_of: str | None = None
    rows_of: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"field kind must be one of {_KINDS}, got {self.kind!r}")
        if (self.kind == "index") != (self.index_of is not None):
            raise ValueError("an 'index' field needs index_of, and only an index field has one")
        if self.index_of == "":
            raise ValueError("an 'index' field needs the name of the field it points into")
        if self.rows_of is not None and (self.kind not in ("ragged", "index") or not self.rows_of):
            raise ValueError("rows_of names a field, and only a ragged or index field has one")

    @classmethod
    def parse(cls, spec: Field | str) -> Field:
        """``Field`` from ``"ragged"``, ``"fixed"``, ``"meta"`` or ``"index:<target>"``, each
        optionally followed by ``"@<field it is aligned with>"`` (``"ragged@verts"``)."""
        if isinstance(spec, Field):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"a field spec is a Field or a string, got {type(spec)}")
        spec, at, rows_of = spec.partition("@")
        if at and not rows_of:
            raise ValueError(f"field spec {spec + at!r}: '@' must be followed by a field name")
        if spec.startswith("index:"):
            return cls("index", spec.split(":", 1)[1], rows_of or None)
        return cls(spec, None, rows_of or None)  # type: ignore[arg-type]

    def __str__(self) -> str:
        text = self.kind if self.index_of is None else f"index:{self.index_of}"
        return text if self.rows_of is None else f"{text}@{self.rows_of}"


class Schema:
    """A mapping from field name to :class:`Field`, plus the rule for unknown names.

    >>> schema = Schema({"points": "ragged", "edges": "index:points", "label": "fixed"})
    """

    def __init__(
        self,
        fields: Mapping[str, Field | str] | None = None,
        *,
        unknown: Literal["infer", "error"] = "infer",
    ) -> None:
        if fields is not None and not isinstance(fields, Mapping):
            raise TypeError(f"Schema takes a mapping of field name -> spec, got {type(fields)}")
        if unknown not in ("infer", "error"):
            raise ValueError(f"Schema(unknown=...) must be 'infer' or 'error', got {unknown!r}")
        self.fields: dict[str, Field] = {
            name: Field.parse(spec) for name, spec in (fields or {}).items()
        }
        self.unknown = unknown

    def extend(self, fields: Mapping[str, Field | str]) -> Schema:
        """A new schema with ``fields`` added or replaced."""
        merged: dict[str, Field | str] = {**self.fields, **fields}
        return Schema(merged, unknown=self.unknown)  # type: ignore[arg-type]

    def field(self, name: str, value: Any) -> Field:
        """The :class:`Field` for ``name``, inferring from ``value`` when the name is unknown."""
        spec = self.fields.get(name)
        if spec is not None:
            return spec
        if self.unknown == "error":
            raise ValueError(
                f"field {name!r} is not in the schema (known: {sorted(self.fields)}); "
                "add it or use Schema(unknown='infer')"
            )
        return infer_field(value)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"Schema({body}, unknown={self.unknown!r})"


def infer_field(value: Any) -> Field:
    """The default rule for a name the schema does not know (see the module docstring)."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return Field("ragged") if value.ndim >= 1 else Field("fixed")
    if isinstance(value, (bool, numbers.Number, np.generic)):
        return Field("fixed")
    return Field("meta")


#: The names hetload's readers and transforms produce.
DEFAULT_SCHEMA = Schema(
    {
        "verts": "ragged",  # f32 [N, 3]
        "points": "ragged",  # f32 [N, 3] (point clouds)
        # per vertex, unless an index field points into them (OBJ vn / vt: a table of their own)
        "normals": "ragged@verts",  # f32 [N, 3] per vertex (PLY) or [Nn, 3] (OBJ vn)
        "colors": "ragged@verts",  # [N, 3|4] uint8 or float
        "uvs": "ragged@verts",  # f32 [N, 2] (PLY u,v) or [T, 2] (OBJ vt)
        "labels": "ragged@verts",  # i64 [N] per-point labels (PLY `label`, ScanNet)
        "semantic": "ragged@verts",  # i64 [N] per-point semantic ids (SemanticKITTI)
        "instance": "ragged@verts",  # i64 [N] per-point instance ids
        "remission": "ragged@verts",  # f32 [N] LiDAR return strength
        "faces": "index:verts",  # i64 [F, 3] triangles into verts
        "edges": "index:verts",  # i64 [E, 2]
        "lines": "index:verts",  # i64 [E, 2] segments of OBJ 'l' polylines
        "point_indices": "index:verts",  # i64 [P] vertices of OBJ 'p' statements
        "faces_uvs": "index:uvs@faces",  # per-corner uv indices [F, 3]
        "faces_normals": "index:normals@faces",  # per-corner normal indices [F, 3]
        "face_groups": "ragged@faces",  # i64 [F] OBJ o/g group of each triangle
        "face_colors": "ragged@faces",  # [F, 3|4] PLY per-face colors, per triangle
        "polygons": "index:verts",  # i64 [sum P_j] faces as written (load(polygons=True))
        "polygon_sizes": "ragged",  # i64 [P] corners per polygon
        "label": "fixed",  # one class label per sample
        "is_repeat": "fixed",  # bool: served a second time this epoch to fill a step
        "path": "meta",
        "key": "meta",
    }
)
