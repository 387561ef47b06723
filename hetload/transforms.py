"""Per-sample transforms: composable, picklable, and seeded per sample.

Every transform maps a sample dict to a new sample dict (the input is not modified) and draws
its randomness from one ``np.random.Generator``:

- ``t(sample, rng)`` uses ``rng``;
- ``t(sample)`` inside a dataset uses the generator the dataset opened for that sample with
  :func:`seeded`: :class:`hetload.data.MeshFolder` builds it from ``(seed, epoch, index)``
  (:func:`sample_rng`), so a sample's augmentation is the same on any machine, in any worker,
  for the same seed and epoch, and changes with ``set_epoch``. This reaches transforms wrapped
  in plain callables too (a config's chain of steps);
- ``t(sample)`` anywhere else draws from fresh OS entropy.

``verts`` is the geometry. Per-vertex fields are the arrays with one row per vertex:
``normals`` / ``uvs`` unless the sample indexes them per corner (``faces_normals`` /
``faces_uvs``), ``colors``, and extra properties such as PLY ``intensity``. A transform that
keeps a subset of the vertices keeps the same rows of those fields and the faces whose three
corners all survive (re-numbered).

Transforms: :class:`Compose`, :class:`Center`, :class:`NormalizeUnitSphere`,
:class:`RandomRotation`, :class:`RandomScale`, :class:`Jitter`, :class:`SamplePoints`,
:class:`Subsample`, :class:`SphereCrop`, :class:`ToDtype`, :class:`NormalizeColors`;
:func:`build` makes a
:class:`Compose` from config entries (``"Center"`` or ``{"SamplePoints": {"n": 1024}}``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = [
    "Center",
    "Compose",
    "Jitter",
    "NormalizeColors",
    "NormalizeUnitSphere",
    "RandomRotation",
    "RandomScale",
    "SamplePoints",
    "SphereCrop",
    "Subsample",
    "ToDtype",
    "Transform",
    "build",
    "out_sizes",
    "run_seeded",
    "sample_rng",
    "seeded",
]

Sample = dict[str, Any]
_current_rng: contextvars.ContextVar[np.random.Generator | None] = contextvars.ContextVar(
    "hetload_sample_rng", default=None
)
#: fields that are per face or per corner, never per vertex
_NOT_PER_VERTEX = {"faces", "faces_uvs", "faces_normals", "face_groups", "face_colors", "edges"}
_NOT_PER_VERTEX |= {"lines", "point_indices"}  # OBJ 'l' / 'p': indices into verts
_POLYGON_FIELDS = ("polygons", "polygon_sizes")
#: the fields whose rows are the points a size budget counts
_POINT_FIELDS = ("verts", "points")


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` in ``epoch``: independent streams for every triple."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


@contextmanager
def seeded(rng: np.random.Generator) -> Iterator[np.random.Generator]:
    """Make ``rng`` the generator of every transform called (without one) inside the block."""
    token = _current_rng.set(rng)
    try:
        yield rng
    finally:
        _current_rng.reset(token)


def run_seeded(transform: Callable[..., Any], sample: Any, rng: np.random.Generator) -> Any:
    """Apply ``transform`` to ``sample`` drawing from ``rng``: a :class:`Transform` receives it
    as its argument, and inside it (or in any other callable, such as a chain mixing hetload
    transforms with user functions) it is the current generator (:func:`seeded`)."""
    with seeded(rng):
        if isinstance(transform, Transform):
            return transform(sample, rng)
        return transform(sample)


class Transform:
    """Base class: subclasses implement ``apply(sample, rng) -> sample`` on a shallow copy."""

    def __call__(self, sample: Mapping[str, Any] | None, rng: np.random.Generator | None = None):
        if sample is None:  # a sample the dataset dropped stays dropped
            return None
        if rng is None:
            rng = _current_rng.get() or np.random.default_rng()
        return self.apply(dict(sample), rng)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        raise NotImplementedError

    def out_size(self, n: np.ndarray, field: str = "verts") -> np.ndarray:
        """``int64 [N]``: the rows ``field`` has after this transform, given ``n``, its rows
        before (an upper bound where the exact count depends on the data). The default keeps
        sizes: a transform that changes them says so here, so that ``dataset.sizes`` and the
        sampler budget what the batch will hold (:func:`out_sizes`)."""
        return n

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, rng) if isinstance(t, Transform) else t(sample)
            if sample is None:
                return None
        return sample

    def out_size(self, n: np.ndarray, field: str = "verts") -> np.ndarray:
        for t in self.transforms:
            n = out_sizes(t, n, field)
        return n


def out_sizes(transform: Callable[..., Any] | None, n: Any, field: str = "verts") -> np.ndarray:
    """``int64 [N]``: rows of ``field`` after ``transform``, from ``n`` (``[N]``) before, through
    the transform's ``out_size(n, field)``; a callable without one keeps the sizes.

    Datasets given a ``transform`` report these in ``sizes`` / ``field_sizes``, so a
    ``BucketBatchSampler`` budgets the transformed sizes. A custom callable that changes sizes
    states it with an ``out_size`` method of its own.
    """
    n = np.asarray(n, dtype=np.int64)
    method = getattr(transform, "out_size", None)
    if transform is None or method is None:
        return n
    return np.asarray(method(n, field), dtype=np.int64)


def _verts(sample: Sample, who: str) -> np.ndarray:
    verts = sample.get("verts")
    if not isinstance(verts, np.ndarray) or verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"{who} needs a 'verts' array [N, 3], got {type(verts).__name__}")
    return verts


def _set_verts(sample: Sample, values: np.ndarray, like: np.ndarray) -> None:
    sample["verts"] = values.astype(like.dtype, copy=False)


class Center(Transform):
    """Move the vertices so their mean (``"mean"``) or bounding-box center (``"bbox"``) is 0."""

    def __init__(self, center: str = "mean") -> None:
        if center not in ("mean", "bbox"):
            raise ValueError(f"Center(center=...) must be 'mean' or 'bbox', got {center!r}")
        self.center = center

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "Center")
        if len(verts):
            v = verts.astype(np.float64)
            mid = v.mean(0) if self.center == "mean" else (v.min(0) + v.max(0)) / 2
            _set_verts(sample, v - mid, verts)
        return sample


class NormalizeUnitSphere(Transform):
    """Center (mean, or bounding box) and scale so the farthest vertex is at distance 1."""

    def __init__(self, center: str = "mean") -> None:
        self.center = Center(center).center

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "NormalizeUnitSphere")
        if len(verts):
            v = verts.astype(np.float64)
            v -= v.mean(0) if self.center == "mean" else (v.min(0) + v.max(0)) / 2
            radius = np.sqrt((v * v).sum(1).max())
            if radius > 0:
                v /= radius
            _set_verts(sample, v, verts)
        return sample


def _rotation(rng: np.random.Generator, axis: int | None) -> np.ndarray:
    """A uniformly random rotation: of SO(3) (normalized Gaussian quaternion) or about ``axis``."""
    if axis is not None:
        angle = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        return r
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


class RandomRotation(Transform):
    """Rotate ``verts`` and ``normals`` by a random rotation: uniform over all rotations, or
    about one axis (``axis=0|1|2`` or ``"x"|"y"|"z"``, the up axis of most datasets)."""

    def __init__(self, axis: int | str | None = None) -> None:
        if isinstance(axis, str):
            if axis not in ("x", "y", "z"):
                raise ValueError(f"RandomRotation(axis=...) must be x, y or z, got {axis!r}")
            axis = "xyz".index(axis)
        if axis not in (None, 0, 1, 2):
            raise ValueError(f"RandomRotation(axis=...) must be 0, 1, 2 or None, got {axis!r}")
        self.axis = axis

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "RandomRotation")
        r = _rotation(rng, self.axis)
        _set_verts(sample, verts.astype(np.float64) @ r.T, verts)
        normals = sample.get("normals")
        if isinstance(normals, np.ndarray) and normals.ndim == 2 and normals.shape[1] == 3:
            sample["normals"] = (normals.astype(np.float64) @ r.T).astype(normals.dtype)
        return sample


class RandomScale(Transform):
    """Scale by a factor drawn uniformly from ``[low, high]`` (per axis if ``anisotropic``);
    normals follow the inverse transpose and are renormalized."""

    def __init__(self, low: float = 0.8, high: float = 1.25, anisotropic: bool = False) -> None:
        if not 0 < low <= high:
            raise ValueError(f"RandomScale needs 0 < low <= high, got {low}, {high}")
        self.low, self.high, self.anisotropic = float(low), float(high), bool(anisotropic)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "RandomScale")
        scale = rng.uniform(self.low, self.high, size=3 if self.anisotropic else 1)
        _set_verts(sample, verts.astype(np.float64) * scale, verts)
        normals = sample.get("normals")
        if self.anisotropic and isinstance(normals, np.ndarray) and normals.ndim == 2:
            n = normals.astype(np.float64) / scale
            length = np.linalg.norm(n, axis=1, keepdims=True)
            sample["normals"] = np.divide(n, length, out=n, where=length > 0).astype(normals.dtype)
        return sample


class Jitter(Transform):
    """Add Gaussian noise (``sigma``) to each coordinate, clipped to ``[-clip, clip]``."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05) -> None:
        if sigma < 0 or clip < 0:
            raise ValueError(f"Jitter needs sigma, clip >= 0, got {sigma}, {clip}")
        self.sigma, self.clip = float(sigma), float(clip)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "Jitter")
        noise = np.clip(rng.normal(0.0, self.sigma, verts.shape), -self.clip, self.clip)
        _set_verts(sample, verts + noise, verts)
        return sample


