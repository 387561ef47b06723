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

``verts`` is the geometry. A transform that drops or reorders rows declares which field's rows
(``selects``) and goes through :func:`hetload.rows.select_rows`, the one mechanism that keeps a
sample consistent: the fields aligned with that field keep the same rows (per-vertex ``normals``,
``colors``, PLY ``intensity``; per-face ``face_colors``, ``faces_uvs``), and every index field
pointing into it is renumbered, its rows that point at a dropped row dropped with their own
aligned fields (a face touching a dropped vertex goes, with its ``face_colors``), as the
:class:`~hetload.schema.Schema` says (``schema=``, default the default schema).

Every transform checks its parameters in its constructor (finite, in range, of the right type)
and raises ``ValueError`` naming the transform and the parameter, so a config that builds one
fails when it is loaded, not in the middle of a run.

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

from hetload import transform_checks as _checks
from hetload.rows import select_rows
from hetload.schema import DEFAULT_SCHEMA, Schema

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
    "check_out_sizes",
    "out_sizes",
    "run_seeded",
    "sample_rng",
    "seeded",
    "select_rows",
    "split_spec",
]

Sample = dict[str, Any]
_current_rng: contextvars.ContextVar[np.random.Generator | None] = contextvars.ContextVar(
    "hetload_sample_rng", default=None
)
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
    """Base class: subclasses implement ``apply(sample, rng) -> sample`` on a shallow copy.

    ``selects`` declares the fields whose rows the transform may drop or reorder (it then goes
    through :func:`~hetload.rows.select_rows`, which makes every related field follow).
    """

    selects: tuple[str, ...] = ()

    def __call__(self, sample: Mapping[str, Any] | None, rng: np.random.Generator | None = None):
        if sample is None:  # a sample the dataset dropped stays dropped
            return None
        if not isinstance(sample, Mapping):
            raise TypeError(f"{type(self).__name__} takes a sample dict, got {type(sample)}")
        if rng is None:
            rng = _current_rng.get() or np.random.default_rng()
        # the generator is also the current one inside: a plain callable in a Compose that
        # calls a transform without one draws from it, not from OS entropy
        with seeded(rng):
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
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "selects")
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        if isinstance(transforms, (str, bytes, Mapping)) or not isinstance(transforms, Sequence):
            raise ValueError(f"Compose needs a list of transforms, got {type(transforms).__name__}")
        for i, t in enumerate(transforms):
            if not callable(t):
                raise ValueError(f"Compose: transform {i} is a {type(t).__name__}, not callable")
        self.transforms = list(transforms)
        self.selects = tuple(dict.fromkeys(f for t in self.transforms for f in _selects(t)))

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
    out = np.asarray(method(n, field))
    who = f"{type(transform).__name__}.out_size(n, {field!r})"
    # a float 1024.7 was truncated, a scalar or a list of another length sized the wrong
    # samples, a negative count made the sampler plan an empty sample: the budget lied
    if out.dtype.kind not in "iu" and not (
        out.dtype.kind == "f" and np.isfinite(out).all() and (out == np.round(out)).all()
    ):
        raise ValueError(f"{who} must return whole numbers of rows, got dtype {out.dtype}")
    if out.shape != n.shape:
        raise ValueError(f"{who} must return one count per sample {n.shape}, got {out.shape}")
    if out.size and out.min() < 0:
        raise ValueError(f"{who} returned a negative row count ({out.min()})")
    return out.astype(np.int64)


def check_out_sizes(sample: Mapping[str, Any], claims: Mapping[str, int], where: str) -> None:
    """Refuse a transformed sample holding more rows of a field than the transform stated
    (``claims``: ``{field: rows}``, what :func:`out_sizes` gave the dataset's ``sizes``): the
    sampler planned its batches from the claims, so more rows would overrun the budget.

    Raises:
        ValueError: naming ``where``, the field and both counts.
    """
    for name, claim in claims.items():
        value = sample.get(name)
        rows = len(value) if getattr(value, "ndim", 0) >= 1 else 0
        if rows > claim:
            raise ValueError(
                f"{where}: the transform returned {rows} rows of {name!r} but states at most "
                f"{claim} (its out_size, which the dataset's sizes and the sampler's budget "
                "use): give the transform an out_size(n, field) method that tells the truth"
            )


