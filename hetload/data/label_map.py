"""``LabelMap``: raw per-point label ids -> training ids, vectorized, refusing unknown ids.

Benchmarks store raw ids and publish a table to the ids a model trains on: SemanticKITTI's
``semantic-kitti.yaml`` has ``learning_map`` (raw ``252: moving-car`` -> ``1: car``), ScanNet's
``scannetv2-labels.combined.tsv`` maps its ids to NYU40. A :class:`LabelMap` applies one such
table to a whole array at once: a gather from a dense lookup table where the raw ids are small
non-negative integers (they are, in both benchmarks), else a ``searchsorted``. An id the table
does not list is an error naming the file, never a silent 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hetload.io import ReadError

__all__ = ["LabelMap"]

_DENSE_LIMIT = 1 << 20  # raw ids up to this get a lookup table (8 MiB at most)
_UNKNOWN = np.iinfo(np.int64).min  # the lookup table's mark for an id the map lacks


class LabelMap:
    """A table ``raw id -> id``, applied to arrays of any shape.

    Args:
        table: a ``{raw: id}`` mapping of integers; a mapping holding a ``"learning_map"`` entry
            (a loaded ``semantic-kitti.yaml``); or the path of such a YAML file.

    >>> LabelMap({10: 1, 252: 1, 0: 0})(np.array([252, 10, 0]), "frame.label")
    array([1, 1, 0])
    """

    def __init__(self, table: Mapping[Any, Any] | str | os.PathLike) -> None:
        source = "label map"
        if isinstance(table, (str, os.PathLike)):
            source = os.fspath(table)
            try:
                table = yaml.safe_load(Path(table).read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ValueError(f"cannot read the label map {source}: {exc}") from exc
        if isinstance(table, Mapping) and "learning_map" in table:
            table = table["learning_map"]
        if not isinstance(table, Mapping) or not table:
            raise ValueError(
                f"{source}: a label map is a non-empty {{raw id: id}} mapping or a YAML file "
                f"with a 'learning_map', got {type(table).__name__}"
            )
        try:
            pairs = sorted((_integer(k), _integer(v)) for k, v in table.items())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: label map entries must be integers ({exc})") from None
        self.raw = np.array([k for k, _ in pairs], dtype=np.int64)  # sorted [K]
        self.ids = np.array([v for _, v in pairs], dtype=np.int64)  # [K]
        if (self.ids == _UNKNOWN).any():
            raise ValueError(f"{source}: {_UNKNOWN} cannot be a label map's id")
        self.dense: np.ndarray | None = None  # [max raw + 1], _UNKNOWN where not listed
        if self.raw[0] >= 0 and self.raw[-1] < _DENSE_LIMIT:
            self.dense = np.full(int(self.raw[-1]) + 1, _UNKNOWN, dtype=np.int64)
            self.dense[self.raw] = self.ids

    def __call__(self, values: np.ndarray, source: str | os.PathLike) -> np.ndarray:
        """``values`` mapped, int64, same shape.

        Raises:
            ReadError: a value the table does not list (names ``source`` and the first one).
        """
        values = _int64_ids(values, source)
        if self.dense is not None and (
            values.size == 0 or (values.min() >= 0 and values.max() < len(self.dense))
        ):
            out = self.dense[values]
            known = out != _UNKNOWN
        else:
            at = np.minimum(np.searchsorted(self.raw, values), len(self.raw) - 1)
            out = self.ids[at]
            known = self.raw[at] == values
        if not known.all():
            first = int(np.flatnonzero(~known.reshape(-1))[0])
            raise ReadError(
                source,
                f"label {int(values.reshape(-1)[first])} (point {first}) is not in the label map "
                f"(it maps {len(self.raw)} ids)",
            )
        return out

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"LabelMap({len(self)} ids -> {len(np.unique(self.ids))} classes)"


def _int64_ids(values: Any, source: str | os.PathLike) -> np.ndarray:
    """``values`` as int64, refusing a cast that would change them: fractions or NaN (a
    float 2.7 would map as 2), numbers beyond int64 (a uint64 2**64 - 1 would map as -1)."""
    values = np.asarray(values)
    kind = values.dtype.kind
    if kind == "b" or kind not in "iuf":
        raise ReadError(source, f"label ids must be integers, got dtype {values.dtype}")
    if (
        values.size
        and kind == "f"
        and not (
            np.array_equal(values, np.round(values))
            and values.min() >= -(2.0**63)
            and values.max() < 2.0**63
        )
    ):
        raise ReadError(source, "label ids must be whole numbers within int64")
    if values.size and kind == "u" and int(values.max()) > np.iinfo(np.int64).max:
        raise ReadError(source, f"label id {int(values.max())} is beyond int64")
    return values.astype(np.int64, copy=False)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{value!r} is not an integer")
    return int(value)
