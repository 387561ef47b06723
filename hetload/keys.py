"""A sample's key: its path relative to the dataset root, without the extension, in POSIX form
(``"chair/train/chair_0001"``); the same for a file read by MeshFolder and for the shard sample
``hetload preprocess`` made of it."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["sample_key", "sample_keys"]


def sample_key(rel: str | os.PathLike) -> str:
    """``"chair/a"`` from the relative path ``"chair/a.obj"`` (only the last suffix goes)."""
    if type(rel) is str and _plain(rel):
        # already in normal form: pathlib's rules without building path objects (readers call
        # this once per sample; pathlib costs ~30 us); tests/test_keys.py checks it against them
        name = rel[rel.rfind("/") + 1 :]
        dot = name.rfind(".")
        return rel[: len(rel) - len(name) + dot] if 0 < dot < len(name) - 1 else rel
    path = PurePosixPath(Path(rel).as_posix())
    return path.with_suffix("").as_posix() if path.suffix else path.as_posix()


def _plain(rel: str) -> bool:
    """Whether ``Path(rel).as_posix()`` is ``rel`` itself on this system: no empty or ``.``
    component, no trailing slash, POSIX separators."""
    return (
        os.sep == "/"
        and rel not in ("", ".")
        and "//" not in rel
        and "/./" not in rel
        and not rel.startswith("./")
        and not rel.endswith(("/", "/."))
    )


def sample_keys(rels: list[str] | tuple[str, ...]) -> list[str]:
    """The keys of the files ``rels`` (distinct relative paths) of one dataset: each
    :func:`sample_key`, except where two files would share one (``chair/a.obj`` beside
    ``chair/a.ply`` or ``chair/a.OBJ``, as real folders hold): those keep their whole relative
    path (``"chair/a.obj"``, ``"chair/a.ply"``), so that no two samples have one key and a
    label looked up by the shared key cannot silently apply to both. Repeated until unique
    (a kept path can equal another file's key: ``a.obj`` and ``a.obj.ply``)."""
    paths = [PurePosixPath(Path(rel).as_posix()).as_posix() for rel in rels]
    if len(set(paths)) != len(paths):
        raise ValueError("sample_keys: a relative path is listed twice")
    keys = [sample_key(rel) for rel in paths]
    while True:
        count: dict[str, int] = {}
        for key in keys:
            count[key] = count.get(key, 0) + 1
        shared = [i for i, key in enumerate(keys) if count[key] > 1 and key != paths[i]]
        if not shared:
            return keys
        for i in shared:
            keys[i] = paths[i]
