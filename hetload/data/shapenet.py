"""``ShapeNetCore``: the ShapeNetCore v2 download as a classification dataset.

Layout::

    root/taxonomy.json                                   optional: synset names
    root/<synset>/<model_id>/models/model_normalized.obj one model (v2; ``model_file`` for others)

A synset is a WordNet id (``02691156``: airplane); every folder under ``root`` whose name is
digits is one, empty ones included, so labels do not depend on which models a copy holds.
Sizes come from the OBJ line prefixes through the :class:`~hetload.data.MeshFolder` size index.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hetload.data.layout import LayoutFolder
from hetload.errors import ErrorPolicy, OnError

__all__ = ["ShapeNetCore"]

log = logging.getLogger("hetload")

TAXONOMY = "taxonomy.json"


class ShapeNetCore(LayoutFolder):
    """Every model of the chosen synsets, labelled by synset.

    Args:
        root: the folder holding the synset folders (``ShapeNetCore.v2/``).
        synsets: the synsets to read, by id or by a name ``taxonomy.json`` gives them
            (``"chair"``); their order does not matter; ``None``: every synset folder under
            ``root``.
        model_file: each model's file, relative to its model folder
            (``"model.obj"`` for the v1 layout).
        transform, on_error, fields, load_options, seed, index, report_path, scan_workers,
            progress: as :class:`~hetload.data.MeshFolder`.

    A sample: what :func:`hetload.io.load` reads from the OBJ (``verts``, ``faces``, ``uvs``,
    ``normals``... as the file has them), ``label`` (int, the synset's index in
    :attr:`classes`) and ``key`` ``"<synset>/<model_id>"``.

    Attributes:
        classes: the sorted synset ids; ``label`` indexes it.
        class_names: per class, the first of the names ``taxonomy.json`` gives its synset
            (``"airplane"`` for ``"airplane,aeroplane,plane"``), or the synset id where the file
            is absent or does not list it.
        targets: int64 ``[len]``, every sample's label, known without reading a model.
        missing: the model folders without ``model_file`` (left out, with a logged warning).

    Raises:
        ValueError: a requested synset has no folder; ``taxonomy.json`` is not a list of
            ``{"synsetId", "name"}`` entries.
    """

    _per_file = (*LayoutFolder._per_file, "_synset_labels")

    def __init__(
        self,
        root: str | os.PathLike,
        synsets: Iterable[str] | None = None,
        *,
        model_file: str = "models/model_normalized.obj",
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
        base = Path(root)
        if not base.is_dir():
            raise ValueError(f"ShapeNetCore: {base} is not a directory")
        on_disk = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name.isdigit())
        taxonomy = _taxonomy(base / TAXONOMY)
        if synsets is None:
            chosen = on_disk
        else:
            chosen = sorted({_synset_id(str(s), taxonomy, base) for s in synsets})
            missing = [s for s in chosen if s not in on_disk]
            if missing:
                raise ValueError(f"ShapeNetCore: no folder for synset(s) {missing} under {base}")
        self._synsets = chosen
        self.model_file = model_file
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
        self.classes = list(chosen)
        self.targets = self._synset_labels
        # MeshFolder sets "label" from these after fields and transform, as it sets "key":
        # ``fields=["verts"]`` or a transform building a new dict dropped it
        self.labels = self.targets
        self.class_names = [taxonomy[s][0] if s in taxonomy else s for s in self.classes]
        if self.missing:
            log.warning(
                "ShapeNetCore: %d model folder(s) without %s left out (ds.missing), e.g. %s",
                len(self.missing),
                model_file,
                self.missing[0],
            )

    def _find_files(self, pattern: str, extensions: Sequence[str]) -> list[Path]:
        files, keys, labels = [], [], []
        self.missing: list[Path] = []
        for label, synset in enumerate(self._synsets):
            for model in sorted((self.root / synset).iterdir()):
                if model.name.startswith("."):
                    continue  # hidden (".DS_Store", "._model"): never a model
                path = model / self.model_file
                if path.is_file():
                    files.append(path)
                    keys.append(f"{synset}/{model.name}")
                    labels.append(label)
                elif model.is_dir():
                    self.missing.append(model)
        self._layout_keys = keys
        self._synset_labels = np.array(labels, dtype=np.int64)
        return files

    def _load(self, index: int) -> dict[str, Any]:
        sample = super()._load(index)
        sample["label"] = int(self._synset_labels[index])
        sample["key"] = self._layout_keys[index]
        return sample


def _taxonomy(path: Path) -> dict[str, list[str]]:
    """``{synset id: [names]}`` from ``taxonomy.json`` (its comma-separated ``name``); empty
    where the file is absent."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"ShapeNetCore: cannot read {path}: {exc}") from exc
    if not isinstance(entries, list):
        raise ValueError(f"ShapeNetCore: {path} is not a list of synset entries")
    names: dict[str, list[str]] = {}
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("synsetId"), str)
            and isinstance(entry.get("name"), str)
        ):
            raise ValueError(f"ShapeNetCore: {path} entry {i} has no string synsetId and name")
        names[entry["synsetId"]] = [n.strip() for n in entry["name"].split(",")]
    return names


def _synset_id(wanted: str, taxonomy: dict[str, list[str]], root: Path) -> str:
    """A synset id, or the id whose taxonomy names include ``wanted`` (``"chair"``)."""
    if wanted.isdigit():
        return wanted
    ids = [s for s, names in taxonomy.items() if wanted in names]
    if len(ids) != 1:
        found = "no synset" if not ids else f"synsets {ids}"
        raise ValueError(
            f"ShapeNetCore: {found} named {wanted!r} in {root / TAXONOMY}; pass the synset id"
        )
    return ids[0]
