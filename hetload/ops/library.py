"""Registration of the ``torch.ops.hetload`` operators.

The schemas are defined here, in Python, once. Three kinds of implementation stand behind them:

- the pure-torch one (:mod:`hetload.ops.torch_impl`, :mod:`hetload.ops.index_impl`), registered
  as ``CompositeExplicitAutograd`` so it serves every device;
- the compiled kernels from ``cuda/``: ``hetload/_C*.so`` registers the ``CPU`` kernels,
  ``hetload/_C_cuda*.so`` the ``CUDA`` ones, each loaded when it was built and loads (a CUDA
  module that cannot load, e.g. under a CPU-only torch, leaves the CPU kernels in service); a
  backend kernel wins over the composite one, so callers never choose;
- a fake (meta) implementation for ``torch.compile`` and an autograd formula (each op's backward
  is the other op).
"""

from __future__ import annotations

import importlib.util
import os

import torch

from hetload.ops import (
    augment_impl,
    grid_impl,
    index_impl,
    sampling_impl,
    surface_impl,
    torch_impl,
)

__all__ = ["EXTENSIONS", "EXTENSION_MODULES", "has_kernel"]

_LIB = torch.library.Library("hetload", "DEF")
_LIB.define("packed_to_padded(Tensor values, Tensor offsets, SymInt max_len, float fill) -> Tensor")
_LIB.define(
    "packed_to_padded_local(Tensor values, Tensor offsets, Tensor base, SymInt max_len, "
    "float fill) -> Tensor"
)
_LIB.define("padded_to_packed(Tensor padded, Tensor offsets, SymInt total) -> Tensor")
# collate's copy of an index field: samples[i] + bases[i] into consecutive rows of `out`, range
# checked against [0, counts[i]); returns the first offending sample or -1
_LIB.define("rebase_index_(Tensor[] samples, Tensor(a!) out, int[] bases, int[] counts) -> int")
# the batch-level shard read (CPU kernel only, no composite: hetload/data/batch_read.py reads
# with its own Python path where the extension is absent)
_LIB.define(
    "read_members_(Tensor(a!) buffer, Tensor(b!) scratch, Tensor spans, Tensor members, "
    "Tensor names, Tensor expect, Tensor(c!) json) -> int"
)

_LIB.impl("packed_to_padded", torch_impl.packed_to_padded, "CompositeExplicitAutograd")
_LIB.impl("packed_to_padded_local", torch_impl.packed_to_padded_local, "CompositeExplicitAutograd")
_LIB.impl("padded_to_packed", torch_impl.padded_to_packed, "CompositeExplicitAutograd")
_LIB.impl("rebase_index_", index_impl.rebase_index_, "CompositeExplicitAutograd")
# farthest point sampling of packed points (hetload.batched.farthest_point_sampling)
_LIB.define(
    "farthest_point_sample(Tensor points, Tensor offsets, Tensor out_offsets, Tensor start, "
    "SymInt total) -> Tensor"
)
_LIB.impl("farthest_point_sample", sampling_impl.farthest_point_sample, "CompositeExplicitAutograd")
# voxel grid sampling of packed points (hetload.batched.grid_sample): kept rows, their voxel
# coordinates, the per-sample voxel offsets and each point's voxel ordinal
_LIB.define(
    "grid_sample(Tensor points, Tensor offsets, float grid_size, Tensor seeds, int stream, "
    "bool train) -> (Tensor, Tensor, Tensor, Tensor)"
)
_LIB.impl("grid_sample", grid_impl.grid_sample, "CompositeExplicitAutograd")
# area-weighted surface points of packed meshes (hetload.batched.sample_surface)
_LIB.define(
    "sample_surface(Tensor verts, Tensor faces, Tensor face_offsets, Tensor out_offsets, "
    "Tensor seeds, int stream, SymInt total, bool with_normals) -> (Tensor, Tensor)"
)
_LIB.impl("sample_surface", surface_impl.sample_surface, "CompositeExplicitAutograd")
# per-sample point transforms (hetload.batched.random_rotation, random_scale / random_flip,
# jitter)
_LIB.define("per_sample_matmul(Tensor points, Tensor offsets, Tensor matrices) -> Tensor")
_LIB.define("per_sample_scale(Tensor points, Tensor offsets, Tensor factors) -> Tensor")
_LIB.define(
    "jitter_points(Tensor points, Tensor offsets, Tensor seeds, int stream, float sigma, "
    "float clip) -> Tensor"
)
_LIB.impl("per_sample_matmul", augment_impl.per_sample_matmul, "CompositeExplicitAutograd")
_LIB.impl("per_sample_scale", augment_impl.per_sample_scale, "CompositeExplicitAutograd")
_LIB.impl("jitter_points", augment_impl.jitter_points, "CompositeExplicitAutograd")


