"""``ModelNet``: the ModelNet10 / ModelNet40 layout, ``root/<class>/<split>/<class>_0001.off``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hetload.data.labels import folder_classes
from hetload.data.mesh_folder import MeshFolder

__all__ = ["ModelNet"]

SPLITS = ("train", "test")


class ModelNet(MeshFolder):
    """One split of ModelNet (10 or 40) as a labelled :class:`MeshFolder`.

    Samples are ``{"verts": f32 [N, 3], "faces": i64 [F, 3], "key": "chair/train/chair_0001",
    "label": int}``; ``label`` indexes :attr:`classes`, every class folder under ``root``
    sorted, so the numbers are the same in both splits even where a class has no file in one.

    Args:
        root: the folder holding one folder per class (``ModelNet40/``).
        split: ``"train"`` or ``"test"``.
        **options: any other :class:`MeshFolder` argument (``transform``, ``on_error``,
            ``fields``, ``seed``, ...).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", **options: Any) -> None:
        if split not in SPLITS:
            raise ValueError(f"ModelNet split must be one of {SPLITS}, got {split!r}")
        for name in ("pattern", "labels", "classes", "extensions"):
            if name in options:
                raise TypeError(f"ModelNet sets {name!r} itself (the layout fixes it)")
        self.split = split
        for name in folder_classes(root):
            folder = Path(root) / name
            # root/chair/*.off without root/chair/train/: not ModelNet's layout, and the class
            # would be empty in every split without a word
            if not (folder / split).is_dir() and any(
                p.suffix.lower() == ".off" for p in folder.iterdir() if not p.name.startswith(".")
            ):
                raise ValueError(
                    f"ModelNet: {folder} holds .off files but no {split}/ folder (the layout is "
                    "root/<class>/<split>/*.off); for a folder per class use MeshFolder(root, "
                    "labels='folder')"
                )
        super().__init__(
            root,
            f"*/{split}/*",
            extensions=(".off",),
            labels="folder",
            classes=folder_classes(root),
            **options,
        )

    def __repr__(self) -> str:
        return (
            f"ModelNet({str(self.root)!r}, split={self.split!r}, files={len(self)}, "
            f"classes={len(self.classes or ())})"
        )
