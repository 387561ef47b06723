"""Adapters from a :class:`~hetload.HeteroBatch` to the structures of the 3D ecosystem.

============================  ===============================================================
:func:`to_nested`             ``torch.nested`` jagged tensors, one per ragged field
:func:`from_nested`           a jagged nested tensor back to a :class:`~hetload.Ragged`
:func:`to_pyg`                a PyTorch Geometric ``Batch`` (``pos``, ``face [3, F]``, ``batch``,
                              ``ptr``; ``to_data_list()`` works)
:func:`to_pytorch3d_meshes`   PyTorch3D ``Meshes`` (when PyTorch3D is installed)
:func:`to_pytorch3d_pointclouds`  PyTorch3D ``Pointclouds`` (when PyTorch3D is installed)
:func:`to_pointcept`          the ``offset``-style point dict of Pointcept / Point Transformer V3
:func:`from_pointcept`        such a dict back to a ``HeteroBatch``
============================  ===============================================================

Every adapter shares the packed buffers where the target layout allows it (nested values, PyG
node attributes, Pointcept ``coord``); only layouts that differ (PyG's transposed faces, local
face numbering, concatenated features) cost a copy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hetload.batch import HeteroBatch
from hetload.ragged import Ragged, shift_indices

__all__ = [
    "from_nested",
    "from_pointcept",
    "to_nested",
    "to_pointcept",
    "to_pyg",
    "to_pytorch3d_meshes",
    "to_pytorch3d_pointclouds",
]

_PYTORCH3D_HINT = (
    "PyTorch3D is not installed; it has no universal wheel, so install it as its guide says "
    "(https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md), e.g. "
    "pip install 'git+https://github.com/facebookresearch/pytorch3d.git'"
)


# ---------------------------------------------------------------------------- torch.nested
def _local_values(field: Ragged) -> torch.Tensor:
    """``values`` of an index field in each item's own numbering (a copy); others as they are."""
    if field.index_base is None:
        return field.values
    base = torch.repeat_interleave(
        field.index_base[:-1], field.lengths, output_size=len(field.values)
    )
    # in the field's own dtype: int32 faces stay int32
    return shift_indices(field.values, base.view(-1, *([1] * (field.values.dim() - 1))))


def _indexes(field: Ragged, target: Ragged) -> bool:
    """Whether index field ``field`` points into ``target``: its base is the target's offsets
    (the same tensor after collate and ``to``; equal ones after a copy such as ``pin_memory``)."""
    base = field.index_base
    if base is None:
        return False
    if base is target.offsets:
        return True
    return (
        base.shape == target.offsets.shape
        and base.device == target.offsets.device
        and bool(torch.equal(base, target.offsets))
    )


def _nested_of(field: Ragged) -> torch.Tensor:
    return torch.nested.nested_tensor_from_jagged(
        _local_values(field), field.offsets, max_seqlen=field.max_len
    )


def to_nested(data: HeteroBatch | Ragged) -> dict[str, torch.Tensor] | torch.Tensor:
    """Jagged-layout nested tensors ``[B, j, *D]``, always built with ``max_seqlen`` (a host int,
    so nothing waits on the device).

    Args:
        data: a :class:`~hetload.Ragged` (gives one nested tensor) or a batch (gives a dict with
            one nested tensor per ragged field; fixed and metadata fields are left out).

    Returns:
        Nested tensors whose ``values()`` are the packed ``values [sum N_i, *D]`` (shared, not
        copied) and whose ``offsets()`` are the field's ``int64 [B+1]`` offsets. Index fields
        (faces) hold each item's local numbering, a copy, since a nested item has no global frame.
    """
    if isinstance(data, Ragged):
        return _nested_of(data)
    if not isinstance(data, HeteroBatch):
        raise TypeError(f"to_nested expects a HeteroBatch or a Ragged, got {type(data).__name__}")
    return {name: _nested_of(value) for name, value in data.items() if isinstance(value, Ragged)}


def from_nested(nested: torch.Tensor, *, name: str = "values") -> Ragged:
    """A :class:`~hetload.Ragged` over a jagged nested tensor's ``values()`` and ``offsets()``
    (no copy). ``max_len`` comes from the tensor's cached ``max_seqlen`` when it has one.

    Raises:
        ValueError: for a strided-layout nested tensor or a non-nested tensor.
    """
    if not isinstance(nested, torch.Tensor) or not nested.is_nested:
        raise ValueError(f"field {name!r}: from_nested expects a nested tensor")
    if nested.layout != torch.jagged:
        raise ValueError(
            f"field {name!r}: from_nested needs the jagged layout (torch.jagged), "
            f"got {nested.layout}; build it with layout=torch.jagged"
        )
    if nested.lengths() is not None:
        raise ValueError(
            f"field {name!r}: the nested tensor has holes (lengths set besides offsets); "
            "call .contiguous() first"
        )
    # the cached max_seqlen, when the producer passed one; never computed here (a device sync)
    max_len = getattr(nested, "_maybe_max_seqlen", None)
    return Ragged(
        nested.values(),
        nested.offsets().to(torch.int64),
        name=name,
        max_len=int(max_len) if max_len is not None else None,
    )


