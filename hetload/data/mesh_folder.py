"""``MeshFolder``: a map-style dataset over a folder of mesh files (every format
:func:`hetload.io.load` reads: OBJ, PLY, OFF, STL, GLB / glTF, ...).

Sizes come from :func:`hetload.io.scan` (headers and line prefixes, no float parsing; a file
whose triangle count that cannot tell, such as an ASCII PLY, is loaded once), run in parallel
threads and cached in an index file beside the data (``.hetload-index.json``), so a
sampler can bucket by size before a single sample is read. An entry is trusted only while its
file keeps the same size and mtime. The index is written under a temporary name and renamed;
where the data folder is read-only it goes to the user cache directory instead, and where that
fails too, it lives in memory for this process.

Bad files follow ``on_error`` (:class:`hetload.ErrorPolicy`): ``"raise"``, or ``"skip"`` /
``"warn"``, where ``__getitem__`` returns ``None`` (``hetload.collate`` leaves it out) and the
file and reason are appended to a JSON-lines report file. Appends are atomic, so DataLoader
worker processes all write into the same report, and :attr:`MeshFolder.report` in the main
process lists every file any worker skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from hetload.data.labels import LabelSpec, resolve_labels
from hetload.data.substitute import getitems
from hetload.errors import ErrorPolicy, OnError, Skipped
from hetload.guards import MAX_WORKERS, check_fields, check_regular, check_seed, read_regular
from hetload.io import ReadError, load, scan
from hetload.io.formats import find_mesh_files
from hetload.keys import sample_keys
from hetload.rows import check_aligned
from hetload.transforms import check_out_sizes, out_sizes, run_seeded, sample_rng

__all__ = ["MeshFolder"]

log = logging.getLogger("hetload")
INDEX_NAME = ".hetload-index.json"
_INDEX_VERSION = 2  # 2: faces count the triangles load returns


class MeshFolder(Dataset):
    """Every mesh file under ``root`` as one sample dict (``hetload.io.load``).

    Every sample carries ``"key"``, its path relative to ``root`` without the extension
    (``"chair/a"``; where two files would share one, as ``chair/a.obj`` and ``chair/a.ply``,
    each keeps its whole path: :func:`hetload.keys.sample_keys`), and with ``labels=`` an int
    ``"label"``; both are added after ``fields`` and ``transform``. A file rewritten after the
    dataset was made (other row counts than the size scan found) is a bad file (``on_error``);
    a ``transform`` returning more rows than its ``out_size`` states is an error whatever
    ``on_error`` says (:func:`hetload.transforms.check_out_sizes`).

    Args:
        root: the folder.
        pattern: a glob relative to ``root`` (``"**/*"``: every file below it), filtered by
            ``extensions`` (compared case-insensitively). Files are sorted by relative path;
            hidden files and folders (``.name``, where the size index lives) are left out;
            linked folders are followed, a link to a folder above it (a loop) is reported.
        extensions: file suffixes to keep (``".off"`` or ``"off"``); ``None``: every format
            ``load`` reads (:data:`hetload.io.formats.MESH_EXTENSIONS`). Files of a suffix
            no reader handles are listed in :attr:`unreadable` and logged, never loaded.
        transform: applied to each loaded sample; a :class:`hetload.transforms.Transform` (or
            any callable wrapping them) draws from the sample's generator (see ``seed``).
        on_error: ``"raise"`` | ``"skip"`` | ``"warn"``, or an :class:`~hetload.ErrorPolicy`.
            Under skip / warn a file the size scan cannot read is left out of ``files``; one
            that fails later (``ReadError``), a missing field and a transform's ``ValueError``
            make ``__getitem__`` return ``None``; each adds a line to :attr:`report`. A batch
            is never empty: see :meth:`__getitems__`.
        fields: keep only these fields (every sample must have them: a file without one is a
            bad file), so files with different optional fields batch together. ``None``: all.
        load_options: keyword arguments of :func:`hetload.io.load` (``dtype``, ``polygons``...).
        seed: the base seed; sample ``i`` of epoch ``e`` gets ``sample_rng(seed, e, i)``.
        index: the size cache: ``"auto"`` (``root/.hetload-index.json``, else the user cache
            directory, else memory), a file path, or ``None`` for no file at all.
        report_path: the JSON-lines report file; ``None`` makes a temporary one, removed when
            the dataset is garbage collected in the process that made it.
        scan_workers: threads for the size scan (default: 8).
        progress: show a progress bar while scanning more than a few hundred files.
        labels: ``"folder"`` (the file's top folder under ``root`` is its class), a mapping
            ``{key or relative path: int | class name}``, or a callable ``key -> int | class
            name``; ``None``: no ``"label"``. See :mod:`hetload.data.labels`.
        classes: the class names, numbered in this order; default with ``labels="folder"``
            every folder directly under ``root``, sorted, empty ones included, so the numbers
            are the same in every split.

    Attributes:
        files: ``list[Path]``, one per sample.
        unreadable: ``list[Path]``: files under ``root`` (matching ``pattern``) of a suffix no
            hetload reader handles.
        sizes: ``np.int64 [len]``: vertex count of each sample, after ``transform`` as its
            ``out_size`` states (:func:`hetload.transforms.out_sizes`: ``SamplePoints(n)`` gives
            ``n``), so a sampler budgets what the batch will hold. A file the scan cannot read
            (or that is not a regular file) is not in ``files`` at all under skip / warn: it is
            named in :attr:`report` and no sampler ever plans it.
        field_sizes: ``{"verts": ..., "faces": ...}``, each ``np.int64 [len]``; faces are the
            rows of the loaded ``faces`` field (polygons fan-triangulated), exact for a hard
            per-batch budget: from :func:`hetload.io.scan` where it knows them
            (``MeshInfo.n_triangles``), else from loading the file once while scanning; after
            ``transform`` like ``sizes`` (``raw_field_sizes``: as read).
        keys: ``list[str]``, each sample's key.
        classes: ``list[str]`` or ``None``: the class names ``label`` numbers.
        labels: ``np.int64 [len]`` or ``None``: each sample's label, known without a read.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        pattern: str = "**/*",
        *,
        extensions: Sequence[str] | None = None,
        transform: Callable | None = None,
        on_error: OnError | ErrorPolicy = "raise",
        fields: Sequence[str] | None = None,
        load_options: dict[str, Any] | None = None,
        seed: int = 0,
        index: str | os.PathLike | None = "auto",
        report_path: str | os.PathLike | None = None,
        scan_workers: int = 8,
        progress: bool = True,
        labels: LabelSpec = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"MeshFolder: {self.root} is not a directory")
        self.transform = transform
        # shared: skips in DataLoader workers reach this process's report
        self.policy = ErrorPolicy(on_error, report_path=report_path).share()
        self.report_path = self.policy.report_path
        fields = check_fields(fields, "MeshFolder")
        self.fields = None if fields is None else tuple(fields)
        self.load_options = dict(load_options or {})
        self.seed = check_seed(seed, "MeshFolder: seed")
        if isinstance(scan_workers, bool) or not 1 <= scan_workers <= MAX_WORKERS:
            raise ValueError(f"MeshFolder: scan_workers must be in [1, {MAX_WORKERS}]")
        self.unreadable: list[Path] = []
        self.files = self._find_files(pattern, extensions)
        # shared memory: set_epoch in the main process reaches (even persistent) workers
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

        counts, errors = self._count(index, scan_workers, progress and len(self.files) > 200)
        for i, exc in errors.items():
            self._skip(self.files[i], exc)  # raises under "raise"
        # a file the scan cannot read is left out of the dataset, so no sampler ever plans it
        # (with size 0 it would be batched with the other broken files: an all-skipped batch)
        kept = np.array([i not in errors for i in range(len(self.files))], dtype=bool)
        if not kept.all():
            self._keep_files(kept)
            counts = counts[kept]
        rels = self._rels()
        self.keys = self._sample_keys(rels)
        self.labels: np.ndarray | None = None
        self.classes: list[str] | None = None if classes is None else list(classes)
        if labels is not None:
            self.labels, self.classes = resolve_labels(self.root, rels, labels, classes)
        self.raw_field_sizes = {"verts": counts[:, 0].copy(), "faces": counts[:, 1].copy()}
        # what the batches will hold: the transform states its output sizes (out_size)
        self.field_sizes = {
            name: out_sizes(transform, rows, name) for name, rows in self.raw_field_sizes.items()
        }
        self.sizes = self.field_sizes["verts"]

    # ------------------------------------------------------------------ dataset protocol
    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        """Sample ``index`` (after ``fields`` and ``transform``), or ``None`` when it was
        skipped under ``on_error="skip"|"warn"`` (see :attr:`report`)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"MeshFolder: index {index} out of range for {len(self)} files")
        index %= len(self)
        path = self.files[index]
        try:
            sample = self._load(index)
            self._check_read(index, sample)
            if self.fields is not None:
                sample = self._select(path, sample)
            before = sample
            if self.transform is not None:
                sample = self._transform(sample, index)
        except ValueError as exc:  # ReadError, or a transform refusing this sample
            self._skip(path, exc)
            return None
        if sample is None:
            return None
        if self.transform is not None:
            # outside the policy: a transform that returns more rows than its out_size states
            # is a bug of the code, not of this file, and it would overrun every batch's budget
            where = f"{type(self).__name__} sample {index} ({path})"
            check_out_sizes(
                sample, {name: int(rows[index]) for name, rows in self.field_sizes.items()}, where
            )
            # a transform that cropped the points but not their labels: refused, not batched
            check_aligned(before, sample, where)
        sample = {**sample, "key": self.keys[index]}
        if self.labels is not None:
            sample["label"] = int(self.labels[index])
        return sample

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any] | None]:
        """The samples of one batch (DataLoader calls this with a batch sampler's batches):
        skipped ones are ``None``, and a batch whose every sample was skipped gets one
        substitute instead, named in :attr:`report` (see :mod:`hetload.data.substitute`)."""
        return getitems(self, indices)

    def _describe(self, index: int) -> str:
        return str(self.files[index])

    def set_epoch(self, epoch: int) -> None:
        """Reseed the transforms for ``epoch`` (workers see it: the epoch is in shared memory)."""
        self._epoch.fill_(check_seed(epoch, "MeshFolder: epoch"))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator sample ``index``'s transform draws from in the current epoch."""
        return sample_rng(self.seed, self.epoch, index)

    # ------------------------------------------------------------------ report
    @property
    def report(self) -> list[Skipped]:
        """Every file skipped so far, by any process, once per (file, reason), in order."""
        return self.policy.report

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.root)!r}, files={len(self)}, "
            f"on_error={self.policy.mode!r}, skipped={len(self.report)})"
        )

    # ------------------------------------------------------------------ layout hooks
    # The datasets of on-disk layouts (hetload.data.shapenet, scannet, semantic_kitti) are
    # MeshFolders that find their files, size them and read them their own way; all else (the
    # error policy and its report, fields, seeded transforms, set_epoch) is this class's.
    #: attributes holding one entry per file, in file order: :meth:`_keep_files` filters them
    _per_file: tuple[str, ...] = ("files",)

    def _find_files(self, pattern: str, extensions: Sequence[str] | None) -> list[Path]:
        """The sample files under ``self.root``, in sample order (:func:`find_mesh_files`:
        every format ``load`` reads unless ``extensions`` narrows it; hidden entries, such as
        the size index, never). A folder named like a mesh is not a candidate; a FIFO, device or
        dangling link is reported (it would block or fail its reader), never opened; files no
        reader handles are listed in :attr:`unreadable` and logged."""
        found = find_mesh_files(self.root, extensions, pattern)
        self.unreadable = found.unreadable
        if found.unreadable:
            log.warning("MeshFolder: %s (see .unreadable)", found.unreadable_note(self.root))
        for link in found.loops:
            # its files are read once, by their own path; following it would never end
            self._skip(link, ReadError(link, "links to a folder above it (a loop): not followed"))
        for folder, reason in found.unlisted:
            # its files, unknown, would be missing from the dataset without a word
            self._skip(folder, ReadError(folder, f"cannot list the folder: {reason}"))
        files = []
        for path in found.files:
            try:
                files.append(check_regular(path))
            except (OSError, ValueError) as exc:
                self._skip(path, ReadError(path, str(exc).removeprefix(f"{path}: ")))
        return files

    def _keep_files(self, kept: np.ndarray) -> None:
        """Keep the files where ``kept`` (bool ``[len(files)]``) is True, in every attribute of
        :attr:`_per_file` (a layout lists its own per-file state there)."""
        for name in self._per_file:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                setattr(self, name, value[kept])
            else:
                setattr(self, name, [item for item, keep in zip(value, kept) if keep])

    def _rels(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.files]

    def _check_read(self, index: int, sample: dict[str, Any]) -> None:
        """The rows read must be the rows the size scan counted: a file rewritten between the
        scan and this read (or a size index that went stale within one mtime tick) would make
        ``sizes`` lie to the sampler, and labels planned for the old file apply to the new."""
        for name, counts in self.raw_field_sizes.items():
            value = sample.get(name)
            rows = len(value) if getattr(value, "ndim", 0) >= 1 else 0
            if rows != int(counts[index]):
                raise ReadError(
                    self.files[index],
                    f"has {rows} {name} rows now but {int(counts[index])} when the dataset was "
                    "made: the file changed since (make the dataset again to read it)",
                )

    def _sample_keys(self, rels: list[str]) -> list[str]:
        """Each file's ``"key"`` from its path relative to the root (``rels``)."""
        return sample_keys(rels)

    def _count(
        self, index: str | os.PathLike | None, workers: int, progress: bool
    ) -> tuple[np.ndarray, dict[int, ReadError]]:
        """``(counts int64 [len, 2]`` of vertices and triangles per file, ``{i: error}`` for the
        files that cannot be sized), from the size index."""
        return _SizeIndex(self.root, index).counts(self.files, workers, progress)

    def _load(self, index: int) -> dict[str, Any]:
        """Sample ``index`` as read, before ``fields`` and ``transform``; a ``ValueError``
        (``ReadError``) follows ``on_error``."""
        return load(self.files[index], **self.load_options)

    # ------------------------------------------------------------------ internals
    def _select(self, path: Path, sample: dict[str, Any]) -> dict[str, Any]:
        # "key" and "label" are set after the selection: naming them in fields is no error
        own = {"key"} | ({"label"} if self.labels is not None else set())
        missing = [f for f in self.fields if f not in sample and f not in own]
        if missing:
            raise ReadError(path, f"has no {missing[0]!r} field (MeshFolder fields={self.fields})")
        return {f: sample[f] for f in self.fields if f in sample}

    def _transform(self, sample: dict[str, Any], index: int) -> dict[str, Any]:
        return run_seeded(self.transform, sample, self.rng(index))

    def _skip(self, path: Path, exc: BaseException) -> None:
        self.policy.handle(str(path), exc)  # raises under "raise"