def check_transformed(transform: Callable[..., Any], before: Any, after: Any, where: str) -> None:
    """The two checks every dataset applies to a transform's output (MeshFolder, ShardDataset,
    ShardStream, a config's mapped datasets): no field of ``after`` holds more rows than the
    transform's ``out_size`` states for ``before``'s rows (:func:`check_out_sizes`: the sampler
    budgeted those), and fields aligned in ``before`` still are
    (:func:`hetload.rows.check_aligned`: labels cropped with their points). Anything but two
    dicts (a dropped sample, ``None``) passes.

    Raises:
        ValueError: naming ``where``, the field and the counts; datasets raise it whatever
            their ``on_error`` says, as it is a bug of the transform, not of one file.
    """
    from hetload.rows import check_aligned

    if not (isinstance(before, Mapping) and isinstance(after, Mapping)):
        return
    claims = {
        name: int(out_sizes(transform, np.asarray([len(value)]), name)[0])
        for name, value in before.items()
        if getattr(value, "ndim", 0) >= 1
    }
    check_out_sizes(after, claims, where)
    check_aligned(before, after, where)


def run_checked(
    transform: Callable[..., Any], sample: Any, rng: np.random.Generator, where: str
) -> Any:
    """:func:`run_seeded`, then :func:`check_transformed` of its output."""
    out = run_seeded(transform, sample, rng)
    check_transformed(transform, sample, out, where)
    return out


def _verts(sample: Sample, who: str) -> np.ndarray:
    verts = sample.get("verts")
    if not isinstance(verts, np.ndarray) or verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"{who} needs a 'verts' array [N, 3], got {type(verts).__name__}")
    if verts.dtype.kind != "f":
        # the result is cast back to the input dtype: integers would be rounded silently
        raise ValueError(f"{who} needs floating-point 'verts', got {verts.dtype}")
    return verts


def _set_verts(sample: Sample, values: np.ndarray, like: np.ndarray, who: str = "") -> None:
    sample["verts"] = _cast_back(values, like, "verts", who)


def _cast_back(values: np.ndarray, like: np.ndarray, name: str, who: str) -> np.ndarray:
    """``values`` (computed in float64) in ``like``'s dtype; a finite input whose result does
    not fit that dtype (float16 60000 scaled by 1.25, float32 3e38 rotated) is an error, never
    an ``inf`` in the batch."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(like.dtype, copy=False)
    if out.size and not np.isfinite(out).all():
        grew = ~np.isfinite(out) & np.isfinite(like if like.shape == out.shape else out)
        if grew.any():
            row = int(np.flatnonzero(grew.reshape(len(out), -1).any(axis=1))[0])
            raise ValueError(
                f"{who or 'a transform'}: {name} row {row} becomes {values[row].tolist()}, "
                f"beyond {like.dtype}'s range (cast to float32 / float64 first: ToDtype)"
            )
    return out


def _radius(v: np.ndarray) -> float:
    """The largest row norm of ``v`` (float64 ``[N, 3]``) without overflow or underflow
    (``1e200`` squared is ``inf``, ``1e-200`` squared is 0): rows are scaled by the largest
    magnitude first."""
    top = float(np.abs(v).max())
    if top == 0 or not np.isfinite(top):
        return top
    u = v / top
    return top * float(np.sqrt((u * u).sum(1).max()))


class Center(Transform):
    """Move the vertices so their mean (``"mean"``) or bounding-box center (``"bbox"``) is 0."""

    def __init__(self, center: str = "mean") -> None:
        if not isinstance(center, str) or center not in ("mean", "bbox"):
            raise ValueError(f"Center(center=...) must be 'mean' or 'bbox', got {center!r}")
        self.center = center

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "Center")
        if len(verts):
            v = verts.astype(np.float64)
            mid = v.mean(0) if self.center == "mean" else (v.min(0) + v.max(0)) / 2
            with np.errstate(over="ignore", invalid="ignore"):  # _cast_back names an overflow
                moved = v - mid
            _set_verts(sample, moved, verts, "Center")
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
            radius = _radius(v)
            if radius > 0:
                v /= radius
            _set_verts(sample, v, verts, "NormalizeUnitSphere")
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
        if isinstance(axis, bool) or axis not in (None, 0, 1, 2):
            raise ValueError(f"RandomRotation(axis=...) must be 0, 1, 2 or None, got {axis!r}")
        self.axis = axis

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "RandomRotation")
        r = _rotation(rng, self.axis)
        with np.errstate(over="ignore", invalid="ignore"):  # _cast_back names an overflow
            rotated = verts.astype(np.float64) @ r.T
        _set_verts(sample, rotated, verts, "RandomRotation")
        normals = sample.get("normals")
        if isinstance(normals, np.ndarray) and normals.ndim == 2 and normals.shape[1] == 3:
            rotated = normals.astype(np.float64) @ r.T
            sample["normals"] = _cast_back(rotated, normals, "normals", "RandomRotation")
        return sample


class RandomScale(Transform):
    """Scale by a factor drawn uniformly from ``[low, high]`` (per axis if ``anisotropic``);
    normals follow the inverse transpose and are renormalized."""

    def __init__(self, low: float = 0.8, high: float = 1.25, anisotropic: bool = False) -> None:
        low = _checks.real("RandomScale", "low", low, low=0.0, low_open=True)
        high = _checks.real("RandomScale", "high", high, low=0.0, low_open=True)
        if not low <= high:
            raise ValueError(f"RandomScale needs low <= high, got {low}, {high}")
        if not isinstance(anisotropic, (bool, np.bool_)):
            raise ValueError(
                f"RandomScale(anisotropic=...) must be a bool, got {anisotropic!r:.60}"
            )
        self.low, self.high, self.anisotropic = low, high, bool(anisotropic)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "RandomScale")
        scale = rng.uniform(self.low, self.high, size=3 if self.anisotropic else 1)
        with np.errstate(over="ignore", invalid="ignore"):  # _cast_back names an overflow
            scaled = verts.astype(np.float64) * scale
        _set_verts(sample, scaled, verts, "RandomScale")
        normals = sample.get("normals")
        if self.anisotropic and isinstance(normals, np.ndarray) and normals.ndim == 2:
            n = normals.astype(np.float64) / scale
            length = np.linalg.norm(n, axis=1, keepdims=True)
            sample["normals"] = np.divide(n, length, out=n, where=length > 0).astype(normals.dtype)
        return sample


class Jitter(Transform):
    """Add Gaussian noise (``sigma``) to each coordinate, clipped to ``[-clip, clip]``."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05) -> None:
        # clip=inf is "no clipping"; NaN in either would turn every vertex into NaN
        self.sigma = _checks.real("Jitter", "sigma", sigma, low=0.0)
        self.clip = _checks.real("Jitter", "clip", clip, low=0.0, allow_inf=True)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        verts = _verts(sample, "Jitter")
        noise = np.clip(rng.normal(0.0, self.sigma, verts.shape), -self.clip, self.clip)
        with np.errstate(over="ignore", invalid="ignore"):  # _cast_back names an overflow
            moved = verts + noise
        _set_verts(sample, moved, verts, "Jitter")
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
        self.n = _checks.count("SamplePoints", "n", n)
        if not isinstance(with_normals, (bool, np.bool_)):
            raise ValueError(
                f"SamplePoints(with_normals=...) must be a bool, got {with_normals!r:.60}"
            )
        self.with_normals = bool(with_normals)

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
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
            raise ValueError(f"SamplePoints needs integer 'faces' [F, 3], got {faces.shape}")
        if int(faces.min()) < 0 or int(faces.max()) >= len(verts):
            raise ValueError(
                f"SamplePoints: 'faces' holds indices outside the {len(verts)} vertices"
            )
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


