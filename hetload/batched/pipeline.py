"""Batched transforms as steps on a :class:`~hetload.HeteroBatch`, for code and configs.

Each step is ``step(batch, seeds) -> batch`` (a new batch; the input is not modified), with
``seeds: int64 [B]`` from :func:`hetload.batched.sample_seeds`. :class:`Compose` gives step
``k`` the seeds :func:`hetload.batched.random.derive` ``(seeds, k)``, so two steps of the same
kind draw independently. :func:`build` makes a ``Compose`` from config entries
(``"Center"`` or ``{"GridSample": {"grid_size": 0.02}}``), as a config's ``device.transforms``.

Steps that keep a subset of the points (:class:`FarthestPoints`, :class:`GridSample`) keep the
same rows of every ragged field aligned with the points (same offsets: normals, colors, ...)
and drop the index fields into them (faces), which would otherwise be stale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hetload.batch import HeteroBatch
from hetload.batched import geometry, random
from hetload.batched._packed import with_values
from hetload.batched.fps import farthest_point_sampling
from hetload.batched.grid import grid_sample
from hetload.batched.random import sample_seeds
from hetload.batched.serialize import serialize
from hetload.batched.surface import sample_surface
from hetload.ragged import Ragged
from hetload.transforms import split_spec

__all__ = [
    "BatchTransform",
    "Center",
    "Compose",
    "FarthestPoints",
    "GridSample",
    "Jitter",
    "NormalizeUnitSphere",
    "RandomFlip",
    "RandomRotation",
    "RandomScale",
    "SamplePoints",
    "Seeded",
    "Serialize",
    "build",
]


class BatchTransform:
    """Base class: ``__call__(batch, seeds)`` checks the batch and calls ``apply``."""

    field = "verts"

    def __call__(self, batch: HeteroBatch, seeds: torch.Tensor) -> HeteroBatch:
        if not isinstance(batch, HeteroBatch):
            raise TypeError(f"{type(self).__name__} needs a HeteroBatch, got {type(batch)}")
        return self.apply(dict(batch.items()), seeds, len(batch))

    def points(self, fields: dict[str, Any]) -> Ragged:
        value = fields.get(self.field)
        if not isinstance(value, Ragged):
            have = ", ".join(fields)
            raise ValueError(
                f"{type(self).__name__}: the batch has no ragged field {self.field!r} "
                f"(fields: {have})"
            )
        return value

    def apply(self, fields: dict[str, Any], seeds: torch.Tensor, batch: int) -> HeteroBatch:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(BatchTransform):
    """Apply ``transforms`` in order; step ``k`` draws from ``derive(seeds, k)``."""

    def __init__(self, transforms: Sequence[BatchTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, batch: HeteroBatch, seeds: torch.Tensor) -> HeteroBatch:
        for step, t in enumerate(self.transforms):
            batch = t(batch, random.derive(seeds, step))
        return batch


def _linear(fields, names, fn) -> None:
    for name in names:
        value = fields.get(name)
        if isinstance(value, Ragged) and value.values.dim() == 2 and value.values.shape[1] == 3:
            fields[name] = fn(value)


class RandomRotation(BatchTransform):
    """Rotate ``fields`` (points and normals) of each sample by its own random rotation."""

    def __init__(self, axis: int | str | None = None, fields: Sequence[str] = ("verts", "normals")):
        geometry.rotation_matrices(torch.zeros(0, dtype=torch.int64), axis)  # checks axis
        self.axis, self.fields = axis, tuple(fields)
        self.field = self.fields[0]

    def apply(self, fields, seeds, batch):
        points = self.points(fields)
        matrices = geometry.rotation_matrices(seeds.to(points.device), self.axis)
        _linear(fields, self.fields, lambda r: geometry._per_sample_linear(r, matrices))
        return HeteroBatch(fields, batch)


class RandomScale(BatchTransform):
    """Scale ``field`` per sample; with ``anisotropic``, ``normals`` follow the inverse
    transpose and are renormalized."""

    def __init__(
        self,
        low: float = 0.8,
        high: float = 1.25,
        anisotropic: bool = False,
        field: str = "verts",
        normals: str = "normals",
    ):
        geometry.scale_factors(torch.zeros(0, dtype=torch.int64), low, high)  # checks range
        self.low, self.high, self.anisotropic = float(low), float(high), bool(anisotropic)
        self.field, self.normals = field, normals

    def apply(self, fields, seeds, batch):
        points = self.points(fields)
        factors = geometry.scale_factors(
            seeds.to(points.device), self.low, self.high, self.anisotropic
        )
        fields[self.field] = geometry.random_scale(
            points, seeds, self.low, self.high, self.anisotropic
        )
        normals = fields.get(self.normals)
        if self.anisotropic and isinstance(normals, Ragged) and normals.values.dim() == 2:
            n = normals.values.double() / factors[normals.batch_idx]
            n = n / n.norm(dim=1, keepdim=True).clamp(min=1e-300)
            fields[self.normals] = with_values(normals, n.to(normals.dtype))
        return HeteroBatch(fields, batch)


class Jitter(BatchTransform):
    """Clipped Gaussian noise on every coordinate of ``field``."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05, field: str = "verts"):
        if sigma < 0 or clip < 0:
            raise ValueError(f"Jitter needs sigma, clip >= 0, got {sigma}, {clip}")
        self.sigma, self.clip, self.field = float(sigma), float(clip), field

    def apply(self, fields, seeds, batch):
        fields[self.field] = geometry.jitter(self.points(fields), seeds, self.sigma, self.clip)
        return HeteroBatch(fields, batch)