class _SizeIndex:
    """Per-file ``(n_verts, n_triangles)`` cached on disk, keyed by path, size and mtime."""

    def __init__(self, root: Path, index: str | os.PathLike | None) -> None:
        self.root = root
        if index is None:
            self.candidates: list[Path] = []
        elif index == "auto":
            key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
            cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hetload"
            self.candidates = [root / INDEX_NAME, cache / f"index-{key}.json"]
            if not root.stat().st_mode & 0o222:
                # a folder nobody may write to is meant read-only, even for root (who could)
                self.candidates.pop(0)
        else:
            self.candidates = [Path(index)]

    def counts(
        self, files: list[Path], workers: int, progress: bool
    ) -> tuple[np.ndarray, dict[int, ReadError]]:
        """``(counts int64 [len(files), 2], {file number: scan error})``."""
        cached = self._read()
        counts = np.zeros((len(files), 2), dtype=np.int64)
        errors: dict[int, ReadError] = {}
        stale: list[int] = []
        stats: list[tuple[int, int]] = []
        for i, path in enumerate(files):
            try:
                st = path.stat()
            except OSError as exc:  # removed since it was listed: a bad file, not a crash
                errors[i] = ReadError(path, f"cannot read the file: {exc.strerror or exc}")
                stats.append((-1, -1))
                continue
            stats.append((st.st_size, st.st_mtime_ns))
            entry = cached.get(path.relative_to(self.root).as_posix())
            if entry is None or tuple(entry[:2]) != stats[-1]:
                stale.append(i)
                continue
            counts[i] = entry[2:4]
            if entry[4] is not None:
                errors[i] = ReadError(path, entry[4])
        if stale:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                results = pool.map(_scan_one, [files[i] for i in stale])
                bar = tqdm(results, total=len(stale), desc="scanning sizes", disable=not progress)
                for i, (n_verts, n_faces, error) in zip(stale, bar):
                    counts[i] = n_verts, n_faces
                    if error is not None:
                        errors[i] = error
                    entry = [*stats[i], n_verts, n_faces, None if error is None else error.reason]
                    cached[files[i].relative_to(self.root).as_posix()] = entry
            self._write(cached)
        return counts, errors

    def _read(self) -> dict[str, list]:
        for path in self.candidates:
            try:
                # a FIFO in the cache's place is not read (it would block): a cache miss
                data = json.loads(read_regular(path).decode("utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("version") == _INDEX_VERSION:
                return dict(data.get("files", {}))
        return {}

    def _write(self, entries: dict[str, list]) -> None:
        body = json.dumps({"version": _INDEX_VERSION, "files": entries}, separators=(",", ":"))
        for path in self.candidates:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as fh:
                        fh.write(body)
                    os.replace(tmp, path)
                except BaseException:
                    os.unlink(tmp)
                    raise
                return
            except OSError as err:
                log.info("hetload: cannot write the size index %s (%s)", path, err)
        if self.candidates:
            log.info("hetload: keeping the size index of %s in memory", self.root)


def _scan_one(path: Path) -> tuple[int, int, ReadError | None]:
    try:
        info = scan(path)
    except ReadError as exc:
        return 0, 0, exc
    if info.n_triangles is not None:
        return info.n_verts, info.n_triangles, None
    # the header does not tell the triangles (ASCII PLY, tristrips...): a budget needs the
    # exact count, so the file is read once here and the count cached with the other sizes
    try:
        sample = load(path, allow_nonfinite=True)
    except ReadError as exc:
        return info.n_verts, 0, exc
    return info.n_verts, len(sample.get("faces", ())), None