# ---------------------------------------------------------------------------- PyG
#: hetload field -> PyG attribute; index fields become [k, F] in PyG's convention
#: hetload names -> PyG's: nodes, faces, edges, and the per-sample class a PyG model reads as y
_PYG_NAMES = {
    "verts": "pos",
    "points": "pos",
    "faces": "face",
    "edges": "edge_index",
    "label": "y",
}


def to_pyg(batch: HeteroBatch, *, pos: str | None = None) -> Any:
    """A ``torch_geometric.data.Batch`` over the same buffers.

    Args:
        batch: a batch with a ragged position field.
        pos: the field that becomes ``pos`` (nodes); default ``"verts"``, else ``"points"``.

    Returns:
        A PyG ``Batch``: ``pos [sum N_i, 3]``, ``batch int64 [sum N_i]``, ``ptr int64 [B+1]``;
        ``faces`` as ``face int64 [3, sum F_i]`` and ``edges`` as ``edge_index [2, sum E_i]``
        (global node numbers, as ``Batch.from_data_list`` builds them); ``label`` as ``y``
        ``[B]`` (what PyG models and losses read); every other ragged field
        under its own name (index fields into other fields in local numbering); fixed fields
        ``[B, ...]`` and metadata lists as they are. ``to_data_list()`` gives the samples back.

    Raises:
        ImportError: PyTorch Geometric is not installed.
        ValueError: no position field, or an index field that points into another field under a
            PyG index name.
    """
    try:
        from torch_geometric.data import Batch
    except ImportError as exc:
        raise ImportError("to_pyg needs PyTorch Geometric: pip install torch-geometric") from exc
    pos = _position_field(batch, pos)
    nodes: Ragged = batch[pos]
    out = Batch()
    slices: dict[str, torch.Tensor] = {}
    incs: dict[str, torch.Tensor | None] = {}
    for name, value in batch.items():
        key = "pos" if name == pos else _PYG_NAMES.get(name, name)
        if isinstance(value, Ragged):
            if _indexes(value, nodes):
                out[key] = value.values.transpose(0, 1) if value.values.dim() == 2 else value.values
                incs[key] = nodes.offsets[:-1]
            elif value.index_base is not None and ("index" in key or key == "face"):
                raise ValueError(
                    f"field {name!r} indexes {value.name!r}, not the position field {pos!r}; "
                    "PyG can only increment node indices"
                )
            else:
                out[key] = _local_values(value)
                incs[key] = None
            slices[key] = value.offsets
        else:
            out[key] = value
            slices[key] = torch.arange(len(batch) + 1)
            incs[key] = None
    out.batch = nodes.batch_idx
    out.ptr = nodes.offsets
    out._num_graphs = len(batch)
    out._slice_dict = slices
    out._inc_dict = incs
    return out


def _position_field(batch: HeteroBatch, pos: str | None) -> str:
    if not isinstance(batch, HeteroBatch):
        raise TypeError(f"expected a HeteroBatch, got {type(batch).__name__}")
    candidates = [pos] if pos is not None else ["verts", "points"]
    for name in candidates:
        if isinstance(batch.get(name), Ragged) and batch[name].index_base is None:
            return name
    raise ValueError(
        f"the batch has no ragged position field {' or '.join(map(repr, candidates))} "
        f"(fields: {', '.join(batch.keys())})"
    )


# ---------------------------------------------------------------------------- PyTorch3D
def _pytorch3d_structures() -> Any:
    try:
        from pytorch3d import structures
    except ImportError as exc:
        raise ImportError(_PYTORCH3D_HINT) from exc
    return structures


def to_pytorch3d_meshes(batch: HeteroBatch, *, verts: str = "verts", faces: str = "faces") -> Any:
    """A PyTorch3D ``Meshes`` from lists of ``B`` tensors: ``verts [V_i, 3]`` (views of the
    packed buffer) and ``faces [F_i, 3]`` in local numbering.

    Raises:
        ImportError: PyTorch3D is not installed (the message says how to install it).
        ValueError: the batch lacks ``verts`` or ``faces``.
    """
    structures = _pytorch3d_structures()
    for name in (verts, faces):
        if not isinstance(batch.get(name), Ragged):
            raise ValueError(f"to_pytorch3d_meshes: the batch has no ragged field {name!r}")
    return structures.Meshes(verts=batch[verts].unbind(), faces=batch[faces].unbind(local=True))


