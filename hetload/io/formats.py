"""The file formats :func:`hetload.io.load` reads, and how a folder's inputs are found.

This is the one list: ``MeshFolder``, ``hetload check`` and ``hetload preprocess`` all find
their inputs through :func:`find_mesh_files`, so a format ``load`` reads is never skipped by one
of them, and a file nothing reads is reported rather than passed over in silence.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "COMPANION_EXTENSIONS",
    "FALLBACK_EXTENSIONS",
    "MESH_EXTENSIONS",
    "OWN_EXTENSIONS",
    "MeshFiles",
    "find_mesh_files",
    "is_hetload_file",
    "normalize_extensions",
]

#: read by hetload's own readers, faithfully (vertices as stored, in the file's order)
OWN_EXTENSIONS: tuple[str, ...] = (".obj", ".ply", ".off", ".stl")
#: read through trimesh (``hetload/io/fallback.py``), which may merge or split vertices; a
#: format whose optional trimesh dependency is missing raises ``ReadError`` naming the file
FALLBACK_EXTENSIONS: tuple[str, ...] = (".glb", ".gltf", ".3mf", ".dae", ".xyz")
#: every suffix ``load`` reads (compared case-insensitively)
MESH_EXTENSIONS: tuple[str, ...] = OWN_EXTENSIONS + FALLBACK_EXTENSIONS
#: files that come with meshes and are read through them (OBJ materials, textures, glTF
#: buffers): neither inputs nor worth a report
COMPANION_EXTENSIONS: tuple[str, ...] = (
    ".mtl", ".png", ".jpg", ".jpeg", ".bmp", ".tga", ".tif", ".tiff", ".webp", ".ktx2", ".bin",
)  # fmt: skip

# files hetload itself writes beside the data: the size index (.hetload-index.json and its
# temporary names), the preprocess journal; never inputs, never "unreadable files"
_OWN_FILE_PREFIX = ".hetload-"


def normalize_extensions(extensions: Iterable[str] | str | None) -> tuple[str, ...]:
    """``("obj", ".PLY")`` -> ``(".obj", ".ply")``; ``None`` -> :data:`MESH_EXTENSIONS`.

    Raises:
        ValueError: an empty selection or an empty suffix.
    """
    if extensions is None:
        return MESH_EXTENSIONS
    if isinstance(extensions, str):
        extensions = extensions.split(",")
    out: list[str] = []
    for ext in extensions:
        ext = str(ext).strip().lower()
        if not ext.lstrip("."):
            raise ValueError(f"extensions: {ext!r} is not a file suffix")
        ext = ext if ext.startswith(".") else "." + ext
        if ext not in out:
            out.append(ext)
    if not out:
        raise ValueError("extensions: the selection is empty")
    return tuple(out)


def is_hetload_file(path: str | os.PathLike) -> bool:
    """``True`` for the files hetload writes beside the data (the size index, the journal)."""
    return Path(path).name.startswith(_OWN_FILE_PREFIX)


@dataclass
class MeshFiles:
    """What :func:`find_mesh_files` found under a folder.

    Attributes:
        files: the inputs, sorted by relative path (``/``-separated).
        unreadable: files of a suffix no hetload reader handles (reported, never read),
            except :data:`COMPANION_EXTENSIONS` (materials, textures).
        not_selected: files of a suffix ``load`` reads that ``extensions`` left out.
        loops: links to a folder that holds them (``a/up -> ..``): not followed (their files
            are reached once, by their own path); a dataset reports each.
        unlisted: ``(folder, reason)`` of the folders that could not be listed (permissions):
            their files are unknown; a dataset reports each.
    """

    files: list[Path]
    unreadable: list[Path] = field(default_factory=list)
    not_selected: list[Path] = field(default_factory=list)
    loops: list[Path] = field(default_factory=list)
    unlisted: list[tuple[Path, str]] = field(default_factory=list)

    def unreadable_note(self, root: str | os.PathLike, show: int = 5) -> str:
        """One line naming (the first ``show`` of) the unreadable files, for a log."""
        names = ", ".join(p.relative_to(root).as_posix() for p in self.unreadable[:show])
        more = f" and {len(self.unreadable) - show} more" if len(self.unreadable) > show else ""
        return (
            f"{len(self.unreadable)} files under {root} have a suffix no reader handles, "
            f"not loaded: {names}{more}"
        )


def find_mesh_files(
    root: str | os.PathLike,
    extensions: Iterable[str] | str | None = None,
    pattern: str = "**/*",
) -> MeshFiles:
    """Every file under ``root`` whose suffix is in ``extensions`` (default: every format
    ``load`` reads), sorted by relative path; hidden files and folders (a name starting with
    ``.``, where hetload's own index and journal live) are left out.

    Args:
        root: the folder.
        extensions: suffixes to keep (``".off"`` or ``"off"``, any case); ``None``: all of
            :data:`MESH_EXTENSIONS`.
        pattern: a glob relative to ``root``.
    """
    root = Path(root)
    wanted = normalize_extensions(extensions)
    found = MeshFiles([])
    for path in _glob(root, pattern, found):
        rel = path.relative_to(root)
        # a FIFO / device / dangling link named like a mesh is listed: its reader reports it
        # (opening it would block); only folders are never candidates
        if any(part.startswith(".") for part in rel.parts) or path.is_dir():
            continue
        suffix = path.suffix.lower()
        if suffix in wanted:
            found.files.append(path)
        elif suffix in MESH_EXTENSIONS:
            found.not_selected.append(path)
        elif suffix not in COMPANION_EXTENSIONS:
            found.unreadable.append(path)
    for group in (found.files, found.unreadable, found.not_selected, found.loops):
        group.sort(key=lambda p: p.relative_to(root).as_posix())
    return found


def _glob(root: Path, pattern: str, found: MeshFiles) -> Iterator[Path]:
    """``root.glob(pattern)``, except that ``**`` also descends into links to folders (Python
    3.11's ``**`` does not: a dataset whose class folders are links to another disk, a common
    layout, would silently have no files in them). A link back to a folder already on the
    path being walked is a loop: it is added to ``found.loops`` and not followed. A folder that
    cannot be listed (permissions) is added to ``found.unlisted``, not passed over in silence."""
    parts = Path(pattern).parts
    if not parts or Path(pattern).is_absolute():
        raise ValueError(f"a folder pattern is a non-empty relative glob, got {pattern!r}")
    seen: set[Path] = set()
    for path in _match(root, parts, (_identity(root),), found):
        if path not in seen:  # "**/*" reaches a file once per "**" depth it matches at
            seen.add(path)
            yield path


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _entries(folder: Path, found: MeshFiles) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:  # removed while walking: nothing below it
        return []
    except OSError as exc:  # pathlib's glob passes over it: its files would vanish silently
        if all(folder != seen for seen, _ in found.unlisted):  # "**" visits a folder per depth
            found.unlisted.append((folder, exc.strerror or str(exc)))
        return []


def _subfolders(
    folder: Path, chain: tuple[tuple[int, int], ...], found: MeshFiles
) -> Iterator[tuple[Path, tuple[tuple[int, int], ...]]]:
    for entry in _entries(folder, found):
        if entry.name.startswith("."):
            continue  # hidden folders hold no inputs (find_mesh_files leaves them out)
        try:
            if not entry.is_dir():  # follows links
                continue
            ident = _identity(Path(entry.path))
        except OSError:
            continue
        if ident in chain:
            if Path(entry.path) not in found.loops:
                found.loops.append(Path(entry.path))
            continue
        yield Path(entry.path), (*chain, ident)


def _match(
    folder: Path, parts: tuple[str, ...], chain: tuple[tuple[int, int], ...], found: MeshFiles
) -> Iterator[Path]:
    head, rest = parts[0], parts[1:]
    if head == "**":
        if rest:
            yield from _match(folder, rest, chain, found)
        else:
            yield folder
        for sub, sub_chain in _subfolders(folder, chain, found):
            yield from _match(sub, parts, sub_chain, found)
        return
    if not rest:
        for entry in _entries(folder, found):
            if fnmatch.fnmatchcase(entry.name, head):
                yield Path(entry.path)
        return
    for sub, sub_chain in _subfolders(folder, chain, found):
        if fnmatch.fnmatchcase(sub.name, head):
            yield from _match(sub, rest, sub_chain, found)
