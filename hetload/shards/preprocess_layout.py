"""The on-disk layouts as ``preprocess`` inputs: ModelNet, ShapeNetCore, ScanNet, SemanticKITTI.

``preprocess(src, dst, layout="scannet")`` lists the samples with the layout's own dataset
class (:mod:`hetload.data`), so that the files, keys, class labels and per-point labels are
exactly what that class reads:

- inputs are the layout's samples in its order, each named by its key (``"<synset>/<model>"``,
  the scene name, ``"<seq>/<frame>"``, ``"<class>/<split>/<file>"``): that key is the sample's
  ``source`` and its ``key`` when read back;
- each worker reads a sample with the layout's reader (:meth:`LayoutReader.__call__`): the
  mesh or scan with its per-point fields (``labels``, ``semantic``, ``instance``: int64 ``[N]``
  aligned with ``verts``, label map applied) as ``.npy`` members;
- class labels (ModelNet, ShapeNetCore) go beside the arrays as ``label``, and the classes to
  the index (``ShardDataset(...).classes``), through the same targets as ``--labels``.

Files the layout itself refuses while listing (under ``on_error="skip"|"warn"``) are recorded in
``errors.jsonl`` like unreadable inputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetload.errors import ErrorPolicy
from hetload.shards.targets import Targets

__all__ = ["LAYOUTS", "LayoutInputs", "LayoutReader", "layout_inputs"]

#: ``--layout`` name -> the dataset class of :mod:`hetload.data` that reads it
LAYOUTS = {
    "modelnet": "ModelNet",
    "shapenet": "ShapeNetCore",
    "scannet": "ScanNetScenes",
    "semantic-kitti": "SemanticKITTI",
}
#: the options each layout takes from preprocess (the class's own argument names)
LAYOUT_OPTIONS = {
    "modelnet": ("split",),
    "shapenet": ("synsets", "model_file"),
    "scannet": ("scenes", "label_map"),
    "semantic-kitti": ("sequences", "labels", "learning_map", "allow_nonfinite"),
}


class LayoutReader:
    """Reads sample ``path`` of a layout dataset as the dataset reads it (before ``fields`` and
    transforms), with its ``key``; picklable, so each preprocess worker gets one."""

    def __init__(self, dataset: Any, stores_label: bool) -> None:
        self.dataset = dataset
        self.positions = {str(path): i for i, path in enumerate(dataset.files)}
        self.stores_label = stores_label

    def __call__(self, path: str | os.PathLike) -> dict[str, Any]:
        i = self.positions[str(path)]
        sample = dict(self.dataset._load(i))  # raises ReadError naming the file
        if self.stores_label:
            sample.pop("label", None)  # stored from the targets (the same number), not twice
        sample["key"] = self.dataset.keys[i]
        return sample


@dataclass
class LayoutInputs:
    """``inputs``: ``(key, path)`` per sample in the layout's order; ``reader``: what reads them;
    ``targets``: the class labels; ``skipped``: what the layout refused while listing
    (``errors.jsonl`` entries); ``settings``: what the run's header records."""

    inputs: list[tuple[str, Path]]
    reader: LayoutReader
    targets: Targets
    skipped: list[dict[str, str]]
    settings: dict[str, Any]


def layout_inputs(
    src: str | os.PathLike,
    layout: str,
    options: Mapping[str, Any] | None,
    on_error: str,
) -> LayoutInputs:
    """List the samples of the ``layout`` under ``src``.

    Raises:
        ValueError: an unknown layout or option (naming the valid ones), or what the layout's
            class raises for a missing folder / requested synset, scene or sequence.
    """
    from hetload import data

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of: {', '.join(LAYOUTS)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(LAYOUT_OPTIONS[layout]))
    if unknown:
        raise ValueError(
            f"layout {layout} takes no option {unknown[0]!r}; it takes: "
            f"{', '.join(LAYOUT_OPTIONS[layout])}"
        )
    cls = getattr(data, LAYOUTS[layout])
    kwargs: dict[str, Any] = {"on_error": on_error}
    from hetload.config.coverage import signature_names

    accepted = signature_names(LAYOUTS[layout])
    if "progress" in accepted:
        kwargs["progress"] = False
    if "index" in accepted:
        kwargs["index"] = None  # no size cache written into (or beside) the user's data
    dataset = cls(src, **options, **kwargs)
    skipped = [s.as_dict() for s in dataset.report]
    # the workers read with raise: their errors come back to preprocess's own policy
    dataset.policy = ErrorPolicy("raise")
    keys = list(dataset.keys)
    inputs = [(key, Path(path)) for key, path in zip(keys, dataset.files)]
    classes = getattr(dataset, "classes", None)
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = getattr(dataset, "labels", None)
    if classes is not None and isinstance(labels, np.ndarray):
        values = [{"label": int(v)} for v in labels.tolist()]
        targets = Targets(values, list(classes), {"labels": f"layout:{layout}"})
    else:
        targets = Targets([], None, {})
    settings = {"name": layout, "options": {k: _plain(v) for k, v in sorted(options.items())}}
    reader = LayoutReader(dataset, stores_label=bool(targets.values))
    return LayoutInputs(inputs, reader, targets, skipped, settings)


def _plain(value: Any) -> Any:
    """An option as the JSON header holds it (paths as strings, label maps as dicts)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
