"""Per-sample transforms and sampling on packed batches, on any device.

The per-sample transforms of :mod:`hetload.transforms` run in Python on the CPU workers, one
sample at a time. These run on a whole packed batch (a :class:`~hetload.Ragged` of points with
its offsets), on whatever device it is on, with segment reductions and per-row sample indices
instead of Python loops. Every random draw is a pure function of the sample's seed
(:func:`sample_seeds` from ``(seed, epoch, sample key)``, :mod:`hetload.batched.random`), so a
sample's result does not depend on the batch it lands in, nor on the device.

Functions (Ragged in, Ragged out):

- :func:`random_rotation`, :func:`random_scale`, :func:`jitter`, :func:`random_flip`,
  :func:`center`, :func:`normalize_unit_sphere` (``geometry.py``);
- :func:`sample_surface`: area-weighted points on packed meshes (``surface.py``);
- :func:`farthest_point_sampling` (``fps.py``, compiled kernels from ``cuda/sampling_*``);
- :func:`grid_sample`: Pointcept's ``GridSample`` (``grid.py``, compiled kernels from
  ``cuda/grid_*``; rotation, scaling, flips, jitter and surface sampling likewise run in
  ``cuda/augment_*`` / ``cuda/surface_*`` kernels where built);
- :func:`serialize`: PTv3's z-order / Hilbert codes (``serialize.py``).

Steps on a :class:`~hetload.HeteroBatch` for configs (``device.transforms``): :mod:`pipeline`.
"""

from hetload.batched.fps import farthest_point_sampling
from hetload.batched.geometry import (
    center,
    jitter,
    normalize_unit_sphere,
    random_flip,
    random_rotation,
    random_scale,
)
from hetload.batched.grid import GridSampled, grid_sample
from hetload.batched.pipeline import (
    BatchTransform,
    Center,
    Compose,
    FarthestPoints,
    GridSample,
    Jitter,
    NormalizeUnitSphere,
    RandomFlip,
    RandomRotation,
    RandomScale,
    SamplePoints,
    Serialize,
    build,
)
from hetload.batched.random import sample_seeds
from hetload.batched.serialize import Serialized, serialize
from hetload.batched.surface import sample_surface

__all__ = [
    "BatchTransform",
    "Center",
    "Compose",
    "FarthestPoints",
    "GridSample",
    "GridSampled",
    "Jitter",
    "NormalizeUnitSphere",
    "RandomFlip",
    "RandomRotation",
    "RandomScale",
    "SamplePoints",
    "Serialize",
    "Serialized",
    "build",
    "center",
    "farthest_point_sampling",
    "grid_sample",
    "jitter",
    "normalize_unit_sphere",
    "random_flip",
    "random_rotation",
    "random_scale",
    "sample_seeds",
    "sample_surface",
    "serialize",
]
