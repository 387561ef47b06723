"""The base of the datasets of on-disk layouts: a :class:`MeshFolder` whose keys are the layout's.

ShapeNetCore's key is ``<synset>/<model_id>``, a ScanNet scene's is its name, a SemanticKITTI
scan's is ``<sequence>/<frame>``: not the file's path below the root. Each layout lists its files
and keys together and puts ``"key"`` in the sample it reads (so ``fields`` may name it and
transforms see it); :meth:`_sample_keys` hands the same keys to :class:`MeshFolder`, which sets
``"key"`` on every sample it returns, whatever ``fields`` and ``transform`` keep.
"""

from __future__ import annotations

from hetload.data.mesh_folder import MeshFolder

__all__ = ["LayoutFolder"]


class LayoutFolder(MeshFolder):
    """A :class:`MeshFolder` whose subclass sets ``_layout_keys`` (``list[str]``, one per file)
    in its ``_find_files``."""

    _layout_keys: list[str]
    _per_file: tuple[str, ...] = ("files", "_layout_keys")

    def _sample_keys(self, rels: list[str]) -> list[str]:
        return list(self._layout_keys)