class Subsample(Transform):
    """Keep at most ``n`` rows of ``field`` (``verts`` by default, or ``faces``...), chosen
    uniformly without replacement (file order kept); every related field follows
    (:func:`~hetload.rows.select_rows` with ``schema``)."""

    def __init__(self, n: int, field: str = "verts", schema: Schema | None = None) -> None:
        self.n = _checks.count("Subsample", "n", n)
        self.field = _checks.field_name("Subsample", field)
        self.schema = _checks.schema_arg("Subsample", schema)
        self.selects = (self.field,)

    def out_size(self, n: np.ndarray, field: str = "verts") -> np.ndarray:
        """At most ``n`` rows of the selected field (of the points, when it selects points);
        other fields keep at most their rows."""
        selected = field == self.field or (field in _POINT_FIELDS and self.field in _POINT_FIELDS)
        return np.minimum(n, self.n) if selected else n

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        rows = sample.get(self.field)
        if getattr(rows, "ndim", 0) < 1:
            raise ValueError(f"Subsample needs an array field {self.field!r} with rows")
        count = len(rows)
        if count <= self.n:
            return sample
        keep = np.sort(rng.choice(count, self.n, replace=False))
        return select_rows(sample, self.field, keep, schema=self.schema)


class SphereCrop(Transform):
    """Keep the ``n`` vertices nearest to a center: a random vertex (``center="random"``, as
    PTv3 / Pointcept crop large scenes) or the centroid (``"mean"``). File order is kept; every
    related field follows (:func:`~hetload.rows.select_rows` with ``schema``)."""

    def __init__(self, n: int, center: str = "random", schema: Schema | None = None) -> None:
        self.n = _checks.count("SphereCrop", "n", n)
        if not isinstance(center, str) or center not in ("random", "mean"):
            raise ValueError(f"SphereCrop(center=...) must be 'random' or 'mean', got {center!r}")
        self.center = center
        self.schema = _checks.schema_arg("SphereCrop", schema)
        self.selects = ("verts",)

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
        return select_rows(sample, "verts", keep, schema=self.schema)


def _selects(transform: Any) -> tuple[str, ...]:
    return tuple(getattr(transform, "selects", ()) or ())


