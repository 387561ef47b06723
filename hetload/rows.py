"""Row selection that keeps a sample consistent: the one mechanism behind every transform that
drops or reorders the rows of a field (:class:`~hetload.transforms.Subsample`,
:class:`~hetload.transforms.SphereCrop`, a user's own through :func:`select_rows`).

Selecting rows of one field changes every field related to it, as the
:class:`~hetload.schema.Schema` says:

- **aligned fields** (``rows_of``: per-vertex ``normals``/``colors``, per-face ``face_colors``,
  per-corner ``faces_uvs``) keep the same rows, in the same order. Alignment is symmetric and
  transitive: selecting faces selects ``face_colors`` and ``faces_uvs``, and the other way round;
- **index fields** pointing into a selected field (``faces``/``edges`` -> ``verts``, ``faces_uvs``
  -> ``uvs``) are renumbered. A row that points at a dropped row is dropped, with every field
  aligned with it (a face touching a dropped vertex goes, and so do its ``face_colors``): an index
  field never holds ``-1`` or a stale number after a selection;
- ``polygons`` (``load(polygons=True)``) is grouped by ``polygon_sizes``: a polygon is kept when
  all its corners are.

Which fields are aligned:

1. a field some index field of the sample points into is a table of its own (OBJ ``normals`` with
   ``faces_normals``): its rows change only when it is selected itself, and unreferenced rows stay;
2. otherwise a field the schema declares with ``rows_of`` follows that field when it has as
   many rows; with another count it is a table of its own too (OBJ ``vn`` / ``vt`` lines that no
   face references: ``normals`` ``[6, 3]`` beside 8 vertices);
3. a name the schema does not know follows ``faces`` when it is named ``face_*`` with one row per
   face (PLY face properties), else the geometry (``verts``, or ``points``) when it has one row
   per vertex (PLY vertex properties such as ``intensity``). A ``face_*`` field that matches no
   face count (a per-polygon list property of a triangulated mesh) cannot follow the faces, so
   it is dropped when they change. Other fields (other PLY elements, per-sample values) are kept
   as they are: declare an unknown index field in the schema (``"edge_vertex1": "index:verts"``)
   for it to be renumbered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from hetload.schema import DEFAULT_SCHEMA, Schema

__all__ = ["check_aligned", "select_rows"]

_GEOMETRY = ("verts", "points")
_GROUPED = {"polygons": "polygon_sizes"}  # flat field -> its per-group sizes
#: index fields where -1 marks "none" (an OBJ face corner without a uv or normal index)
_OPTIONAL_INDEX = ("faces_uvs", "faces_normals")


def select_rows(
    sample: Mapping[str, Any],
    field: str,
    keep: np.ndarray | list[int],
    *,
    schema: Schema | None = None,
) -> dict[str, Any]:
    """Keep rows ``keep`` of ``field`` and keep every related field consistent (module docstring).

    Args:
        sample: field name -> value; numpy arrays or CPU tensors ``[N, *D]`` are not modified
            (a new dict is returned).
        field: the field whose rows are selected (``"verts"``, ``"faces"``, ...).
        keep: integer positions ``[K]`` (any order: a reorder; no repeats) or a bool mask ``[N]``.
        schema: the relations between fields; ``None`` uses the default schema.

    Returns:
        A new sample dict.

    Raises:
        ValueError: naming the field, for positions out of range or repeated, a mask of the
            wrong length, an index field holding numbers outside its target, or group sizes
            that do not add up.
    """
    schema = DEFAULT_SCHEMA if schema is None else schema
    out = dict(sample)
    if not _is_rows(out.get(field)):
        raise ValueError(f"select_rows: the sample has no array field {field!r} to select rows of")
    _Selection(out, schema).select(field, keep)
    return out


def check_aligned(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    where: str,
    *,
    schema: Schema | None = None,
) -> None:
    """Refuse ``after`` (a transform's output) where fields that were aligned in ``before`` (one
    row per row of each other, by the rules above: per-vertex ``labels`` / ``colors`` / PLY
    properties, per-face ``face_colors``...) now have different row counts: a transform that
    dropped points but not their labels. ``collate`` would batch them, every label shifted.

    Raises:
        ValueError: naming ``where`` and both fields with their row counts.
    """
    schema = DEFAULT_SCHEMA if schema is None else schema
    try:
        groups = _Selection(dict(before), schema)
    except ValueError:  # misaligned already as read: the reader's or dataset's error, not this
        return
    rows = {k: len(v) for k, v in after.items() if _is_rows(v)}
    seen: dict[str, str] = {}  # class root -> first member present after
    for name in sorted(groups.parent):
        if name not in rows or name in groups.grouped.values():
            continue
        root = groups._root(name)
        first = seen.setdefault(root, name)
        if rows[first] != rows[name]:
            raise ValueError(
                f"{where}: after the transform {first!r} has {rows[first]} rows but {name!r} "
                f"has {rows[name]}; they had one row per row of each other before it. A "
                "transform that drops or reorders rows must do so in every aligned field "
                "(hetload.rows.select_rows does)"
            )


class _Selection:
    def __init__(self, sample: dict[str, Any], schema: Schema) -> None:
        self.sample = sample
        self.schema = schema
        arrays = {k for k, v in sample.items() if _is_rows(v)}
        self.index: dict[str, str] = {}
        for name in arrays:
            spec = schema.fields.get(name)
            if spec is not None and spec.kind == "index" and spec.index_of in arrays:
                self.index[name] = spec.index_of
        self.grouped = {k: v for k, v in _GROUPED.items() if k in arrays and v in arrays}
        tables = set(self.index.values())
        # union-find over alignment: each class of fields shares its rows
        self.parent = {name: name for name in arrays}
        self.orphans: list[str] = []  # face_* fields that cannot follow the faces
        for name in sorted(arrays):
            if name in tables or name in self.grouped:
                continue
            target = self._aligned_with(name, arrays)
            if target is not None:
                self.parent[self._root(name)] = self._root(target)

    def _aligned_with(self, name: str, arrays: set[str]) -> str | None:
        spec = self.schema.fields.get(name)
        if spec is not None:
            target = spec.rows_of
            if target is None or target not in arrays:
                return None
            if len(self.sample[name]) == len(self.sample[target]):
                return target
            # OBJ files hold vn / vt lines that no face references, in any number: a field
            # the schema has an index field into may be such a table. Any other (per-point
            # labels, colors, remission) with another row count is misaligned: kept as it is,
            # its rows would silently stop matching the selected ones
            if any(f.index_of == name for f in self.schema.fields.values()):
                return None
            raise ValueError(
                f"field {name!r} has {len(self.sample[name])} rows but {target!r}, which it has "
                f"one row per row of, has {len(self.sample[target])}: the sample is misaligned"
            )
        rows = len(self.sample[name])
        if name.startswith("face_"):
            if "faces" in arrays and rows == len(self.sample["faces"]):
                return "faces"
            self.orphans.append(name)
            return None
        geometry = next((g for g in _GEOMETRY if g in arrays and g != name), None)
        if geometry is not None and rows == len(self.sample[geometry]):
            return geometry
        return None

    def _root(self, name: str) -> str:
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def members(self, name: str) -> list[str]:
        root = self._root(name)
        return [k for k in self.parent if self._root(k) == root]

    def select(self, field: str, keep: Any) -> None:
        sample = self.sample
        rows = len(sample[field])
        positions = _positions(field, keep, rows)
        if len(positions) == rows and (positions == np.arange(rows)).all():
            return  # nothing dropped, nothing moved
        members = self.members(field)
        for name in members:
            if name in self.grouped.values():
                continue
            sample[name] = _take(sample[name], positions)
        for flat, sizes in self.grouped.items():
            if sizes in members:
                sample[flat] = _take(
                    sample[flat], _group_rows(flat, sample[flat], sample[sizes], positions)
                )
                sample[sizes] = _take(sample[sizes], positions)
        if any(name.startswith("face_") or name == "faces" for name in members):
            for name in self.orphans:
                sample.pop(name, None)
            self.orphans = []
        new_id = np.full(rows, -1, dtype=np.int64)
        new_id[positions] = np.arange(len(positions))
        for name, target in list(self.index.items()):
            if target in members:
                self._renumber(name, target, new_id, rows)

    def _renumber(self, name: str, target: str, new_id: np.ndarray, rows: int) -> None:
        """Renumber index field ``name`` after ``target``'s rows changed (``new_id[old]`` is the
        new row, ``-1`` for a dropped one); rows pointing at dropped rows are dropped."""
        original = self.sample[name]
        values = original.numpy() if isinstance(original, torch.Tensor) else original
        if values.dtype.kind not in "iu":
            raise ValueError(f"field {name!r} indexes {target!r} but has dtype {values.dtype}")
        low = -1 if name in _OPTIONAL_INDEX else 0
        if values.size and (int(values.min()) < low or int(values.max()) >= rows):
            bad = int(values.min()) if int(values.min()) < low else int(values.max())
            raise ValueError(
                f"field {name!r} holds index {bad}, outside the {rows} rows of {target!r}"
            )
        # -1 is an OBJ corner without a uv / normal: it stays -1, its face is not dropped
        missing = (values == -1) if name in _OPTIONAL_INDEX else None
        if missing is not None and missing.any():
            mapped = new_id[np.where(missing, 0, values)]
            mapped[missing] = -1
        else:
            missing = None
            mapped = new_id[values]
        dtype = values.dtype
        if name in self.grouped:
            sizes = np.asarray(self.sample[self.grouped[name]])
            _group_rows(name, values, sizes, np.zeros(0, np.int64))  # checks the sizes
            alive = _groups_alive(mapped >= 0, sizes)
            self.sample[name] = mapped
            self.select(self.grouped[name], np.flatnonzero(alive))
        else:
            kept = mapped >= 0 if missing is None else (mapped >= 0) | missing
            alive = kept.reshape(len(mapped), int(np.prod(mapped.shape[1:]))).all(axis=1)
            self.sample[name] = mapped
            if not alive.all():
                self.select(name, np.flatnonzero(alive))
        renumbered = self.sample[name].astype(dtype, copy=False)
        if isinstance(original, torch.Tensor):
            renumbered = torch.from_numpy(renumbered)
        self.sample[name] = renumbered


def _is_rows(value: Any) -> bool:
    """An array with rows: numpy, or a CPU tensor (a sample read back from shards)."""
    if isinstance(value, torch.Tensor):
        return value.dim() >= 1 and value.device.type == "cpu"
    return isinstance(value, np.ndarray) and value.ndim >= 1


def _take(value: Any, positions: np.ndarray) -> Any:
    if isinstance(value, torch.Tensor):
        return value[torch.from_numpy(positions)]
    return value[positions]


def _positions(field: str, keep: Any, rows: int) -> np.ndarray:
    """``keep`` as int64 positions, checked: a bool mask of ``rows``, or unique ints in range."""
    keep = np.asarray(keep)
    if keep.dtype == bool:
        if keep.shape != (rows,):
            raise ValueError(
                f"field {field!r}: a row mask must have shape ({rows},), got {keep.shape}"
            )
        return np.flatnonzero(keep)
    if keep.ndim != 1 or (keep.size and keep.dtype.kind not in "iu"):
        raise ValueError(
            f"field {field!r}: rows to keep must be 1-D integer positions or a bool mask, "
            f"got {keep.dtype} of shape {keep.shape}"
        )
    keep = keep.astype(np.int64, copy=False) if keep.size else np.zeros(0, np.int64)
    if keep.size and (int(keep.min()) < 0 or int(keep.max()) >= rows):
        raise ValueError(
            f"field {field!r}: row positions must lie in [0, {rows}), "
            f"got {int(keep.min())}..{int(keep.max())}"
        )
    seen = np.zeros(rows, dtype=bool)
    seen[keep] = True
    if int(seen.sum()) != keep.size:
        raise ValueError(f"field {field!r}: row positions to keep must not repeat")
    return keep


def _groups_alive(alive: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per group, whether every element of it is alive (``alive``: bool per flat element)."""
    ends = np.cumsum(sizes)
    dead = np.cumsum(~alive)
    before = np.concatenate([[0], dead])[ends - sizes]
    return (np.concatenate([[0], dead])[ends] - before) == 0


def _group_rows(name: str, flat: Any, sizes: Any, groups: np.ndarray) -> np.ndarray:
    """Positions into ``flat`` of the elements of ``groups`` (positions into ``sizes``), group
    after group; ``sizes`` must be non-negative and sum to ``len(flat)``."""
    sizes = np.asarray(sizes)
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or (sizes.size and sizes.min() < 0):
        raise ValueError(f"field {name!r}: its group sizes must be 1-D non-negative integers")
    if int(sizes.sum()) != len(flat):
        raise ValueError(
            f"field {name!r} has {len(flat)} rows but its group sizes sum to {int(sizes.sum())}"
        )
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    lengths = sizes[groups].astype(np.int64)
    first = np.repeat(starts[groups], lengths)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return first + within