def _kept_fields(sample: Sample) -> Sample:
    """The fields that describe the whole sample (label, path, ...), not its rows."""
    return {k: v for k, v in sample.items() if getattr(v, "ndim", 0) == 0}


class SamplePoints(Transform):
    """Sample ``n`` points on the surface, uniformly by area (triangles chosen with probability
    proportional to their area, then a uniform point in each).

    Returns ``verts`` ``[n, 3]`` (the points, in the input's dtype), ``normals`` ``[n, 3]`` (the
    unit normals of their triangles, when ``with_normals``), and the sample-level fields of the
    input (``label``, ``path``, ...); the mesh's other fields no longer apply and are dropped.

    Raises:
        ValueError: the sample has no faces, or their total area is 0.
    """

    def __init__(self, n: int, with_normals: bool = True) -> None:
        if int(n) < 1:
            raise ValueError(f"SamplePoints needs n >= 1, got {n}")
        self.n, self.with_normals = int(n), bool(with_normals)

    def out_size(self, n: np.ndarray, field: str = "verts") -> np.ndarray:
        """``n`` points for ``verts`` / ``points`` / ``normals``; 0 rows for the mesh fields
        it drops."""
        keeps = field in _POINT_FIELDS or (field == "normals" and self.with_normals)
        return np.full_like(n, self.n if keeps else 0)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "SamplePoints")
        faces = sample.get("faces")
        if not isinstance(faces, np.ndarray) or len(faces) == 0:
            raise ValueError("SamplePoints needs a mesh with faces; this sample has none")
        tri = verts.astype(np.float64)[faces]  # [F, 3, 3]
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        double_area = np.linalg.norm(cross, axis=1)
        total = double_area.sum()
        if not np.isfinite(total) or total <= 0:
            raise ValueError("SamplePoints: the faces have no area to sample")
        cdf = np.cumsum(double_area)
        which = np.searchsorted(cdf, rng.uniform(0, cdf[-1], self.n), side="right")
        which = np.minimum(which, len(faces) - 1)
        # uniform barycentric coordinates: sqrt trick (Osada et al. 2002)
        r1 = np.sqrt(rng.uniform(size=(self.n, 1)))
        r2 = rng.uniform(size=(self.n, 1))
        a, b, c = tri[which, 0], tri[which, 1], tri[which, 2]
        points = (1 - r1) * a + r1 * (1 - r2) * b + r1 * r2 * c
        out = _kept_fields(sample)
        out["verts"] = points.astype(verts.dtype)
        if self.with_normals:
            normal = cross[which] / np.maximum(double_area[which], 1e-300)[:, None]
            out["normals"] = normal.astype(verts.dtype)
        return out


