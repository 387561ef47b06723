"""hetload: batches of heterogeneous 3D data (meshes, point clouds) for PyTorch.

The path from samples to a GPU batch, one hop each:

- :func:`hetload.collate` (``collate.py``): sample dicts -> :class:`HeteroBatch` of packed fields
- :class:`hetload.Ragged` (``ragged.py``): one packed field; ``.padded()``, ``.mask``, ``.unbind()``
- :mod:`hetload.ops` (``ops/``): ``packed_to_padded`` / ``padded_to_packed``, the device kernels
"""

from hetload import batched, data, interop, io, ops, samplers, transforms
from hetload.batch import HeteroBatch
from hetload.collate import collate
from hetload.config import build_loader
from hetload.errors import ErrorPolicy
from hetload.ragged import Ragged
from hetload.schema import DEFAULT_SCHEMA, Field, Schema

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SCHEMA",
    "ErrorPolicy",
    "Field",
    "HeteroBatch",
    "Ragged",
    "Schema",
    "__version__",
    "batched",
    "build_loader",
    "collate",
    "data",
    "interop",
    "io",
    "ops",
    "samplers",
    "transforms",
]
