"""Pure-torch implementations of the packed <-> padded ops.

They serve every device when the compiled kernels from ``cuda/`` are not available, and they are
the baseline the kernels are benchmarked against. On the CPU each item is one slice copy (a
``memcpy`` per item, the padding tail filled, so every output byte is written once); elsewhere one
vectorized scatter/gather avoids ``B`` kernel launches. Arguments are checked as the compiled
kernels check them (:mod:`hetload.ops.contract`), so both paths fail alike.
"""

from __future__ import annotations

import torch

from hetload.ops import contract

__all__ = ["packed_to_padded", "packed_to_padded_local", "padded_to_packed"]


def _row_positions(offsets: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch_idx, pos)`` of every packed row: its item and its row within the item."""
    batch = offsets.numel() - 1
    lengths = offsets[1:] - offsets[:-1]
    batch_idx = torch.repeat_interleave(
        torch.arange(batch, device=offsets.device), lengths, output_size=total
    )
    pos = torch.arange(total, device=offsets.device) - offsets[:-1][batch_idx]
    return batch_idx, pos


def packed_to_padded(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, fill: float
) -> torch.Tensor:
    """``values [sum N_i, *D]`` -> ``[B, max_len, *D]``, rows past ``N_i`` set to ``fill``."""
    fill_t, bounds = contract.check_pad(values, offsets, max_len, fill)
    batch = offsets.numel() - 1
    out = values.new_empty((batch, max_len, *values.shape[1:]))
    if bounds is not None:
        for i in range(batch):
            start, end = bounds[i], bounds[i + 1]
            out[i, : end - start].copy_(values[start:end])
            out[i, end - start :].fill_(fill_t)
        return out
    out.fill_(fill_t.to(out.device))
    if values.shape[0]:
        batch_idx, pos = _row_positions(offsets, values.shape[0])
        out[batch_idx, pos] = values
    return out


def packed_to_padded_local(
    values: torch.Tensor, offsets: torch.Tensor, base: torch.Tensor, max_len: int, fill: float
) -> torch.Tensor:
    """Index field version: item ``i``'s rows minus ``base[i]`` (global -> local), padded.

    The subtraction wraps like the dtype (the compiled kernel's unsigned arithmetic): it runs on
    the signed integer of the same width, which torch can subtract for every width.
    """
    fill_t, bounds = contract.check_pad_local(values, offsets, base, max_len, fill)
    batch = offsets.numel() - 1
    out = values.new_empty((batch, max_len, *values.shape[1:]))
    signed = _SIGNED_TWIN.get(values.dtype, values.dtype)
    src, dst = values.view(signed), out.view(signed)
    bits = 8 * values.element_size()
    if bounds is not None:
        for i, shift in enumerate(base.tolist()[:batch]):
            start, end = bounds[i], bounds[i + 1]
            wrapped = (shift + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
            torch.sub(src[start:end], wrapped, out=dst[i, : end - start])
            out[i, end - start :].fill_(fill_t)
        return out
    out.fill_(fill_t.to(out.device))
    if values.shape[0]:
        batch_idx, pos = _row_positions(offsets, values.shape[0])
        shift = base[:-1][batch_idx].to(signed)
        dst[batch_idx, pos] = src - shift.view(-1, *([1] * (values.dim() - 1)))
    return out


#: unsigned dtypes and the signed one of the same width (same bits, wrapping arithmetic)
_SIGNED_TWIN = {
    torch.uint8: torch.int8,
    torch.uint16: torch.int16,
    torch.uint32: torch.int32,
    torch.uint64: torch.int64,
}


def padded_to_packed(padded: torch.Tensor, offsets: torch.Tensor, total: int) -> torch.Tensor:
    """``padded [B, L, *D]`` -> ``[total, *D]``: the first ``N_i`` rows of each item, packed."""
    bounds = contract.check_pack(padded, offsets, total)
    out = padded.new_empty((total, *padded.shape[2:]))
    if bounds is not None:
        for i in range(offsets.numel() - 1):
            start, end = bounds[i], bounds[i + 1]
            out[start:end].copy_(padded[i, : end - start])
        return out
    if total:
        batch_idx, pos = _row_positions(offsets, total)
        out.copy_(padded[batch_idx, pos])
    return out
