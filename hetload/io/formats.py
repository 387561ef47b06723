"""The file formats :func:`hetload.io.load` reads, and how a folder's inputs are found.

This is the one list: ``MeshFolder``, ``hetload check`` and ``hetload preprocess`` all find
their inputs through :func:`find_mesh_files`, so a format ``load`` reads is never skipped by one
of them, and a file nothing reads is reported rather than passed over in silence.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
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
    """

    files: list[Path]
    unreadable: list[Path] = field(default_factory=list)
    not_selected: list[Path] = field(default_factory=list)

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
    for path in root.glob(pattern):
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
    for group in (found.files, found.unreadable, found.not_selected):
        group.sort(key=lambda p: p.relative_to(root).as_posix())
    return found