class RandomFlip(BatchTransform):
    """Mirror each sample along each of ``axes`` with probability ``p`` (points and normals)."""

    def __init__(
        self,
        axes: Sequence[int] = (0,),
        p: float = 0.5,
        fields: Sequence[str] = ("verts", "normals"),
    ):
        self.axes, self.p, self.fields = tuple(axes), float(p), tuple(fields)
        self.field = self.fields[0]
        if not 0 <= self.p <= 1 or any(a not in (0, 1, 2) for a in self.axes):
            raise ValueError(f"RandomFlip needs axes in 0..2 and 0 <= p <= 1, got {axes}, {p}")

    def apply(self, fields, seeds, batch):
        points = self.points(fields)
        signs = geometry.flip_signs(seeds.to(points.device), self.axes, self.p)

        def flip(r: Ragged) -> Ragged:
            return with_values(r, (r.values.double() * signs[r.batch_idx]).to(r.dtype))

        _linear(fields, self.fields, flip)
        return HeteroBatch(fields, batch)


class Center(BatchTransform):
    """Move each sample's mean / bounding-box center to 0."""

    def __init__(self, how: str = "mean", field: str = "verts"):
        if how not in ("mean", "bbox"):
            raise ValueError(f"Center(how=...) must be 'mean' or 'bbox', got {how!r}")
        self.how, self.field = how, field

    def apply(self, fields, seeds, batch):
        fields[self.field] = geometry.center(self.points(fields), self.how)
        return HeteroBatch(fields, batch)


class NormalizeUnitSphere(Center):
    """Center each sample, then scale it into the unit sphere."""

    def apply(self, fields, seeds, batch):
        fields[self.field] = geometry.normalize_unit_sphere(self.points(fields), self.how)
        return HeteroBatch(fields, batch)


class SamplePoints(BatchTransform):
    """Replace each mesh by ``n`` area-weighted surface points (``verts``, and ``normals`` with
    ``with_normals``); faces and the other per-vertex fields are dropped."""

    def __init__(
        self, n: int, with_normals: bool = True, field: str = "verts", faces: str = "faces"
    ):
        if n < 0:
            raise ValueError(f"SamplePoints needs n >= 0, got {n}")
        self.n, self.with_normals, self.field, self.faces = int(n), bool(with_normals), field, faces

    def apply(self, fields, seeds, batch):
        verts = self.points(fields)
        faces = fields.get(self.faces)
        if not isinstance(faces, Ragged):
            raise ValueError(f"SamplePoints: the batch has no ragged field {self.faces!r}")
        out = sample_surface(verts, faces, self.n, seeds, with_normals=self.with_normals)
        kept = {k: v for k, v in fields.items() if not isinstance(v, Ragged)}
        if self.with_normals:
            kept[self.field], kept["normals"] = out
        else:
            kept[self.field] = out
        return HeteroBatch(kept, batch)


def _keep_rows(fields: dict[str, Any], points: Ragged, index: Ragged) -> dict[str, Any]:
    """The rows ``index`` of every ragged field aligned with ``points``; index fields into
    ``points`` and other ragged fields of another structure are dropped."""
    out = {}
    for name, value in fields.items():
        if not isinstance(value, Ragged):
            out[name] = value
        elif (
            value.index_base is None
            and value.values.shape[0] == points.values.shape[0]
            and (value.offsets is points.offsets or torch.equal(value.offsets, points.offsets))
        ):
            kept = Ragged(value.values[index.values], index.offsets, name=name, validate=False)
            kept._max_len = index._max_len
            out[name] = kept
    return out