def _per_vertex(sample: Sample, n: int) -> list[str]:
    names = []
    for name, value in sample.items():
        if name in _NOT_PER_VERTEX or name in _POLYGON_FIELDS or name.startswith("face_"):
            continue
        if name == "normals" and "faces_normals" in sample:
            continue
        if name == "uvs" and "faces_uvs" in sample:
            continue
        if isinstance(value, np.ndarray) and value.ndim >= 1 and len(value) == n:
            names.append(name)
    return names


def _keep_vertices(sample: Sample, keep: np.ndarray) -> Sample:
    """Keep vertices ``keep`` (ascending int64) and every per-vertex field's same rows; keep the
    faces whose corners all survive, re-numbered, with their per-face / per-corner rows."""
    n = len(sample["verts"])
    for name in _per_vertex(sample, n):
        sample[name] = sample[name][keep]
    for name in _POLYGON_FIELDS:
        sample.pop(name, None)
    faces = sample.get("faces")
    if isinstance(faces, np.ndarray):
        new_id = np.full(n, -1, dtype=np.int64)
        new_id[keep] = np.arange(len(keep))
        mapped = new_id[faces]
        rows = (mapped >= 0).all(axis=1)
        sample["faces"] = mapped[rows].astype(faces.dtype)
        for name in ("faces_uvs", "faces_normals", "face_groups", "face_colors"):
            if name in sample and len(sample[name]) == len(faces):
                sample[name] = sample[name][rows]
    for name in ("lines", "point_indices"):  # OBJ 'l' / 'p': kept where every vertex survives
        index = sample.get(name)
        if isinstance(index, np.ndarray):
            new_id = np.full(n, -1, dtype=np.int64)
            new_id[keep] = np.arange(len(keep))
            mapped = new_id[index]
            alive = (mapped >= 0).reshape(len(mapped), -1).all(axis=1)
            sample[name] = mapped[alive].astype(index.dtype)
    return sample


