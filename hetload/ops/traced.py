"""The offsets checks as graph ops, for code traced by ``torch.compile``.

Eager code checks offsets on the host (:mod:`hetload.ops.validation`) and raises ``ValueError``.
Under ``torch.compile`` reading a value back to the host is a data-dependent guard, which
``fullgraph=True`` refuses ("Could not guard on data-dependent expression"). There, the same
invariants become ``torch._assert_async`` nodes inside the graph: nothing waits for the device,
and a violation still stops the program with a ``RuntimeError`` naming the field and the rule
(on a GPU it surfaces at the next synchronization, as a device-side assert does).
"""

from __future__ import annotations

import torch

__all__ = ["assert_longest_at_most", "assert_offsets", "compiling"]


def compiling() -> bool:
    """Whether the caller is being traced by ``torch.compile`` / ``torch.export``."""
    return torch.compiler.is_compiling()


def assert_offsets(offsets: torch.Tensor, total: int | None, name: str) -> None:
    """In-graph checks of ``offsets`` (int64 ``[B+1]``): starts at 0, non-decreasing, ends at
    ``total`` when given."""
    torch._assert_async(offsets[0] == 0, f"field {name!r}: offsets[0] must be 0")
    if offsets.shape[0] > 1:
        steps = offsets[1:] - offsets[:-1]
        torch._assert_async((steps >= 0).all(), f"field {name!r}: offsets must be non-decreasing")
    if total is not None:
        torch._assert_async(
            offsets[-1] == total, f"field {name!r}: offsets[-1] does not match the packed rows"
        )


def assert_longest_at_most(offsets: torch.Tensor, max_len: int, name: str) -> None:
    """In-graph check that no item of ``offsets`` holds more than ``max_len`` rows."""
    if offsets.shape[0] > 1:
        steps = offsets[1:] - offsets[:-1]
        torch._assert_async(
            (steps <= max_len).all(),
            f"field {name!r}: max_len is shorter than the longest item",
        )