class ToDtype(Transform):
    """Cast fields: ``ToDtype({"verts": "float16", "faces": "int32"})``; ``floating=`` casts
    every floating-point array at once (``ToDtype(floating="float64")``).

    Casts are checked per sample, never silently lossy in range: an integer cast refuses values
    the new dtype cannot hold, a float cast refuses finite values that would become infinite, and
    an index field (faces, edges: ``schema``) is only ever cast to another integer dtype.

    Raises:
        ValueError: naming the field, for a cast that would change its values as described.
    """

    def __init__(
        self,
        dtypes: Mapping[str, Any] | None = None,
        floating: Any = None,
        schema: Schema | None = None,
    ) -> None:
        if dtypes is not None and not isinstance(dtypes, Mapping):
            raise ValueError(
                f"ToDtype(dtypes=...) must map field names to dtypes, got {dtypes!r:.60}"
            )
        self.dtypes = {
            str(k): _checks.numeric_dtype("dtypes", v).name for k, v in (dtypes or {}).items()
        }
        self.floating = None
        if floating is not None:
            kind = _checks.numeric_dtype("floating", floating)
            if kind.kind != "f":
                raise ValueError(f"ToDtype(floating=...) must be a float dtype, got {kind}")
            self.floating = kind.name
        self.schema = _checks.schema_arg("ToDtype", schema)
        index_fields = (self.schema or DEFAULT_SCHEMA).fields
        for name, dtype in self.dtypes.items():
            spec = index_fields.get(name)
            if spec is not None and spec.kind == "index" and np.dtype(dtype).kind not in "iu":
                raise ValueError(
                    f"ToDtype: {name!r} is an index field (into {spec.index_of!r}); it can only "
                    f"be cast to an integer dtype, not {dtype}"
                )

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for name, value in sample.items():
            if not isinstance(value, np.ndarray):
                continue
            if name in self.dtypes:
                sample[name] = _checks.cast(name, value, np.dtype(self.dtypes[name]))
            elif self.floating is not None and value.dtype.kind == "f":
                sample[name] = _checks.cast(name, value, np.dtype(self.floating))
        return sample


class NormalizeColors(Transform):
    """Colors as ``float32`` in ``[0, 1]``, whatever the file stored: integer colors (PLY
    ``uchar`` / ``ushort``) are divided by their dtype's maximum, float colors (OBJ ``v x y z r
    g b``, float PLY) are kept as they are (cast to float32); float colors outside ``[0, 1]``
    and negative integer ones are refused (``ValueError`` naming the field). Applies to ``fields``
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
                if value.size and value.min() < 0:  # PLY char colors: no defined meaning
                    raise ValueError(
                        f"NormalizeColors: field {name!r} holds negative colors ({value.min()})"
                    )
                scale = np.float32(np.iinfo(value.dtype).max)
                value = value.astype(np.float32) / scale
            elif value.dtype.kind == "f":
                # float colors of 0..255 (some exporters) would batch beside uint8 ones divided
                # to 0..1: refused rather than mixed. NaN passes (allow_nonfinite's choice)
                finite = value[np.isfinite(value)]
                low, high = (finite.min(), finite.max()) if finite.size else (0, 0)
                if low < 0 or high > 1:
                    raise ValueError(
                        f"NormalizeColors: field {name!r} holds float colors outside [0, 1] "
                        f"({float(low):g}..{float(high):g}): scale them in a transform first"
                    )
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


def split_spec(spec: Any) -> tuple[Any, dict[str, Any]] | None:
    """``(name, kwargs)`` of a transform entry ``"Name"`` or ``{"Name": {arg: value}}`` (the
    form of configs and of :func:`build`), or ``None`` for anything else."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and len(spec) == 1:
        name, kwargs = next(iter(spec.items()))
        if kwargs is None or isinstance(kwargs, Mapping):
            return name, dict(kwargs or {})
        # {SamplePoints: 1024}: not arguments (dict(1024) raised "'int' object is not iterable")
    return None


def build(
    specs: Sequence[str | Mapping[str, Mapping[str, Any] | None]], schema: Schema | None = None
) -> Compose:
    """A :class:`Compose` from config entries: ``"Center"`` or ``{"SamplePoints": {"n": 1024}}``;
    ``schema`` (a config's ``collate.schema``) reaches the transforms that select rows, unless
    an entry sets its own.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
        TypeError: arguments the transform does not take.
    """
    steps = []
    for spec in specs:
        parsed = split_spec(spec)
        if parsed is None:
            raise TypeError(f"a transform is 'Name' or {{Name: {{arg: value}}}}, got {spec!r}")
        name, kwargs = parsed
        if name not in _REGISTRY:
            raise KeyError(f"unknown transform {name!r}; known: {', '.join(sorted(_REGISTRY))}")
        cls = _REGISTRY[name]
        if schema is not None and cls in (Subsample, SphereCrop, ToDtype):
            kwargs.setdefault("schema", schema)
        steps.append(cls(**kwargs))
    return Compose(steps)
