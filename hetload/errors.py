"""One error policy for every stage: readers, datasets, the preprocessor, streaming pipelines.

``on_error`` is ``"raise"`` (stop at the first bad input), ``"skip"`` (drop it, record why) or
``"warn"`` (drop it, record why, and emit a warning). Like WebDataset's ``handler(exn)``, the
decision lives in one object that every stage calls, never re-implemented per module; unlike a bare
handler, it keeps a report of what was dropped, so a shortened epoch is never silent.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Literal

__all__ = ["ErrorPolicy", "HetloadWarning", "OnError", "Skipped"]

OnError = Literal["raise", "skip", "warn"]
_MODES = ("raise", "skip", "warn")
log = logging.getLogger("hetload")


class HetloadWarning(UserWarning):
    """Warnings about skipped inputs (``on_error="warn"``)."""


@dataclass(frozen=True)
class Skipped:
    """One dropped input: where it came from and why."""

    source: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason}


class ErrorPolicy:
    """Decide what a bad input does, and remember every input that was dropped.

    >>> policy = ErrorPolicy("skip")
    >>> try:
    ...     raise ValueError("bad header")
    ... except ValueError as exc:
    ...     policy.handle("a.ply", exc)
    >>> policy.report
    [Skipped(source='a.ply', reason='ValueError: bad header')]
    """

    def __init__(self, mode: OnError | ErrorPolicy = "raise") -> None:
        if isinstance(mode, ErrorPolicy):
            mode = mode.mode
        if mode not in _MODES:
            raise ValueError(f"on_error must be one of {_MODES}, got {mode!r}")
        self.mode: OnError = mode
        self.report: list[Skipped] = []

    def handle(self, source: str, exc: BaseException) -> None:
        """Re-raise ``exc`` under ``"raise"``; otherwise record ``(source, reason)`` and return."""
        if self.mode == "raise":
            raise exc
        reason = f"{type(exc).__name__}: {exc}"
        self.report.append(Skipped(str(source), reason))
        log.info("skipped %s: %s", source, reason)
        if self.mode == "warn":
            warnings.warn(f"hetload skipped {source}: {reason}", HetloadWarning, stacklevel=3)

    def as_handler(self, source: str = "<stream>"):
        """A WebDataset-style ``handler(exn) -> bool``: True to continue, raising under
        ``"raise"``. The source is taken from the exception's ``source`` attribute when set."""

        def handler(exn: BaseException) -> bool:
            self.handle(getattr(exn, "source", source), exn)
            return True

        return handler

    def __repr__(self) -> str:
        return f"ErrorPolicy({self.mode!r}, skipped={len(self.report)})"
