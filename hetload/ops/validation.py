"""Cheap checks of the packed-layout invariants, shared by every op and structure.

The invariants (the contract of :class:`hetload.Ragged`): ``offsets`` is a 1-D int64 tensor of
``B+1`` entries, starts at 0, is non-decreasing and ends at the number of packed rows. A
violation raises ``ValueError`` naming the field, never an index error from deep inside a kernel.
"""

from __future__ import annotations

import torch

from hetload.ops.traced import assert_offsets, compiling

__all__ = ["check_offsets", "longest"]


def check_offsets(offsets: torch.Tensor, total: int | None, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``offsets`` is valid for ``total`` packed rows.

    ``total=None`` skips the end check (used for offsets of another field). One pass over the
    ``B+1`` integers; a device sync when ``offsets`` lives on a GPU. Under ``torch.compile`` the
    checks become in-graph asserts (:mod:`hetload.ops.traced`, a ``RuntimeError`` instead).
    """
    if not isinstance(offsets, torch.Tensor):
        raise TypeError(f"field {name!r}: offsets must be a torch.Tensor, got {type(offsets)}")
    if offsets.dtype != torch.int64:
        raise ValueError(f"field {name!r}: offsets must be int64, got {offsets.dtype}")
    if offsets.dim() != 1 or offsets.numel() == 0:
        raise ValueError(
            f"field {name!r}: offsets must be 1-D with B+1 >= 1 entries, "
            f"got shape {tuple(offsets.shape)}"
        )
    if compiling():
        # no host read inside a traced graph: the same checks as asserts in the graph
        assert_offsets(offsets, total, name)
        return
    host = offsets if offsets.device.type == "cpu" else offsets.cpu()
    first = int(host[0])
    if first != 0:
        raise ValueError(f"field {name!r}: offsets[0] must be 0, got {first}")
    if host.numel() > 1:
        steps = host[1:] - host[:-1]
        if bool((steps < 0).any()):
            bad = int(torch.nonzero(steps < 0)[0, 0])
            raise ValueError(
                f"field {name!r}: offsets must be non-decreasing, but offsets[{bad + 1}]="
                f"{int(host[bad + 1])} < offsets[{bad}]={int(host[bad])}"
            )
    if total is not None:
        last = int(host[-1])
        if last != total:
            raise ValueError(
                f"field {name!r}: offsets[-1]={last} does not match the {total} packed rows"
            )


def longest(offsets: torch.Tensor) -> int:
    """The largest item length, as a host int (0 when ``B == 0``)."""
    if offsets.numel() <= 1:
        return 0
    host = offsets if offsets.device.type == "cpu" else offsets.cpu()
    return int((host[1:] - host[:-1]).max())
