"""One error policy for every stage: readers, datasets, the preprocessor, streaming pipelines.

``on_error`` is ``"raise"`` (stop at the first bad input), ``"skip"`` (drop it, record why) or
``"warn"`` (drop it, record why, and emit a warning). Like WebDataset's ``handler(exn)``, the
decision lives in one object that every stage calls, never re-implemented per module; unlike a bare
handler, it keeps a report of what was dropped, so a shortened epoch is never silent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import uuid
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hetload.guards import check_regular

__all__ = ["ErrorPolicy", "HetloadWarning", "OnError", "Skipped", "caller_stacklevel"]

OnError = Literal["raise", "skip", "warn"]
_MODES = ("raise", "skip", "warn")
log = logging.getLogger("hetload")


class HetloadWarning(UserWarning):
    """Warnings about skipped inputs (``on_error="warn"``)."""


#: the package's folder: frames from files below it are hetload's own
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside hetload (the
    user's ``ds[i]`` or loop line), however deep inside the library it is raised; for the
    caller of this function, so it counts from the frame that calls ``warnings.warn``."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


@dataclass(frozen=True)
class Skipped:
    """One dropped input: where it came from and why."""

    source: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason}


class ErrorPolicy:
    """Decide what a bad input does, and remember every input that was dropped.

    The report lives in this process; :meth:`share` also appends each entry to a JSON-lines file
    (one ``write`` of an ``O_APPEND`` file per entry, so lines from several processes never
    interleave), which makes skips in DataLoader worker processes visible in the main process's
    :attr:`report`. Datasets used with workers share their policy.

    >>> policy = ErrorPolicy("skip")
    >>> try:
    ...     raise ValueError("bad header")
    ... except ValueError as exc:
    ...     policy.handle("a.ply", exc)
    >>> policy.report
    [Skipped(source='a.ply', reason='ValueError: bad header')]
    """

    def __init__(
        self,
        mode: OnError | ErrorPolicy = "raise",
        *,
        report_path: str | os.PathLike | None = None,
    ) -> None:
        if isinstance(mode, ErrorPolicy):
            report_path = report_path if report_path is not None else mode.report_path
            mode = mode.mode
        if mode not in _MODES:
            raise ValueError(f"on_error must be one of {_MODES}, got {mode!r}")
        self.mode: OnError = mode
        self.report_path: Path | None = None if report_path is None else Path(report_path)
        if self.report_path is not None and self.report_path.exists():
            check_regular(self.report_path)  # a FIFO would block the first skip forever
        self._local: list[Skipped] = []

    def share(self) -> ErrorPolicy:
        """Keep the report in a file every process appends to (a temporary file unless
        ``report_path`` was given; removed when the policy that made it is collected).
        Returns ``self``."""
        if self.report_path is None:
            name = f"hetload-report-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self.report_path = Path(tempfile.gettempdir()) / name
            weakref.finalize(self, _remove_if_owner, str(self.report_path), os.getpid())
        return self

    def handle(self, source: str, exc: BaseException) -> None:
        """Re-raise ``exc`` under ``"raise"``; otherwise record ``(source, reason)`` and return."""
        if self.mode == "raise":
            raise exc
        self.note(source, f"{type(exc).__name__}: {exc}")

    def note(self, source: str, reason: str) -> None:
        """Record ``(source, reason)`` in the report (and warn under ``"warn"``) without raising:
        what a skip changed downstream, e.g. a substitute served in place of a skipped batch."""
        skipped = Skipped(str(source), reason)
        self._local.append(skipped)
        if self.report_path is not None:
            self._append(skipped)
        log.info("skipped %s: %s", skipped.source, skipped.reason)
        if self.mode == "warn":
            warnings.warn(
                f"hetload skipped {skipped.source}: {skipped.reason}",
                HetloadWarning,
                stacklevel=caller_stacklevel(),
            )

    @property
    def report(self) -> list[Skipped]:
        """Every input dropped so far (by any process when shared), once per (source, reason),
        in the order they were first recorded."""
        seen: dict[tuple[str, str], Skipped] = {}
        for skipped in [*self._read_shared(), *self._local]:
            seen.setdefault((skipped.source, skipped.reason), skipped)
        return list(seen.values())

    @property
    def last(self) -> Skipped | None:
        """The entry this process recorded last."""
        return self._local[-1] if self._local else None

    def as_handler(self, source: str = "<stream>"):
        """A WebDataset-style ``handler(exn) -> bool``: True to continue, raising under
        ``"raise"``. The source is taken from the exception's ``source`` attribute when set."""

        def handler(exn: BaseException) -> bool:
            self.handle(getattr(exn, "source", source), exn)
            return True

        return handler

    def _append(self, skipped: Skipped) -> None:
        entry = {**skipped.as_dict(), "pid": os.getpid()}
        line = (json.dumps(entry) + "\n").encode("utf-8")
        try:
            fd = os.open(self.report_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as err:  # the in-process report still has the entry
            log.warning("hetload: cannot append to the report %s: %s", self.report_path, err)

    def _read_shared(self) -> list[Skipped]:
        if self.report_path is None:
            return []
        try:
            text = self.report_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                entries.append(Skipped(entry["source"], entry["reason"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a killed writer
        return entries

    def __repr__(self) -> str:
        return f"ErrorPolicy({self.mode!r}, skipped={len(self.report)})"


def _remove_if_owner(path: str, owner: int) -> None:
    # a forked worker holds a copy of the policy; only the process that made the file removes it
    if os.getpid() == owner:
        with contextlib.suppress(OSError):
            os.unlink(path)
