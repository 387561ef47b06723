"""Reading meshes and point clouds: ``load`` a file into a sample dict, ``scan`` its sizes.

- :func:`load` (``load.py``): OBJ (``obj.py``), PLY (``ply.py``), OFF (``off.py``) and STL
  (``stl.py``) by hetload's own vectorized readers; GLB / glTF, 3MF, DAE, XYZ through trimesh
  (``fallback.py``); the one list of suffixes is ``formats.py``, which also finds a folder's
  inputs for MeshFolder, ``check`` and ``preprocess``
- :func:`scan`: vertex / face counts from the PLY / OFF / binary STL header or OBJ line
  prefixes, no float parsing
- :class:`ReadError` (``read_error.py``): raised for every file that cannot be read exactly
"""

from hetload.io.load import MeshInfo, load, scan
from hetload.io.options import LoadOptions
from hetload.io.read_error import ReadError

__all__ = ["LoadOptions", "MeshInfo", "ReadError", "load", "scan"]
