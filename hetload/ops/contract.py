"""The argument contract of the raw ``torch.ops.hetload`` ops, for the pure-torch path.

The compiled kernels check their arguments in C++ (``cuda/pad_host.h``, ``cuda/pad_cpu.cpp``);
these are the same checks with the same words, so that an op called with bad arguments fails
the same way (``RuntimeError``, same reason) whichever path serves it
(``tests/test_ops_parity.py``). Offsets *values* are checked where they are on the CPU (a free
read), as the compiled CPU kernel does; on a GPU that would be a device sync, and the CUDA kernel
only clamps them, so there the public wrappers (:mod:`hetload.ops`) are the check.
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_pack", "check_pad", "check_pad_local", "dtype_name", "fill_value"]

PAD = "hetload::packed_to_padded"
PAD_LOCAL = "hetload::packed_to_padded_local"
PACK = "hetload::padded_to_packed"

_INTEGER = (
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint16,
    torch.uint32,
    torch.uint64,
)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.uint8`` -> ``"uint8"``: the name the compiled kernels print."""
    return str(dtype).removeprefix("torch.")


def _fail(message: str) -> None:
    raise RuntimeError(message)


def _number(value: float) -> str:
    """A double as C++'s ``ostream`` prints it (6 significant digits, ``%g``)."""
    return f"{value:g}"


def _check_index_tensor(idx: torch.Tensor, data: torch.Tensor, op: str, what: str) -> None:
    if idx.dtype != torch.int64:
        _fail(f"{op}: {what} must be int64, got {dtype_name(idx.dtype)}")
    if idx.dim() != 1 or idx.numel() < 1:
        _fail(
            f"{op}: {what} must be 1-D with B+1 >= 1 entries, got {idx.dim()} dims and "
            f"{idx.numel()} entries"
        )
    if idx.device != data.device:
        _fail(f"{op}: {what} must be on the same device as the data")


def _check_offsets(offsets: torch.Tensor, rows: int, max_len: int, op: str) -> list[int] | None:
    """The offsets' values (CPU only, as the compiled CPU kernel): returns them as a list."""
    if offsets.device.type != "cpu":
        return None
    o = offsets.tolist()
    if o[0] != 0:
        _fail(f"{op}: offsets[0] must be 0, got {o[0]}")
    steps = offsets[1:] - offsets[:-1]
    # the first offending item, in the kernel's order (a decrease or an overlong item)
    bad = torch.nonzero((steps < 0) | (steps > max_len))
    if bad.numel():
        b = int(bad[0, 0])
        length = o[b + 1] - o[b]
        if length < 0:
            _fail(
                f"{op}: offsets must be non-decreasing, but offsets[{b + 1}]={o[b + 1]} < "
                f"offsets[{b}]={o[b]}"
            )
        _fail(f"{op}: item {b} has {length} rows, more than max_len={max_len}")
    if o[-1] != rows:
        _fail(f"{op}: offsets[-1]={o[-1]} does not match the {rows} packed rows")
    return o


def fill_value(dtype: torch.dtype, fill: float, op: str) -> torch.Tensor:
    """The fill as a 0-d tensor of ``dtype``, converted by torch from the double, after the same
    exactness checks as the compiled ``fill_pattern``: an integer or bool dtype takes only whole
    numbers in its range (0 / 1 for bool); a float dtype any value it does not overflow."""
    fill = float(fill)
    if dtype in _INTEGER or dtype == torch.bool:
        if dtype == torch.bool:
            low, high = 0.0, 2.0
        else:
            info = torch.iinfo(dtype)
            low, high = float(info.min), float(info.max) + 1  # powers of two: exact
        if not (math.isfinite(fill) and math.trunc(fill) == fill and low <= fill < high):
            _fail(f"{op}: fill {_number(fill)} cannot be stored exactly in {dtype_name(dtype)}")
    value = torch.tensor(fill, dtype=torch.float64).to(dtype)
    if dtype not in _INTEGER and dtype != torch.bool and math.isfinite(fill):
        back = complex(value.to(torch.complex128 if value.is_complex() else torch.float64)).real
        # beyond the range: an infinity, or a saturated maximum (float8_e4m3fn has no inf, 500
        # becomes 448); rounding moves a value by at most half an ulp, eps / 2 of it
        saturated = abs(fill) > 1.0 and abs(back - fill) > abs(fill) * torch.finfo(dtype).eps / 2
        if not math.isfinite(back) or saturated:
            _fail(f"{op}: fill {_number(fill)} overflows {dtype_name(dtype)}")
    return value


def check_pad(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, fill: float, op: str = PAD
) -> tuple[torch.Tensor, list[int] | None]:
    """``packed_to_padded``'s checks; returns the fill tensor and the host offsets (or None)."""
    if values.dim() < 1:
        _fail(f"{op}: values must be [sum N_i, ...], got a scalar")
    _check_index_tensor(offsets, values, op, "offsets")
    if max_len < 0:
        _fail(f"{op}: max_len must be >= 0, got {max_len}")
    fill_t = fill_value(values.dtype, fill, op)
    return fill_t, _check_offsets(offsets, values.shape[0], max_len, op)


def check_pad_local(
    values: torch.Tensor, offsets: torch.Tensor, base: torch.Tensor, max_len: int, fill: float
) -> tuple[torch.Tensor, list[int] | None]:
    """``packed_to_padded_local``'s checks (an integer index field, ``base`` like offsets)."""
    if values.dim() < 1:
        _fail(f"{PAD_LOCAL}: values must be [sum N_i, ...], got a scalar")
    _check_index_tensor(offsets, values, PAD_LOCAL, "offsets")
    if max_len < 0:
        _fail(f"{PAD_LOCAL}: max_len must be >= 0, got {max_len}")
    if values.dtype not in _INTEGER:
        _fail(f"{PAD_LOCAL}: an index field must be integer, got {dtype_name(values.dtype)}")
    _check_index_tensor(base, values, PAD_LOCAL, "base")
    if base.numel() != offsets.numel():
        _fail(f"{PAD_LOCAL}: base has {base.numel()} entries, offsets {offsets.numel()}")
    fill_t = fill_value(values.dtype, fill, PAD_LOCAL)
    return fill_t, _check_offsets(offsets, values.shape[0], max_len, PAD_LOCAL)


def check_pack(padded: torch.Tensor, offsets: torch.Tensor, total: int) -> list[int] | None:
    """``padded_to_packed``'s checks."""
    if padded.dim() < 2:
        _fail(f"{PACK}: padded must be [B, L, ...], got {padded.dim()} dims")
    _check_index_tensor(offsets, padded, PACK, "offsets")
    if offsets.numel() - 1 != padded.shape[0]:
        _fail(f"{PACK}: offsets describe {offsets.numel() - 1} items, padded has {padded.shape[0]}")
    if total < 0:
        _fail(f"{PACK}: total must be >= 0, got {total}")
    return _check_offsets(offsets, total, padded.shape[1], PACK)
