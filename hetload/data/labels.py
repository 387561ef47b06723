"""Sample keys and per-sample class labels, the one mechanism every dataset and
``hetload preprocess`` use.

- A sample's **key** is its path relative to the dataset root, without the extension, in POSIX
  form (``chair/train/chair_0001``): stable across machines and splits.
- **labels** (:func:`resolve_labels`) come from

  * ``"folder"``: the sample's top folder under the root is its class; ``classes`` are the
    sorted names of *every* folder directly under the root, empty ones included, so a class
    keeps its number in a split where it has no file (ModelNet's ``test`` folders);
  * a mapping ``{key or relative path: label}``, each label an int or a class name;
  * a callable ``key -> int | str``.

  Class names (strings) are numbered by their position in ``classes``: the explicit list when
  one is given (any other name is an error), else the sorted set of names seen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Union

import numpy as np

__all__ = ["LabelSpec", "folder_classes", "resolve_labels", "sample_key"]

#: what ``labels=`` accepts
LabelSpec = Union[str, Mapping[str, Any], Callable[[str], Any], None]


def sample_key(rel: str | os.PathLike) -> str:
    """``"chair/a"`` from the relative path ``"chair/a.obj"`` (only the last suffix goes)."""
    path = PurePosixPath(Path(rel).as_posix())
    return path.with_suffix("").as_posix() if path.suffix else path.as_posix()


def folder_classes(root: str | os.PathLike) -> list[str]:
    """Sorted names of the folders directly under ``root`` (hidden ones left out), empty folders
    included: the classes of a class-per-folder layout."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def resolve_labels(
    root: str | os.PathLike,
    rels: Sequence[str],
    labels: LabelSpec,
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str] | None]:
    """``(labels int64 [len(rels)], classes)`` for the files ``rels`` (relative POSIX paths).

    Raises:
        ValueError: naming the file for a file outside every class folder, a label the mapping
            lacks, a class name not in ``classes``, or a label that is neither int nor str.
    """
    root = Path(root)
    if isinstance(labels, str):
        if labels != "folder":
            raise ValueError(f"labels must be 'folder', a mapping or a callable, got {labels!r}")
        names = list(classes) if classes is not None else folder_classes(root)
        raw: list[Any] = []
        for rel in rels:
            parts = PurePosixPath(rel).parts
            if len(parts) < 2:
                raise ValueError(
                    f"labels='folder' needs every file in a class folder under {root}; "
                    f"{rel} is not"
                )
            raw.append(parts[0])
        return _numbered(raw, rels, names, root), names
    if isinstance(labels, Mapping):
        raw = []
        for rel in rels:
            key = sample_key(rel)
            if key in labels:
                raw.append(labels[key])
            elif rel in labels:
                raw.append(labels[rel])
            else:
                raise ValueError(f"{root / rel}: no label for {key!r} in the labels mapping")
    elif callable(labels):
        raw = [labels(sample_key(rel)) for rel in rels]
    else:
        raise TypeError(
            f"labels must be 'folder', a mapping or a callable, got {type(labels).__name__}"
        )
    names = list(classes) if classes is not None else None
    if names is None and any(isinstance(v, str) for v in raw):
        names = sorted({v for v in raw if isinstance(v, str)})
    return _numbered(raw, rels, names, root), names


def _numbered(
    raw: list[Any], rels: Sequence[str], names: list[str] | None, root: Path
) -> np.ndarray:
    if names is not None and len(set(names)) != len(names):
        raise ValueError(f"classes holds a name twice: {names}")
    lookup = {name: i for i, name in enumerate(names or ())}
    out = np.empty(len(raw), dtype=np.int64)
    for i, (value, rel) in enumerate(zip(raw, rels)):
        if isinstance(value, str):
            if value not in lookup:
                raise ValueError(f"{root / rel}: class {value!r} is not in classes {names}")
            out[i] = lookup[value]
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            out[i] = int(value)
        else:
            raise ValueError(
                f"{root / rel}: a label is an int or a class name, got {type(value).__name__}"
            )
    return out