@torch.library.register_fake("hetload::packed_to_padded")
def _packed_to_padded_fake(values, offsets, max_len, fill):
    return values.new_empty((offsets.shape[0] - 1, max_len, *values.shape[1:]))


@torch.library.register_fake("hetload::packed_to_padded_local")
def _packed_to_padded_local_fake(values, offsets, base, max_len, fill):
    return values.new_empty((offsets.shape[0] - 1, max_len, *values.shape[1:]))


@torch.library.register_fake("hetload::padded_to_packed")
def _padded_to_packed_fake(padded, offsets, total):
    return padded.new_empty((total, *padded.shape[2:]))


@torch.library.register_fake("hetload::farthest_point_sample")
def _farthest_point_sample_fake(points, offsets, out_offsets, start, total):
    return points.new_empty((total,), dtype=torch.int64)


@torch.library.register_fake("hetload::grid_sample")
def _grid_sample_fake(points, offsets, grid_size, seeds, stream, train):
    voxels = torch.library.get_ctx().new_dynamic_size()  # data-dependent: one per voxel
    return (
        points.new_empty((voxels,), dtype=torch.int64),
        points.new_empty((voxels, points.shape[1]), dtype=torch.int64),
        offsets.new_empty(offsets.shape),
        points.new_empty((points.shape[0],), dtype=torch.int64),
    )


@torch.library.register_fake("hetload::sample_surface")
def _sample_surface_fake(verts, faces, face_offsets, out_offsets, seeds, stream, total, normals):
    return verts.new_empty((total, 3)), verts.new_empty((total if normals else 0, 3))


@torch.library.register_fake("hetload::per_sample_matmul")
def _per_sample_matmul_fake(points, offsets, matrices):
    return torch.empty_like(points, memory_format=torch.contiguous_format)


@torch.library.register_fake("hetload::per_sample_scale")
def _per_sample_scale_fake(points, offsets, factors):
    return torch.empty_like(points, memory_format=torch.contiguous_format)


@torch.library.register_fake("hetload::jitter_points")
def _jitter_points_fake(points, offsets, seeds, stream, sigma, clip):
    return torch.empty_like(points, memory_format=torch.contiguous_format)


def _p2p_setup(ctx, inputs, output):
    values, offsets, _max_len, _fill = inputs
    ctx.save_for_backward(offsets)
    ctx.total = values.shape[0]


def _p2p_backward(ctx, grad):
    (offsets,) = ctx.saved_tensors
    grad_values = torch.ops.hetload.padded_to_packed(grad.contiguous(), offsets, ctx.total)
    return grad_values, None, None, None


def _unpack_setup(ctx, inputs, output):
    padded, offsets, _total = inputs
    ctx.save_for_backward(offsets)
    ctx.max_len = padded.shape[1]


def _unpack_backward(ctx, grad):
    (offsets,) = ctx.saved_tensors
    grad_padded = torch.ops.hetload.packed_to_padded(grad.contiguous(), offsets, ctx.max_len, 0.0)
    return grad_padded, None, None


# the per-sample point transforms stay differentiable in the points (as the torch code they
# replaced): a linear map's gradient is the transposed map, additive noise passes it through
def _matmul_setup(ctx, inputs, output):
    _points, offsets, matrices = inputs
    ctx.save_for_backward(offsets, matrices)