class Subsample(Transform):
    """Keep at most ``n`` vertices, chosen uniformly without replacement (file order kept)."""

    def __init__(self, n: int) -> None:
        if int(n) < 1:
            raise ValueError(f"Subsample needs n >= 1, got {n}")
        self.n = int(n)

    def out_size(self, n: np.ndarray, field: str = "verts") -> np.ndarray:
        """At most ``n`` vertices; other fields keep at most their rows."""
        return np.minimum(n, self.n) if field in _POINT_FIELDS else n

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        count = len(_verts(sample, "Subsample"))
        if count <= self.n:
            return sample
        keep = np.sort(rng.choice(count, self.n, replace=False))
        return _keep_vertices(sample, keep)


class SphereCrop(Transform):
    """Keep the ``n`` vertices nearest to a center: a random vertex (``center="random"``, as
    PTv3 / Pointcept crop large scenes) or the centroid (``"mean"``). File order is kept."""

    def __init__(self, n: int, center: str = "random") -> None:
        if int(n) < 1:
            raise ValueError(f"SphereCrop needs n >= 1, got {n}")
        if center not in ("random", "mean"):
            raise ValueError(f"SphereCrop(center=...) must be 'random' or 'mean', got {center!r}")
        self.n, self.center = int(n), center

    def out_size(self, n: np.ndarray, field: str = "verts") -> np.ndarray:
        """At most ``n`` vertices; other fields keep at most their rows."""
        return np.minimum(n, self.n) if field in _POINT_FIELDS else n

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "SphereCrop")
        if len(verts) <= self.n:
            return sample
        v = verts.astype(np.float64)
        mid = v[rng.integers(len(v))] if self.center == "random" else v.mean(0)
        distance = ((v - mid) ** 2).sum(1)
        keep = np.sort(np.argpartition(distance, self.n - 1)[: self.n])
        return _keep_vertices(sample, keep)


