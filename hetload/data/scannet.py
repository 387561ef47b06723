"""``ScanNetScenes``: indoor scenes as PLY meshes with per-vertex labels.

Two layouts, mixed freely under one root:

- ScanNet v2 (``scans/``)::

      root/<scene>/<scene>_vh_clean_2.ply                 the mesh, with the scan's colors
      root/<scene>/<scene>_vh_clean_2.labels.ply          optional: the same mesh + ``label``
      root/<scene>/<scene>_vh_clean_2.0.010000.segs.json  optional: segment of each vertex
      root/<scene>/<scene>.aggregation.json               optional: objects as lists of segments

  Geometry and colors come from the plain mesh, ``labels`` from the ``.labels.ply`` (whose
  vertices must be the same; its colors paint the labels, they are not the scan's, so they are
  never read as colors); with both JSON files the scene also gets per-vertex ``instance`` ids.
  A scene folder holding only the ``.labels.ply`` is read from it, without colors.
- simplified: ``root/<scene>.ply``, any PLY whose vertices carry integer properties named
  ``label``, ``labels``, ``semantic`` and/or ``instance``.

Sizes come from the PLY headers through the :class:`~hetload.data.MeshFolder` size index.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hetload.data.label_map import LabelMap
from hetload.data.layout import LayoutFolder
from hetload.errors import ErrorPolicy, OnError
from hetload.io import ReadError, load

__all__ = ["POINT_LABEL_PROPERTIES", "ScanNetScenes", "point_labels"]

#: PLY vertex properties exposed as per-vertex int64 fields: what ``hetload.io.load`` names
#: them (``label`` is a reserved sample name, so load calls it ``vertex_label``) -> field
POINT_LABEL_PROPERTIES: dict[str, str] = {
    "vertex_label": "labels",
    "labels": "labels",
    "semantic": "semantic",
    "instance": "instance",
}
_LABELLED = "_vh_clean_2.labels.ply"
_PLAIN = "_vh_clean_2.ply"
_SEGMENTS = "_vh_clean_2.0.010000.segs.json"
_AGGREGATION = ".aggregation.json"


class ScanNetScenes(LayoutFolder):
    """Every scene under ``root``, with its per-vertex labels.

    Args:
        root: the folder holding the scene folders (ScanNet's ``scans/``) and/or scene PLYs.
        scenes: the scene names to read, or the path of a split file listing one per line
            (ScanNet's ``scannetv2_train.txt``); ``None``: every scene under ``root``.
        label_map: applied to ``labels`` and ``semantic``
            (:class:`~hetload.data.label_map.LabelMap`): a ``{raw id: id}`` dict (e.g. ScanNet
            ids to NYU40 or to the 20 benchmark classes). An id it does not list is an error of
            that scene.
        transform, on_error, fields, load_options, seed, index, report_path, scan_workers,
            progress: as :class:`~hetload.data.MeshFolder`.

    A sample: what :func:`hetload.io.load` reads (``verts``, ``faces``, ``colors``...), with the
    label properties (of the ``.labels.ply`` where there is one) as int64 ``[N]`` fields aligned
    with ``verts`` (:func:`point_labels`: ``labels`` from ``label``, ``semantic``,
    ``instance``; ScanNet's segment files give ``instance``: the ``objectId`` of the vertex's
    object, -1 for a vertex in none, a later object winning where two list one segment, as
    ScanNet's own scripts do), and ``key``: the scene name. Scenes without labels (ScanNet's
    test scenes) have no label fields.

    Attributes:
        scenes: the scene names, in sample order; ``files``: each scene's mesh;
            ``label_files``: its ``.labels.ply`` or ``None``.

    Raises:
        ValueError: a requested scene is missing, or two files claim one scene name.
        ReadError: (``on_error``) a label property that is a list or not integral, a
            ``.labels.ply`` or segment files that do not match the mesh; the message names the
            file.
    """

    _per_file = (*LayoutFolder._per_file, "label_files")

    def __init__(
        self,
        root: str | os.PathLike,
        scenes: Iterable[str] | str | os.PathLike | None = None,
        *,
        label_map: Mapping[Any, Any] | str | os.PathLike | None = None,
        transform: Callable | None = None,
        on_error: OnError | ErrorPolicy = "raise",
        fields: Sequence[str] | None = None,
        load_options: dict[str, Any] | None = None,
        seed: int = 0,
        index: str | os.PathLike | None = "auto",
        report_path: str | os.PathLike | None = None,
        scan_workers: int = 8,
        progress: bool = True,
    ) -> None:
        if isinstance(scenes, (str, os.PathLike)):
            scenes = _split_file(Path(scenes))
        self._wanted = None if scenes is None else [str(s) for s in scenes]
        self.label_map = None if label_map is None else LabelMap(label_map)
        super().__init__(
            root,
            transform=transform,
            on_error=on_error,
            fields=fields,
            load_options=load_options,
            seed=seed,
            index=index,
            report_path=report_path,
            scan_workers=scan_workers,
            progress=progress,
        )
        self.scenes = list(self._layout_keys)

    def _find_files(self, pattern: str, extensions: Sequence[str]) -> list[Path]:
        found: dict[str, tuple[Path, Path | None]] = {}  # scene -> (mesh, .labels.ply)
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue  # hidden: macOS "._scene.ply" metadata, editors' folders; never scenes
            if entry.is_dir():
                name = entry.name
                plain, labelled = entry / (name + _PLAIN), entry / (name + _LABELLED)
                if not labelled.is_file():
                    labelled = None
                mesh = plain if plain.is_file() else labelled
                if mesh is None:
                    continue
            elif entry.is_file() and entry.suffix.lower() == ".ply":
                name, mesh, labelled = entry.stem, entry, None
            else:
                continue
            if name in found:
                raise ValueError(
                    f"ScanNetScenes: {found[name][0]} and {mesh} are both scene {name!r}"
                )
            found[name] = mesh, labelled
        names = sorted(found)
        if self._wanted is not None:
            missing = [s for s in self._wanted if s not in found]
            if missing:
                raise ValueError(
                    f"ScanNetScenes: {len(missing)} requested scene(s) not under {self.root}: "
                    f"{missing[:5]}"
                )
            names = sorted(set(self._wanted))
        self._layout_keys = names
        self.label_files: list[Path | None] = [found[s][1] for s in names]
        return [found[s][0] for s in names]

    def _load(self, index: int) -> dict[str, Any]:
        path, labelled = self.files[index], self.label_files[index]
        sample = super()._load(index)
        if labelled == path:
            sample.pop("colors", None)  # the label colors of ScanNet's visualisation
        sample = point_labels(path, sample)
        if labelled is not None and labelled != path:
            labels = point_labels(labelled, load(labelled, **self.load_options))
            if not np.array_equal(labels["verts"], sample["verts"], equal_nan=True):
                raise ReadError(
                    labelled,
                    f"its {len(labels['verts'])} vertices are not the {len(sample['verts'])} "
                    f"of {path.name}",
                )
            for field in set(POINT_LABEL_PROPERTIES.values()) & labels.keys():
                sample[field] = labels[field]
        if "instance" not in sample and path.parent.name == self._layout_keys[index]:
            instance = _instances(path.parent, path.parent.name, len(sample["verts"]))
            if instance is not None:
                sample["instance"] = instance
        if self.label_map is not None:
            for name in ("labels", "semantic"):
                if name in sample:
                    sample[name] = self.label_map(sample[name], labelled or path)
        sample["key"] = self._layout_keys[index]
        return sample


def point_labels(path: str | os.PathLike, sample: dict[str, Any]) -> dict[str, Any]:
    """``sample`` (as :func:`hetload.io.load` read ``path``) with its PLY label properties as
    per-vertex int64 ``[N]`` fields (:data:`POINT_LABEL_PROPERTIES`); modified in place.

    Raises:
        ReadError: a label property is a list, has another length than ``verts``, holds
            non-integral values, or two properties give one field (``label`` and ``labels``).
    """
    n = len(sample["verts"])
    out: dict[str, str] = {}
    present = [(s, f) for s, f in POINT_LABEL_PROPERTIES.items() if s in sample]
    for source, field in present:
        prop = "label" if source == "vertex_label" else source
        if field in out:
            raise ReadError(path, f"vertex properties {out[field]!r} and {prop!r} are both {field}")
        out[field] = prop
        values = sample.pop(source)
        if source + "_sizes" in sample or values.ndim != 1 or len(values) != n:
            raise ReadError(path, f"vertex property {prop!r} is not one number per vertex")
        sample[field] = _int64_labels(path, prop, values)
    return sample


_INT64 = np.iinfo(np.int64)


def _int64_labels(path: str | os.PathLike, prop: str, values: np.ndarray) -> np.ndarray:
    """``values`` as int64, refusing what the cast would change: fractions, NaN, and numbers
    beyond int64 (a float 1e19 or a uint64 2**63 would wrap to a negative label)."""
    if values.dtype.kind not in "iuf":
        raise ReadError(path, f"vertex property {prop!r} has dtype {values.dtype}, not numbers")
    if values.size and values.dtype.kind == "f":
        if not np.array_equal(values, np.round(values)):
            raise ReadError(path, f"vertex property {prop!r} holds non-integral labels")
        # 2**63 is a float64 exactly; every whole float below it fits int64
        if values.min() < -(2.0**63) or values.max() >= 2.0**63:
            raise ReadError(path, f"vertex property {prop!r} holds labels beyond int64")
    elif values.size and values.dtype.kind == "u" and int(values.max()) > _INT64.max:
        raise ReadError(path, f"vertex property {prop!r} holds labels beyond int64")
    return values.astype(np.int64)


def _json_ints(path: Path, what: str, values: list) -> np.ndarray:
    """A JSON list of integers as int64 ``[len]``; a float, bool or string entry is refused
    (``np.asarray(dtype=int64)`` would truncate 2.7 to 2 and read ``true`` as 1)."""
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReadError(path, f"{what}[{i}] is {value!r:.40}, not an integer")
        if not _INT64.min <= value <= _INT64.max:
            raise ReadError(path, f"{what}[{i}] is {value}, beyond int64")
    return np.asarray(values, dtype=np.int64)


def _instances(folder: Path, scene: str, n_verts: int) -> np.ndarray | None:
    """Per-vertex ``objectId`` from ScanNet's segment files, int64 ``[N]`` (-1: no object);
    ``None`` where the scene has neither file."""
    segs, agg = folder / (scene + _SEGMENTS), folder / (scene + _AGGREGATION)
    if not segs.is_file() and not agg.is_file():
        return None
    for have, lack in ((segs, agg), (agg, segs)):
        if not lack.is_file():
            raise ReadError(lack, f"is missing, though {have.name} is there (both or neither)")
    seg_of_vertex = _json(segs).get("segIndices")
    if not isinstance(seg_of_vertex, list) or len(seg_of_vertex) != n_verts:
        size = len(seg_of_vertex) if isinstance(seg_of_vertex, list) else "no"
        raise ReadError(segs, f"has {size} segIndices for a mesh of {n_verts} vertices")
    groups = _json(agg).get("segGroups")
    if not isinstance(groups, list):
        raise ReadError(agg, "has no segGroups list")
    keys, objects = [], []
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("segments"), list):
            raise ReadError(agg, f"segGroups[{i}] has no segments list")
        object_id = group.get("objectId")
        if isinstance(object_id, bool) or not isinstance(object_id, int):
            raise ReadError(agg, f"segGroups[{i}] has no integer objectId")
        _json_ints(agg, f"segGroups[{i}].segments", group["segments"])
        _json_ints(agg, f"segGroups[{i}].objectId", [object_id])
        keys.extend(group["segments"])
        objects.extend([object_id] * len(group["segments"]))
    vertex_seg = _json_ints(segs, "segIndices", seg_of_vertex)
    seg_keys = np.asarray(keys, dtype=np.int64)
    # the later group wins a segment listed twice: unique over the reversed lists keeps it
    unique, first = np.unique(seg_keys[::-1], return_index=True)
    owner = np.asarray(objects, dtype=np.int64)[::-1][first]
    instance = np.full(n_verts, -1, dtype=np.int64)
    if len(unique):
        at = np.minimum(np.searchsorted(unique, vertex_seg), len(unique) - 1)
        hit = unique[at] == vertex_seg
        instance[hit] = owner[at[hit]]
    return instance


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReadError(path, f"is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReadError(path, "is not a JSON object")
    return data


def _split_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"ScanNetScenes: cannot read the split file {path}: {exc}") from exc
    return [line.strip() for line in lines if line.strip()]