def _matmul_backward(ctx, grad):
    offsets, matrices = ctx.saved_tensors
    back = matrices.transpose(1, 2).contiguous()
    return torch.ops.hetload.per_sample_matmul(grad.contiguous(), offsets, back), None, None


def _scale_setup(ctx, inputs, output):
    _points, offsets, factors = inputs
    ctx.save_for_backward(offsets, factors)


def _scale_backward(ctx, grad):
    offsets, factors = ctx.saved_tensors
    return torch.ops.hetload.per_sample_scale(grad.contiguous(), offsets, factors), None, None


def _jitter_backward(ctx, grad):
    return grad, None, None, None, None, None


torch.library.register_autograd(
    "hetload::per_sample_matmul", _matmul_backward, setup_context=_matmul_setup
)
torch.library.register_autograd(
    "hetload::per_sample_scale", _scale_backward, setup_context=_scale_setup
)
torch.library.register_autograd(
    "hetload::jitter_points", _jitter_backward, setup_context=lambda ctx, inputs, output: None
)


# surface points stay differentiable in the vertices (the faces and barycentric weights drawn
# are constants, as in PyTorch3D's sample_points_from_meshes): the backward reruns the
# pure-torch forward, which draws the same faces, and differentiates it
def _surface_setup(ctx, inputs, output):
    verts, faces, face_offsets, out_offsets, seeds, stream, total, with_normals = inputs
    ctx.save_for_backward(verts, faces, face_offsets, out_offsets, seeds)
    ctx.stream, ctx.total, ctx.with_normals = stream, total, with_normals


def _surface_backward(ctx, grad_points, grad_normals):
    verts, faces, face_offsets, out_offsets, seeds = ctx.saved_tensors
    with torch.enable_grad():
        v = verts.detach().requires_grad_(True)
        points, normals = surface_impl.sample_surface(
            v, faces, face_offsets, out_offsets, seeds, ctx.stream, ctx.total, ctx.with_normals
        )
        outs, grads = [points], [grad_points]
        if ctx.with_normals and grad_normals is not None:
            outs.append(normals)
            grads.append(grad_normals)
        (grad_verts,) = torch.autograd.grad(outs, [v], grads, allow_unused=True)
    if grad_verts is None:
        grad_verts = torch.zeros_like(verts)
    return grad_verts, None, None, None, None, None, None, None


torch.library.register_autograd(
    "hetload::sample_surface", _surface_backward, setup_context=_surface_setup
)
torch.library.register_autograd(
    "hetload::packed_to_padded", _p2p_backward, setup_context=_p2p_setup
)
torch.library.register_autograd(
    "hetload::padded_to_packed", _unpack_backward, setup_context=_unpack_setup
)


#: compiled modules built from ``cuda/`` (setup.py), by the dispatch key their kernels serve
EXTENSION_MODULES: dict[str, str] = {"CPU": "hetload._C", "CUDA": "hetload._C_cuda"}


def _load_extension(module: str) -> tuple[str | None, str | None]:
    """Load one compiled module if it was built; never builds anything.

    Returns ``(path, error)``: the loaded library's path, or why it could not be loaded.
    ``HETLOAD_DISABLE_EXTENSION=1`` forces the pure-torch path (tests use it to cover both).
    """
    if os.environ.get("HETLOAD_DISABLE_EXTENSION", "") not in ("", "0"):
        return None, "disabled by HETLOAD_DISABLE_EXTENSION"
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None, (
            f"{module} is not built (see the README section 'Compiled kernels'; "
            "`hetload build-ext` builds it)"
        )
    try:
        # The module registers kernels for the ops defined above; it has no Python init.
        torch.ops.load_library(spec.origin)
    except (OSError, RuntimeError) as exc:
        return None, f"{module} failed to load: {exc}"
    return spec.origin, None


#: per dispatch key, ``(path, error)`` of its compiled module: one of the two is ``None``
EXTENSIONS: dict[str, tuple[str | None, str | None]] = {
    key: _load_extension(module) for key, module in EXTENSION_MODULES.items()
}


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``torch.ops.hetload.<op>`` has a kernel registered for ``dispatch_key`` itself."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"hetload::{op}", dispatch_key)