def to_pytorch3d_pointclouds(
    batch: HeteroBatch,
    *,
    points: str | None = None,
    normals: str | None = "normals",
    features: str | None = "colors",
) -> Any:
    """A PyTorch3D ``Pointclouds`` from lists of ``B`` tensors ``[P_i, 3]``; ``normals`` and
    ``features`` (cast to float32) are taken when the batch has those fields.

    Raises:
        ImportError: PyTorch3D is not installed (the message says how to install it).
    """
    structures = _pytorch3d_structures()
    name = _position_field(batch, points)
    extra: dict[str, list[torch.Tensor]] = {}
    if normals is not None and isinstance(batch.get(normals), Ragged):
        extra["normals"] = batch[normals].unbind()
    if features is not None and isinstance(batch.get(features), Ragged):
        extra["features"] = [f.float() for f in batch[features].unbind()]
    return structures.Pointclouds(points=batch[name].unbind(), **extra)


# ---------------------------------------------------------------------------- Pointcept
def to_pointcept(
    batch: HeteroBatch,
    *,
    coord: str | None = None,
    feat: Sequence[str] | None = None,
    segment: str | None = "labels",
) -> dict[str, torch.Tensor]:
    """The point dict Pointcept and Point Transformer V3 take.

    Args:
        batch: a batch with a ragged position field.
        coord: the position field (default ``"verts"``, else ``"points"``).
        feat: per-point fields concatenated (cast to float32) into ``feat``; default: the
            position field alone, as Pointcept's ``feat_keys=("coord",)``.
        segment: a per-point label field, copied to ``segment`` when the batch has it.

    Returns:
        ``coord f32 [N, 3]`` (the packed buffer itself), ``feat f32 [N, C]``,
        ``offset int64 [B]`` (cumulative *ends*, ``offsets[1:]``: Pointcept's convention, which
        has no leading 0), ``batch int64 [N]`` and, when present, ``segment [N]``.

    Raises:
        ValueError: a ``feat`` field is missing or not per point (different offsets).
    """
    name = _position_field(batch, coord)
    points: Ragged = batch[name]
    columns = []
    for field in feat or (name,):
        value = batch.get(field)
        if not isinstance(value, Ragged) or value.index_base is not None:
            raise ValueError(
                f"to_pointcept: feat field {field!r} is not a ragged field of the batch"
            )
        if not torch.equal(value.offsets, points.offsets):
            raise ValueError(
                f"to_pointcept: feat field {field!r} is not per point (its offsets differ from "
                f"{name!r}'s)"
            )
        column = value.values.to(torch.float32)
        columns.append(column.reshape(len(column), math.prod(column.shape[1:])))
    out = {
        "coord": points.values,
        "feat": columns[0] if len(columns) == 1 else torch.cat(columns, dim=1),
        "offset": points.offsets[1:],
        "batch": points.batch_idx,
    }
    if segment is not None and isinstance(batch.get(segment), Ragged):
        out["segment"] = batch[segment].values
    return out


def from_pointcept(point: Mapping[str, torch.Tensor], *, coord: str = "verts") -> HeteroBatch:
    """A batch from a Pointcept point dict (``coord``, ``offset`` as cumulative ends, and
    optionally ``feat`` / ``segment``): ``coord`` becomes the ragged field ``coord`` names,
    ``feat`` and ``segment`` become ``feat`` and ``labels``. Buffers are shared.

    Raises:
        ValueError: ``coord`` or ``offset`` missing, or ``offset`` not ending at ``len(coord)``.
    """
    for key in ("coord", "offset"):
        if key not in point:
            raise ValueError(f"from_pointcept: the point dict has no {key!r}")
    ends = torch.as_tensor(point["offset"])
    if ends.dim() != 1 or ends.is_floating_point() or ends.is_complex() or ends.dtype == torch.bool:
        raise ValueError(
            f"from_pointcept: 'offset' must be a 1-D integer tensor of cumulative ends, got "
            f"{ends.dtype} of shape {tuple(ends.shape)}"
        )
    ends = ends.to(torch.int64)
    offsets = torch.cat([ends.new_zeros(1), ends])
    fields: dict[str, Any] = {coord: Ragged(point["coord"], offsets, name=coord)}
    for key, name in (("feat", "feat"), ("segment", "labels")):
        if key in point:
            fields[name] = Ragged(point[key], offsets, name=name)
    return HeteroBatch(fields, batch_size=len(ends))
