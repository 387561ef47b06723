"""The base of the datasets of on-disk layouts: a :class:`MeshFolder` whose keys are the layout's.

ShapeNetCore's key is ``<synset>/<model_id>``, a ScanNet scene's is its name, a SemanticKITTI
scan's is ``<sequence>/<frame>``: not the file's path below the root. Each layout lists its files
and keys together and puts ``"key"`` in the sample it reads (so ``fields`` may name it and
transforms see it); ``__getitem__`` sets it again on the sample the folder returns, so every
sample carries it whatever ``fields`` and ``transform`` keep.
"""

from __future__ import annotations

from typing import Any

from hetload.data.mesh_folder import MeshFolder

__all__ = ["LayoutFolder"]


class LayoutFolder(MeshFolder):
    """A :class:`MeshFolder` whose subclass sets ``_layout_keys`` (``list[str]``, one per file)
    in its ``_find_files``."""

    _layout_keys: list[str]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        sample = super().__getitem__(index)
        if sample is not None:
            sample["key"] = self._layout_keys[index]
        return sample