class ToDtype(Transform):
    """Cast fields: ``ToDtype({"verts": "float16", "faces": "int32"})``; ``floating=`` casts
    every floating-point array at once (``ToDtype(floating="float64")``)."""

    def __init__(self, dtypes: Mapping[str, Any] | None = None, floating: Any = None) -> None:
        self.dtypes = {k: np.dtype(v).name for k, v in (dtypes or {}).items()}
        self.floating = None if floating is None else np.dtype(floating).name

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for name, value in sample.items():
            if not isinstance(value, np.ndarray):
                continue
            if name in self.dtypes:
                sample[name] = value.astype(self.dtypes[name])
            elif self.floating is not None and value.dtype.kind == "f":
                sample[name] = value.astype(self.floating)
        return sample


class NormalizeColors(Transform):
    """Colors as ``float32`` in ``[0, 1]``, whatever the file stored: integer colors (PLY
    ``uchar`` / ``ushort``) are divided by their dtype's maximum, float colors (OBJ ``v x y z r
    g b``, float PLY) are kept as they are (cast to float32). Applies to ``fields``
    (``colors`` and ``face_colors``). Files that store colors differently then batch together;
    without it ``collate`` refuses a field whose dtype differs between samples.

    ``channels``: ``None`` keeps RGB as RGB and RGBA as RGBA; ``3`` drops alpha, ``4`` adds an
    opaque alpha (1.0) to RGB, so that RGB and RGBA files batch together (``[N, 3|4]``)."""

    def __init__(
        self, fields: Sequence[str] = ("colors", "face_colors"), channels: int | None = None
    ) -> None:
        if channels not in (None, 3, 4):
            raise ValueError(f"NormalizeColors(channels=...) must be None, 3 or 4, got {channels}")
        self.fields = tuple(fields)
        self.channels = channels

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for name in self.fields:
            value = sample.get(name)
            if not isinstance(value, np.ndarray):
                continue
            if value.dtype.kind in "ui":
                scale = np.float32(np.iinfo(value.dtype).max)
                value = value.astype(np.float32) / scale
            elif value.dtype.kind == "f":
                value = value.astype(np.float32, copy=False)
            else:
                raise ValueError(f"NormalizeColors: field {name!r} has dtype {value.dtype}")
            if self.channels is not None and value.ndim == 2 and value.shape[1] in (3, 4):
                if self.channels == 3:
                    value = value[:, :3]
                elif value.shape[1] == 3:
                    value = np.concatenate([value, np.ones((len(value), 1), np.float32)], axis=1)
            sample[name] = value
        return sample


_REGISTRY = {
    cls.__name__: cls
    for cls in (
        NormalizeColors,
        Center,
        NormalizeUnitSphere,
        RandomRotation,
        RandomScale,
        Jitter,
        SamplePoints,
        Subsample,
        SphereCrop,
        ToDtype,
    )
}


def build(specs: Sequence[str | Mapping[str, Mapping[str, Any] | None]]) -> Compose:
    """A :class:`Compose` from config entries: ``"Center"`` or ``{"SamplePoints": {"n": 1024}}``.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
        TypeError: arguments the transform does not take.
    """
    steps = []
    for spec in specs:
        if isinstance(spec, str):
            name, kwargs = spec, {}
        elif isinstance(spec, Mapping) and len(spec) == 1:
            name, kwargs = next(iter(spec.items()))
            kwargs = dict(kwargs or {})
        else:
            raise TypeError(f"a transform is 'Name' or {{Name: {{arg: value}}}}, got {spec!r}")
        if name not in _REGISTRY:
            raise KeyError(f"unknown transform {name!r}; known: {', '.join(sorted(_REGISTRY))}")
        steps.append(_REGISTRY[name](**kwargs))
    return Compose(steps)
