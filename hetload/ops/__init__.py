"""Device ops between the packed and padded layouts (``torch.ops.hetload.*`` underneath).

- :func:`packed_to_padded`: ``values [sum N_i, *D]`` + ``offsets [B+1]`` -> ``[B, max_len, *D]``
- :func:`padded_to_packed`: the inverse; its gradient is :func:`packed_to_padded`'s and vice versa
- :func:`packed_to_padded_local`: for index fields (faces): global -> local indices, ``-1`` padding
- :func:`rebase_index_`: the other way, as ``collate`` packs an index field: local -> global
  indices, range checked, in one copy

Every dtype torch stores data in is supported (the ops copy bytes), on every device. The compiled
CPU / CUDA kernels from ``cuda/`` are used when built; :func:`backend` says which path serves.

``torch.ops.hetload`` also holds the ops behind :mod:`hetload.batched` (``farthest_point_sample``,
``grid_sample``, ``sample_surface``, ``per_sample_matmul``, ``per_sample_scale``,
``jitter_points``): compiled kernels where built, else their pure-torch references
(``sampling_impl``, ``grid_impl``, ``surface_impl``, ``augment_impl``), with the same results and
the same refusals; ``library.has_kernel(op, "CPU")`` says which serves.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hetload.ops import library as _library
from hetload.ops.buckets import bucket_length
from hetload.ops.traced import assert_longest_at_most, compiling
from hetload.ops.validation import check_fill, check_max_len, check_offsets, longest

__all__ = [
    "backend",
    "bucket_length",
    "extension_status",
    "packed_to_padded",
    "packed_to_padded_local",
    "padded_to_packed",
    "rebase_index_",
]


def _check_pair(tensor: torch.Tensor, offsets: torch.Tensor, name: str, what: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"field {name!r}: {what} must be a torch.Tensor, got {type(tensor)}")
    if isinstance(offsets, torch.Tensor) and offsets.device != tensor.device:
        raise ValueError(
            f"field {name!r}: {what} is on {tensor.device} but offsets on {offsets.device}"
        )


def _host_fact_needed(what: str, name: str) -> ValueError:
    return ValueError(
        f"field {name!r}: under torch.compile {what} must be given (a host int such as "
        f"Ragged.max_len); reading it from offsets would stop the graph"
    )


def _resolve_max_len(offsets: torch.Tensor, max_len: int | None, name: str, validate: bool) -> int:
    if max_len is None:
        if compiling():
            raise _host_fact_needed("max_len", name)
        return longest(offsets)
    if isinstance(max_len, torch.SymInt):  # a traced size stays symbolic
        if max_len < 0:
            raise ValueError(f"field {name!r}: max_len must be >= 0, got {max_len}")
    else:
        max_len = check_max_len(max_len, name)
    if validate and compiling():
        assert_longest_at_most(offsets, max_len, name)
    elif validate:
        needed = longest(offsets)
        if max_len < needed:
            # PyTorch3D silently overwrites the next item's rows here; we refuse.
            raise ValueError(
                f"field {name!r}: max_len={max_len} is shorter than the longest item ({needed})"
            )
    return max_len


def _fill_padding(out: torch.Tensor, offsets: torch.Tensor, exact: int | None) -> torch.Tensor:
    """Write an integer fill a double cannot hold (``2**53 + 1``) into the padding rows."""
    if exact is None or out.numel() == 0:
        return out
    lengths = (offsets[1:] - offsets[:-1]).to(out.device)
    padding = torch.arange(out.shape[1], device=out.device).unsqueeze(0) >= lengths.unsqueeze(1)
    return out.masked_fill_(padding.view(*padding.shape, *([1] * (out.dim() - 2))), exact)


def packed_to_padded(
    values: torch.Tensor,
    offsets: torch.Tensor,
    max_len: int | None = None,
    fill: float = 0.0,
    *,
    name: str = "values",
    validate: bool = True,
) -> torch.Tensor:
    """Pad packed rows into a dense batch.

    Args:
        values: ``[sum N_i, *D]``, any dtype, any device.
        offsets: ``int64 [B+1]`` on the same device; item ``i`` is
            ``values[offsets[i]:offsets[i+1]]``.
        max_len: rows of the output; ``None`` uses the longest item. Shorter than the longest
            item is a ``ValueError``.
        fill: the value of padding rows, stored exactly: integer dtypes take whole numbers in
            their range (an int64 fill of ``2**53 + 1`` stays that), bool 0 / 1, float dtypes
            any value they do not overflow; anything else is a ``ValueError``.
        name: the field name used in error messages.
        validate: check the offsets invariants first, and that no item is longer than
            ``max_len``. Eagerly that reads ``offsets`` on the host (a device sync for GPU
            offsets) and raises ``ValueError``; under ``torch.compile`` the same checks are
            asserts inside the graph (no sync, a ``RuntimeError`` naming the field).
            ``validate=False`` skips them: for offsets already checked, such as a
            :class:`~hetload.Ragged`'s, which validates once at construction.

    Returns:
        ``[B, max_len, *D]`` of ``values.dtype``; differentiable w.r.t. ``values``.

    Under ``torch.compile(fullgraph=True)`` pass ``max_len`` (a host int): deriving it from
    ``offsets`` is a data-dependent read the graph cannot hold.
    """
    _check_pair(values, offsets, name, "values")
    if values.dim() == 0:
        raise ValueError(f"field {name!r}: values must be [sum N_i, ...], got a scalar")
    fill_double, exact = check_fill(values.dtype, fill, name)
    if validate:
        check_offsets(offsets, values.shape[0], name)
    max_len = _resolve_max_len(offsets, max_len, name, validate)
    out = torch.ops.hetload.packed_to_padded(values, offsets, max_len, fill_double)
    return _fill_padding(out, offsets, exact)


def packed_to_padded_local(
    values: torch.Tensor,
    offsets: torch.Tensor,
    base: torch.Tensor,
    max_len: int | None = None,
    fill: float = -1,
    *,
    name: str = "faces",
    validate: bool = True,
) -> torch.Tensor:
    """Pad an index field, turning global indices into local ones.

    Args:
        values: integer ``[sum F_i, *D]`` global row indices into another packed field.
        offsets: ``int64 [B+1]`` offsets of ``values``.
        base: ``int64 [B+1]`` offsets of the field indexed into; item ``i``'s indices have
            ``base[i]`` subtracted.
        max_len, fill: as in :func:`packed_to_padded`; ``fill`` defaults to ``-1``.
        validate: as in :func:`packed_to_padded` (both offsets, ``max_len``).

    Returns:
        ``[B, max_len, *D]`` of ``values.dtype``, local indices, ``fill`` where padding.
    """
    _check_pair(values, offsets, name, "values")
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"field {name!r}: an index field must be integer, got {values.dtype}")
    if not isinstance(base, torch.Tensor):
        raise TypeError(f"field {name!r}: base must be a torch.Tensor, got {type(base)}")
    fill_double, exact = check_fill(values.dtype, fill, name)
    if validate:
        check_offsets(offsets, values.shape[0], name)
        check_offsets(base, None, f"{name} (base)")
        if base.shape != offsets.shape:
            raise ValueError(
                f"field {name!r}: base has {base.numel() - 1} items, offsets {offsets.numel() - 1}"
            )
    max_len = _resolve_max_len(offsets, max_len, name, validate)
    out = torch.ops.hetload.packed_to_padded_local(
        values, offsets, base.to(values.device), max_len, fill_double
    )
    return _fill_padding(out, offsets, exact)


def padded_to_packed(
    padded: torch.Tensor,
    offsets: torch.Tensor,
    *,
    total: int | None = None,
    name: str = "values",
    validate: bool = True,
) -> torch.Tensor:
    """Pack a dense batch: the first ``N_i`` rows of each item, back to back.

    Args:
        padded: ``[B, L, *D]``, any dtype, any device.
        offsets: ``int64 [B+1]``; ``N_i = offsets[i+1] - offsets[i]`` must be ``<= L``.
        total: ``sum N_i`` if known on the host (avoids reading ``offsets[-1]`` from a GPU);
            required under ``torch.compile``.
        validate: as in :func:`packed_to_padded`: the offsets invariants, ``B`` and every
            ``N_i <= L``; host checks eagerly, in-graph asserts under ``torch.compile``.

    Returns:
        ``[sum N_i, *D]`` of ``padded.dtype``; differentiable w.r.t. ``padded``.
    """
    _check_pair(padded, offsets, name, "padded")
    if padded.dim() < 2:
        raise ValueError(f"field {name!r}: padded must be [B, L, ...], got {tuple(padded.shape)}")
    if total is not None:
        total = check_max_len(total, name, "total")
    if validate:
        check_offsets(offsets, total, name)
        if offsets.numel() - 1 != padded.shape[0]:
            raise ValueError(
                f"field {name!r}: offsets describe {offsets.numel() - 1} items, "
                f"padded has {padded.shape[0]}"
            )
        if compiling():
            assert_longest_at_most(offsets, padded.shape[1], name)
        else:
            needed = longest(offsets)
            if needed > padded.shape[1]:
                raise ValueError(
                    f"field {name!r}: an item has {needed} rows but padded holds only "
                    f"{padded.shape[1]}"
                )
    if total is None:
        if compiling():
            raise _host_fact_needed("total", name)
        total = int(offsets[-1])
    if not isinstance(total, torch.SymInt):
        total = int(total)
    return torch.ops.hetload.padded_to_packed(padded.contiguous(), offsets, total)


def rebase_index_(
    samples: Sequence[torch.Tensor],
    out: torch.Tensor,
    bases: Sequence[int],
    counts: Sequence[int],
) -> int:
    """Pack an index field: write ``samples[i] + bases[i]`` into consecutive rows of ``out``,
    checking in the same pass that every index of sample ``i`` lies in ``[0, counts[i])``.

    Args:
        samples: ``B`` integer tensors ``[N_i, *D]`` (local indices), of ``out``'s dtype and
            device; non-contiguous ones are made contiguous first.
        out: ``[sum N_i, *D]``, contiguous; written in place (e.g. a shared-memory buffer).
        bases: ``B`` ints ``>= 0``, sample ``i``'s first row in the packed field it indexes;
            ``bases[i] + counts[i] - 1`` must fit ``out.dtype``.
        counts: ``B`` ints ``>= 0``, the rows sample ``i`` may index.

    Returns:
        ``-1`` when every index is in range (``out`` is then complete), else the first sample
        ``i`` holding one outside ``[0, counts[i])`` (``out``'s content is then unspecified).
        Malformed arguments raise ``RuntimeError``.
    """
    return torch.ops.hetload.rebase_index_(list(samples), out, list(bases), list(counts))


def backend(device: str | torch.device = "cpu") -> str:
    """Which implementation serves ``device``: ``"compiled"`` (kernels from ``cuda/``) or
    ``"torch"`` (the pure-torch fallback)."""
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(torch.device(device).type)
    if key is not None and _library.has_kernel("packed_to_padded", key):
        return "compiled"
    return "torch"


def extension_status() -> dict[str, str]:
    """Per compiled module (``"cpu"``, ``"cuda"``): where it was loaded from, or why it was not."""
    return {
        key.lower(): f"loaded {path}" if path is not None else str(error)
        for key, (path, error) in _library.EXTENSIONS.items()
    }
