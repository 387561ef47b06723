"""A sample's key: its path relative to the dataset root, without the extension, in POSIX form
(``"chair/train/chair_0001"``); the same for a file read by MeshFolder and for the shard sample
``hetload preprocess`` made of it."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["sample_key"]


def sample_key(rel: str | os.PathLike) -> str:
    """``"chair/a"`` from the relative path ``"chair/a.obj"`` (only the last suffix goes)."""
    path = PurePosixPath(Path(rel).as_posix())
    return path.with_suffix("").as_posix() if path.suffix else path.as_posix()