class FarthestPoints(BatchTransform):
    """Keep each sample's ``n`` farthest points (and the aligned rows of other fields)."""

    def __init__(self, n: int, random_start: bool = False, field: str = "verts"):
        if n < 0:
            raise ValueError(f"FarthestPoints needs n >= 0, got {n}")
        self.n, self.random_start, self.field = int(n), bool(random_start), field

    def apply(self, fields, seeds, batch):
        points = self.points(fields)
        index = farthest_point_sampling(points, self.n, seeds, random_start=self.random_start)
        return HeteroBatch(_keep_rows(fields, points, index), batch)


class GridSample(BatchTransform):
    """Pointcept's ``GridSample`` per sample: one point per voxel, plus ``grid_coord``."""

    def __init__(self, grid_size: float, mode: str = "train", field: str = "verts"):
        if not grid_size > 0 or mode not in ("train", "first"):
            raise ValueError(
                f"GridSample needs grid_size > 0 and mode 'train' or 'first', got "
                f"{grid_size}, {mode!r}"
            )
        self.grid_size, self.mode, self.field = float(grid_size), mode, field

    def apply(self, fields, seeds, batch):
        points = self.points(fields)
        result = grid_sample(points, self.grid_size, seeds, mode=self.mode)
        out = _keep_rows(fields, points, result.index)
        out["grid_coord"] = result.grid_coord
        return HeteroBatch(out, batch)


class Serialize(BatchTransform):
    """PTv3 serialization of ``grid_coord``: adds ``serialized_code`` (``[sum N_i, K]``) and
    ``serialized_order`` / ``serialized_inverse`` (global rows, ``[sum N_i, K]``)."""

    def __init__(
        self,
        order: Sequence[str] | str = ("z", "z-trans"),
        depth: int | None = None,
        field: str = "grid_coord",
    ):
        self.order = (order,) if isinstance(order, str) else tuple(order)
        self.depth, self.field = depth, field

    def apply(self, fields, seeds, batch):
        coords = self.points(fields)
        result = serialize(coords, self.order, self.depth)
        for name, value in (
            ("code", result.code),
            ("order", result.order),
            ("inverse", result.inverse),
        ):
            fields[f"serialized_{name}"] = Ragged(
                value.T.contiguous(), coords.offsets, name=f"serialized_{name}", validate=False
            )
        return HeteroBatch(fields, batch)


_BY_NAME = {
    cls.__name__: cls
    for cls in (
        Center,
        FarthestPoints,
        GridSample,
        Jitter,
        NormalizeUnitSphere,
        RandomFlip,
        RandomRotation,
        RandomScale,
        SamplePoints,
        Serialize,
    )
}


def build(specs: Sequence[str | Mapping[str, Mapping[str, Any] | None]]) -> Compose:
    """A :class:`Compose` from entries ``"Name"`` or ``{"Name": {arg: value}}``."""
    steps = []
    for i, spec in enumerate(specs):
        parsed = split_spec(spec)
        if parsed is None:
            raise ValueError(f"batched transform {i}: expected 'Name' or {{Name: {{...}}}}")
        name, kwargs = parsed
        cls = _BY_NAME.get(name)
        if cls is None:
            raise ValueError(
                f"batched transform {i}: unknown {name!r} (known: {', '.join(sorted(_BY_NAME))})"
            )
        try:
            steps.append(cls(**kwargs))
        except TypeError as exc:
            raise ValueError(f"batched transform {i} ({name}): {exc}") from None
    return Compose(steps)


class Seeded:
    """``steps`` applied to a batch with the seeds of ``(seed, epoch, batch["key"])``: how a
    loader runs ``device.transforms`` (every hetload dataset gives each sample its ``key``)."""

    def __init__(self, steps: BatchTransform, seed: int) -> None:
        self.steps, self.seed = steps, int(seed)

    def __call__(self, batch: HeteroBatch, epoch: int) -> HeteroBatch:
        keys = batch.get("key")
        if not isinstance(keys, list):
            raise ValueError(
                "device.transforms: the batch has no 'key' field to seed each sample by "
                f"(fields: {', '.join(batch.keys())})"
            )
        device = next(
            (v.device for v in batch.values() if isinstance(v, Ragged)), torch.device("cpu")
        )
        return self.steps(batch, sample_seeds(keys, self.seed, epoch, device))
