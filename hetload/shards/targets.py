"""Per-sample values ``preprocess`` stores beside the arrays: ``label`` (``--labels folder``, or
from Python a mapping or callable as MeshFolder takes) and the columns of a ``--manifest`` (CSV /
JSONL), resolved once in the main process with
:mod:`hetload.data.labels` (the mechanism MeshFolder uses), so workers and resumed runs see
the same values and ``label`` numbers the same ``classes``."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hetload.data.labels import LabelSpec, manifest_rows, read_manifest, resolve_labels

__all__ = ["Targets", "resolve_targets"]


class Targets:
    """``values[i]``: the dict stored with input ``i``; ``settings``: what the run's header
    records (so a resume with other labels is refused); ``classes``: the class names."""

    def __init__(
        self, values: list[dict[str, Any]], classes: list[str] | None, spec: dict[str, Any]
    ) -> None:
        self.values = values
        self.classes = classes
        digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
        self.settings = {**spec, "classes": classes, "values_sha256": digest} if values else {}


def resolve_targets(
    src: str | os.PathLike,
    rels: Sequence[str],
    labels: LabelSpec = None,
    classes: Sequence[str] | None = None,
    manifest: str | os.PathLike | None = None,
) -> Targets:
    """The values stored with each of ``rels`` (paths relative to ``src``, or as listed in a
    file list ``src``; folder labels are relative to the list's folder then).

    Raises:
        ValueError: a file outside every class folder, a file the manifest lacks, or both
            ``labels`` and a manifest ``label`` column.
    """
    if labels is None and manifest is None:
        if classes is not None:
            raise ValueError("--classes needs --labels folder or a --manifest with a label")
        return Targets([], None, {})
    root = Path(src) if Path(src).is_dir() else Path(src).parent
    rows: list[dict[str, Any]] = [{} for _ in rels]
    # the header records what the labels were made from; the values' digest, what they are
    kind = labels if labels is None or isinstance(labels, str) else type(labels).__name__
    spec: dict[str, Any] = {"labels": kind}
    if manifest is not None:
        rows = manifest_rows(read_manifest(manifest), rels, str(manifest))
        spec["manifest"] = Path(manifest).name
    names: list[str] | None = None if classes is None else list(classes)
    has_label = any("label" in row for row in rows)
    if labels is not None and has_label:
        raise ValueError(f"both --labels {labels} and a 'label' column in {manifest}: pick one")
    if labels is not None:
        numbers, names = resolve_labels(root, rels, labels, classes)
    elif has_label:
        by_rel = {rel: row.pop("label", None) for rel, row in zip(rels, rows)}
        missing = [rel for rel, value in by_rel.items() if value is None]
        if missing:
            raise ValueError(f"{missing[0]}: no 'label' in the manifest {manifest}")
        numbers, names = resolve_labels(root, rels, by_rel, classes)
    else:
        numbers = None
    if numbers is not None:
        for row, number in zip(rows, numbers.tolist()):
            row["label"] = number
    return Targets(rows, names, spec)
