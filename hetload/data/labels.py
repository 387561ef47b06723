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
from typing import Any

import numpy as np

from hetload.keys import sample_key, sample_keys

__all__ = [
    "LabelSpec",
    "folder_classes",
    "manifest_rows",
    "read_manifest",
    "resolve_labels",
    "sample_key",
]

#: what ``labels=`` accepts
LabelSpec = str | Mapping[str, Any] | Callable[[str], Any] | None


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
        if classes is None:
            _check_numeric_names(root, names)
        raw: list[Any] = []
        for rel in rels:
            parts = PurePosixPath(rel).parts
            if len(parts) < 2:
                raise ValueError(
                    f"labels='folder' needs every file in a class folder under {root}; {rel} is not"
                )
            raw.append(parts[0])
        return _numbered(raw, rels, names, root), names
    keys = sample_keys(list(rels))  # a file whose key another has too keeps its extension
    if isinstance(labels, Mapping):
        raw = []
        for rel, key in zip(rels, keys):
            if key in labels:
                raw.append(labels[key])
            elif rel in labels:
                raw.append(labels[rel])
            else:
                raise ValueError(f"{root / rel}: no label for {key!r} in the labels mapping")
    elif callable(labels):
        raw = [labels(key) for key in keys]
    else:
        raise TypeError(
            f"labels must be 'folder', a mapping or a callable, got {type(labels).__name__}"
        )
    names = list(classes) if classes is not None else None
    if names is None and any(isinstance(v, str) for v in raw):
        numbers = [rel for v, rel in zip(raw, rels) if not isinstance(v, str)]
        if numbers:
            # the names would be numbered 0, 1, ... and collide with the numbers given
            raise ValueError(
                f"{root / numbers[0]}: its label is a number while other files' are class "
                "names; pass classes= (numbers then mean positions in it) or use one kind"
            )
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
                raise ValueError(
                    f"{root / rel}: class {value!r:.80} is not in classes {_short(names or [])}"
                )
            out[i] = lookup[value]
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            number = int(value)
            # -1 is what a batch holds for a sample without a label: a real label is >= 0
            if number < 0 or (names is not None and number >= len(names)):
                bound = f"[0, {len(names)}) for classes {_short(names)}" if names else ">= 0"
                raise ValueError(f"{root / rel}: label {number} is outside {bound}")
            if number > np.iinfo(np.int64).max:
                raise ValueError(f"{root / rel}: label {number} does not fit int64")
            out[i] = number
        else:
            raise ValueError(
                f"{root / rel}: a label is an int or a class name, got {type(value).__name__}"
            )
    return out


def _check_numeric_names(root: Path, names: list[str]) -> None:
    """Class folders named ``0`` ... ``10`` sort as text (``10`` before ``2``): folder ``2``
    would get label 3, a wrong label that looks right. Refused unless ``classes`` says the
    order."""
    numbers = bool(names) and all(n.isascii() and n.isdigit() for n in names)
    if numbers and names != sorted(names, key=int):
        raise ValueError(
            f"the class folders under {root} are numbers ({_short(names)}) whose text order "
            "is not their numeric order, so folder '2' would not get label 2: pass "
            "classes=sorted(names, key=int), or labels=lambda key: int(key.split('/')[0])"
        )


def _short(names: list[str], show: int = 6) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > show else ""
    return "[" + ", ".join(repr(n) for n in names[:show]) + more + "]"


_MANIFEST_PATH_COLUMNS = ("path", "file", "key")
_RESERVED_COLUMNS = ("key", "source")


def read_manifest(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Per-sample values from a manifest: ``{path or key: {column: value}}``.

    ``.csv``: a header row with a ``path`` (or ``file`` / ``key``) column and one column per
    value; cells that read as integers or floats become numbers, the rest stay strings.
    ``.jsonl``: one object per line with a ``path`` (or ``file`` / ``key``) entry and scalar
    values. The path is relative to the dataset root, with or without the extension.

    Raises:
        ValueError: naming the file and line for a missing path column, a path listed twice,
            an empty cell, or a value that is not a number, string or bool.
    """
    import csv
    import json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"manifest {path}: cannot read it ({exc.strerror or exc})") from None
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"manifest {path} line {number}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise ValueError(f"manifest {path} line {number}: not a JSON object")
            rows.append((number, row))
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for number, row in enumerate(reader, start=2):
            rows.append((number, {k: _cell(path, number, k, v) for k, v in row.items()}))
    else:
        raise ValueError(f"manifest {path}: expected a .csv or .jsonl file")
    out: dict[str, dict[str, Any]] = {}
    for number, row in rows:
        column = next((c for c in _MANIFEST_PATH_COLUMNS if c in row), None)
        if column is None:
            raise ValueError(
                f"manifest {path} line {number}: no 'path' column (one of "
                f"{', '.join(_MANIFEST_PATH_COLUMNS)} names the file)"
            )
        name = str(row.pop(column))
        for key, value in row.items():
            if key in _RESERVED_COLUMNS or key in _MANIFEST_PATH_COLUMNS:
                raise ValueError(f"manifest {path} line {number}: column {key!r} is reserved")
            if not isinstance(value, (int, float, str, bool)):
                raise ValueError(
                    f"manifest {path} line {number}: {key!r} holds a {type(value).__name__}; "
                    "per-sample values are numbers, strings or bools"
                )
        if name in out:
            raise ValueError(f"manifest {path} line {number}: {name} is listed twice")
        out[name] = row
    return out


def _cell(path: Path, number: int, column: str | None, text: str | None) -> Any:
    if column is None or text is None:
        raise ValueError(f"manifest {path} line {number}: the row has a different column count")
    if text == "":
        raise ValueError(f"manifest {path} line {number}: column {column!r} is empty")
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def manifest_rows(
    manifest: Mapping[str, Mapping[str, Any]], rels: Sequence[str], where: str
) -> list[dict[str, Any]]:
    """Each file's manifest row, looked up by key or relative path; a file without one is an
    error naming it."""
    out = []
    for rel, key in zip(rels, sample_keys(list(rels))):
        row = manifest.get(key, manifest.get(rel))
        if row is None:
            raise ValueError(f"{rel}: no row in the manifest {where}")
        out.append(dict(row))
    return out
