"""Reading meshes and point clouds: ``load`` a file into a sample dict, ``scan`` its sizes.

- :func:`load` (``load.py``): OBJ (``obj.py``) and PLY (``ply.py``) by hetload's own vectorized
  readers, other formats through trimesh (``fallback.py``)
- :func:`scan`: vertex / face counts from the PLY header or OBJ line prefixes, no float parsing
- :class:`ReadError` (``read_error.py``): raised for every file that cannot be read exactly
"""

from hetload.io.load import MeshInfo, load, scan
from hetload.io.options import LoadOptions
from hetload.io.read_error import ReadError

__all__ = ["LoadOptions", "MeshInfo", "ReadError", "load", "scan"]
