"""The uncompiled implementation of ``torch.ops.hetload.rebase_index_`` (every device).

On the CPU it works through numpy, whose integer add and min/max loops beat torch's
single-threaded ones; elsewhere through torch. The compiled CPU kernel (``cuda/index_cpu.cpp``)
does the same in one fused pass.
"""

from __future__ import annotations

import numpy as np
import torch

from hetload.ops.contract import dtype_name

_OP = "hetload::rebase_index_"


def _check(samples: list[torch.Tensor], out: torch.Tensor, bases: list[int], counts: list[int]):
    """The same argument checks as the compiled kernel, with the same (RuntimeError) messages."""
    batch = len(samples)
    if len(bases) != batch or len(counts) != batch:
        raise RuntimeError(
            f"{_OP}: {batch} samples but {len(bases)} bases and {len(counts)} counts"
        )
    if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
        raise RuntimeError(f"{_OP}: an index field must be integer, got {dtype_name(out.dtype)}")
    if out.dim() < 1 or not out.is_contiguous():
        raise RuntimeError(f"{_OP}: out must be a contiguous [sum N_i, ...] tensor")
    top = min(torch.iinfo(out.dtype).max, 2**63 - 1)  # the compiled kernel's int64 bases
    total = 0
    for i, (s, base, count) in enumerate(zip(samples, bases, counts)):
        if s.dtype != out.dtype:
            raise RuntimeError(
                f"{_OP}: sample {i} has dtype {dtype_name(s.dtype)}, "
                f"out has {dtype_name(out.dtype)}"
            )
        if s.device != out.device:
            raise RuntimeError(f"{_OP}: sample {i} is not on out's device")
        if s.dim() != out.dim():
            raise RuntimeError(f"{_OP}: sample {i} has {s.dim()} dims, out has {out.dim()}")
        if s.shape[1:] != out.shape[1:]:
            raise RuntimeError(f"{_OP}: sample {i}'s trailing shape does not match out's")
        if count < 0 or base < 0:
            raise RuntimeError(
                f"{_OP}: sample {i} has base {base} and count {count}; both must be >= 0"
            )
        if count > 0 and base > top - (count - 1):
            raise RuntimeError(
                f"{_OP}: sample {i}'s packed indices reach {base} + {count - 1}, "
                f"more than {dtype_name(out.dtype)} holds"
            )
        total += s.numel()
    if total != out.numel():
        raise RuntimeError(f"{_OP}: the samples hold {total} elements, out {out.numel()}")


def rebase_index_(
    samples: list[torch.Tensor], out: torch.Tensor, bases: list[int], counts: list[int]
) -> int:
    """Write ``samples[i] + bases[i]`` into consecutive rows of ``out``.

    Args:
        samples: ``B`` integer tensors ``[N_i, *D]`` of ``out``'s dtype and device.
        out: ``[sum N_i, *D]``, contiguous; written in place.
        bases: per sample, what its indices are shifted by (``>= 0``); ``bases[i] +
            counts[i] - 1`` must fit the dtype.
        counts: per sample, the rows its indices may address: ``[0, counts[i])``.

    Returns:
        The first ``i`` whose sample holds an index outside ``[0, counts[i])``, or ``-1`` (then
        ``out`` is complete; otherwise its rows from sample ``i`` on are unspecified).
    """
    _check(samples, out, bases, counts)
    if out.device.type == "cpu":
        return _rebase_numpy(samples, out, bases, counts)
    return _rebase_torch(samples, out, bases, counts)


def _rebase_numpy(samples, out, bases, counts) -> int:
    packed = out.numpy()
    start = 0
    for i, s in enumerate(samples):
        end = start + s.shape[0]
        if s.numel():
            src = s.numpy()
            low, high = int(src.min()), int(src.max())
            if low < 0 or high >= counts[i]:
                return i
            # base fits the dtype (checked), and so does every in-range index plus base
            np.add(src, np.asarray(bases[i], dtype=src.dtype), out=packed[start:end])
        start = end
    return -1


def _rebase_torch(samples, out, bases, counts) -> int:
    """Any device, with one host sync in all. torch has no add for uint16/32/64: the add runs on
    the signed integer of the same width (same bits, wrapping alike), the range check on the
    values themselves."""
    signed = _SIGNED.get(out.dtype, out.dtype)
    bits = 8 * out.element_size()
    flags = []
    start = 0
    for s, base, count in zip(samples, bases, counts):
        end = start + s.shape[0]
        shift = (int(base) + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
        torch.add(s.view(signed), shift, out=out[start:end].view(signed))
        flags.append(((s < 0) | (s >= count)).any() if signed == s.dtype else _outside(s, count))
        start = end
    bad = torch.stack(flags).nonzero() if flags else None
    return int(bad[0, 0]) if bad is not None and bad.numel() else -1


_SIGNED = {
    torch.uint8: torch.int8,
    torch.uint16: torch.int16,
    torch.uint32: torch.int32,
    torch.uint64: torch.int64,
}


def _outside(s: torch.Tensor, count: int) -> torch.Tensor:
    """Whether an unsigned sample holds an index ``>= count``, compared without unsigned ops
    torch lacks: as int64 (uint64 values beyond int64 wrap negative, and are outside too)."""
    wide = s.view(torch.int64) if s.dtype == torch.uint64 else s.to(torch.int64)
    return ((wide < 0) | (wide >= count)).any()
