"""``SemanticKITTI``: LiDAR scans with per-point semantic and instance labels, as downloaded.

Layout (the SemanticKITTI / KITTI odometry download)::

    root/sequences/<seq>/velodyne/<frame>.bin   float32 little-endian x, y, z, remission per point
    root/sequences/<seq>/labels/<frame>.label   uint32 little-endian per point: low 16 bits the
                                                semantic id, high 16 bits the instance id

Sizes are the ``.bin`` file sizes over 16 (no file is opened), so a sampler can bucket the
~43,000 scans of the training split before one is read. A frame without a ``.label`` file (the
test sequences 11-21 ship none) is a scan without ``semantic`` / ``instance``, unless
``labels=True`` asks for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hetload.data.label_map import LabelMap
from hetload.data.layout import LayoutFolder
from hetload.errors import ErrorPolicy, OnError
from hetload.guards import read_regular
from hetload.io import ReadError
from hetload.io.read_error import check_finite

__all__ = ["SPLITS", "SemanticKITTI"]

#: the benchmark's sequence splits (semantic-kitti.yaml ``split``)
SPLITS: dict[str, tuple[int, ...]] = {
    "train": (0, 1, 2, 3, 4, 5, 6, 7, 9, 10),
    "valid": (8,),
    "test": tuple(range(11, 22)),
}
_POINT_BYTES = 16  # float32 x, y, z, remission
_LABEL_BYTES = 4  # uint32


class SemanticKITTI(LayoutFolder):
    """Every scan of the chosen sequences, as a point cloud with per-point fields.

    Args:
        root: the folder holding ``sequences/``.
        sequences: ``"train"`` | ``"valid"`` | ``"test"`` (:data:`SPLITS`), sequence numbers
            (``[0, 8]``, written ``"00"``, ``"08"``) or folder names; ``None``: every folder
            under ``root/sequences`` that has a ``velodyne`` folder.
        labels: ``None`` reads a frame's ``.label`` where it exists; ``True`` makes a missing
            one an error of that frame (``on_error``); ``False`` never reads them.
        learning_map: applied to ``semantic`` (:class:`~hetload.data.label_map.LabelMap`): a
            ``{raw id: id}`` dict, a loaded ``semantic-kitti.yaml`` or its path (its
            ``learning_map``). A raw id it does not list is an error of that frame.
        transform, on_error, fields, seed, report_path: as :class:`~hetload.data.MeshFolder`.
        allow_nonfinite: keep NaN / infinite coordinates and remissions instead of refusing
            the scan.

    A sample: ``verts`` f32 ``[N, 3]``, ``remission`` f32 ``[N]``, and where labelled
    ``semantic`` int64 ``[N]`` and ``instance`` int64 ``[N]``, all aligned with ``verts``
    (transforms that drop points drop their rows); ``key`` ``"<seq>/<frame>"`` (``"08/000123"``).

    Attributes:
        files: the ``.bin`` files; ``label_files``: their ``.label`` files (present or not).
        labelled: bool ``[len]``: the frames whose ``.label`` file exists (and is read).
        sizes, field_sizes: points per scan, int64 ``[len]`` (``field_sizes["faces"]`` is 0).

    Raises:
        ReadError: (under ``on_error="raise"``, from the constructor already, since sizes come
            from file sizes) a ``.bin`` whose size is not a multiple of 16 bytes, a ``.label``
            holding another number of labels than its scan has points, a missing ``.label``
            under ``labels=True``; the message names the file.
        ValueError: ``root/sequences`` or a requested sequence is missing.
    """

    _per_file = (*LayoutFolder._per_file, "label_files", "labelled")

    def __init__(
        self,
        root: str | os.PathLike,
        sequences: str | Iterable[int | str] | None = None,
        *,
        labels: bool | None = None,
        learning_map: Mapping[Any, Any] | str | os.PathLike | None = None,
        transform: Callable | None = None,
        on_error: OnError | ErrorPolicy = "raise",
        fields: Sequence[str] | None = None,
        seed: int = 0,
        report_path: str | os.PathLike | None = None,
        allow_nonfinite: bool = False,
    ) -> None:
        if labels not in (None, True, False):
            raise ValueError(f"SemanticKITTI(labels=...) is None, True or False, got {labels!r}")
        self.sequences = _sequence_names(Path(root), sequences)
        self.read_labels = labels
        self.learning_map = None if learning_map is None else LabelMap(learning_map)
        self.allow_nonfinite = bool(allow_nonfinite)
        super().__init__(
            root,
            transform=transform,
            on_error=on_error,
            fields=fields,
            seed=seed,
            index=None,
            report_path=report_path,
            progress=False,
        )

    # ------------------------------------------------------------------ layout hooks
    def _find_files(self, pattern: str, extensions: Sequence[str]) -> list[Path]:
        files, keys = [], []
        for seq in self.sequences:
            for path in sorted((self.root / "sequences" / seq / "velodyne").glob("*.bin")):
                if path.name.startswith("."):
                    # hidden: macOS copies leave "._000000.bin" (AppleDouble metadata, 4096
                    # bytes: a whole number of "points"), never a scan
                    continue
                files.append(path)
                keys.append(f"{seq}/{path.stem}")
        self._layout_keys = keys
        self.label_files = [p.parent.parent / "labels" / (p.stem + ".label") for p in files]
        # a .label that is there but broken (a dangling link, a folder, unreadable) is an error
        # of its frame, not a frame without labels: only an absent one means "unlabelled"
        self.labelled = np.array(
            [self.read_labels is not False and os.path.lexists(p) for p in self.label_files],
            dtype=bool,
        )
        return files

    def _count(
        self, index: str | os.PathLike | None, workers: int, progress: bool
    ) -> tuple[np.ndarray, dict[int, ReadError]]:
        counts = np.zeros((len(self.files), 2), dtype=np.int64)
        errors: dict[int, ReadError] = {}
        for i, path in enumerate(self.files):
            try:
                counts[i, 0] = self._points(path, path.stat().st_size)
                if self.labelled[i]:
                    label = self.label_files[i]
                    if not label.is_file():
                        raise ReadError(label, "is not a regular file (a dangling link, a folder?)")
                    self._check_labels(i, label.stat().st_size, counts[i, 0])
                elif self.read_labels:
                    raise ReadError(self.label_files[i], "the label file is missing (labels=True)")
            except OSError as exc:
                errors[i] = ReadError(path, f"cannot read the file: {exc.strerror or exc}")
            except ReadError as exc:
                errors[i] = exc
        return counts, errors

    def _load(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        data = _read(path)
        n = self._points(path, len(data))
        # views of the file's bytes (read-only); the fields below are fresh copies
        points = np.frombuffer(data, dtype="<f4").reshape(n, 4)
        verts = points[:, :3].astype(np.float32)  # native order, contiguous
        remission = points[:, 3].astype(np.float32)
        if not self.allow_nonfinite:
            check_finite(path, "point", verts, lambda row: f"point {row}")
            # a NaN remission is as wrong as a NaN coordinate: a model's input feature
            check_finite(path, "remission of point", remission, lambda row: f"point {row}")
        sample: dict[str, Any] = {"verts": verts, "remission": remission}
        if self.labelled[index]:
            data = _read(self.label_files[index])
            self._check_labels(index, len(data), n)
            raw = np.frombuffer(data, dtype="<u4")
            semantic = (raw & 0xFFFF).astype(np.int64)
            if self.learning_map is not None:
                semantic = self.learning_map(semantic, self.label_files[index])
            sample["semantic"] = semantic
            sample["instance"] = (raw >> 16).astype(np.int64)
        elif self.read_labels:
            raise ReadError(self.label_files[index], "the label file is missing (labels=True)")
        sample["key"] = self._layout_keys[index]
        return sample

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _points(path: Path, nbytes: int) -> int:
        n, rest = divmod(nbytes, _POINT_BYTES)
        if rest:
            raise ReadError(
                path,
                f"holds {nbytes} bytes, not a multiple of {_POINT_BYTES} (float32 x, y, z, "
                "remission per point): truncated or not a velodyne scan",
            )
        return n

    def _check_labels(self, index: int, nbytes: int, n_points: int) -> None:
        n, rest = divmod(nbytes, _LABEL_BYTES)
        if rest or n != n_points:
            raise ReadError(
                self.label_files[index],
                f"holds {nbytes} bytes ({nbytes / _LABEL_BYTES:g} uint32 labels) but its scan "
                f"{self.files[index].name} has {n_points} points",
            )


def _read(path: Path) -> bytes:
    try:
        return read_regular(path)  # a FIFO would block: refused
    except OSError as exc:
        raise ReadError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    except ValueError as exc:  # NotRegularFile
        raise ReadError(path, str(exc).removeprefix(f"{path}: ")) from exc


def _sequence_names(root: Path, sequences: str | Iterable[int | str] | None) -> list[str]:
    base = root / "sequences"
    if not base.is_dir():
        raise ValueError(f"SemanticKITTI: {base} is not a directory (expected root/sequences/)")
    if sequences is None:
        found = [p for p in base.iterdir() if not p.name.startswith(".")]
        return sorted(p.name for p in found if (p / "velodyne").is_dir())
    if isinstance(sequences, str):
        if sequences not in SPLITS:
            raise ValueError(
                f"SemanticKITTI: sequences={sequences!r} is not a split ({sorted(SPLITS)}); "
                "pass a list of sequence numbers for one sequence"
            )
        sequences = SPLITS[sequences]
    names = [f"{s:02d}" if isinstance(s, (int, np.integer)) else str(s) for s in sequences]
    twice = sorted({s for s in names if names.count(s) > 1})
    if twice:  # [8, "08"]: every frame of the sequence would be served twice an epoch
        raise ValueError(f"SemanticKITTI: sequence(s) {twice} listed twice")
    missing = [s for s in names if not (base / s / "velodyne").is_dir()]
    if missing:
        raise ValueError(
            f"SemanticKITTI: no velodyne folder for sequence(s) {missing} under {base}"
        )
    return names
