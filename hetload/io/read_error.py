"""``ReadError`` and the checks every reader shares: sizes before allocation, finite values."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np

__all__ = ["ReadError", "check_finite", "check_fits"]

_MESSAGE = re.compile(r"ReadError: (?P<path>.+?)(?: \((?P<where>[^()]*)\))?: (?P<reason>.*?)\s*\Z")


class ReadError(ValueError):
    """A file hetload cannot read, and why.

    The message names the file and the place: ``line N`` for text formats, ``element 'face',
    byte offset B`` for binary ones. The parts are kept as attributes for programs.

    Attributes:
        path: the file, as given.
        reason: what is wrong, as a sentence.
        where: ``"line 12"``, ``"element 'face' at byte 912"`` or ``None``.
    """

    def __init__(
        self, path: str | os.PathLike, reason: str | None = None, where: str | None = None
    ) -> None:
        if reason is None:
            # one argument: a whole message, as DataLoader builds when it re-raises a worker's
            # ReadError ("Caught ReadError in DataLoader worker ... ReadError: <path>: <reason>")
            super().__init__(str(path))
            found = _MESSAGE.search(str(path))
            self.path = found["path"] if found else ""
            self.reason = found["reason"] if found else str(path)
            self.where = found["where"] if found else None
            return
        self.path = os.fspath(path)
        self.reason = reason
        self.where = where
        place = f" ({where})" if where else ""
        super().__init__(f"{self.path}{place}: {reason}")

    def __reduce__(self):
        # rebuild from the parts: DataLoader workers pickle exceptions back to the main process
        return (ReadError, (self.path, self.reason, self.where))


def check_fits(path: str | os.PathLike, need: int, have: int, what: str, where: str) -> None:
    """Raise before allocating when a header declares more bytes than the file holds."""
    if need > have:
        raise ReadError(
            path,
            f"{what} needs at least {need} bytes but only {have} remain: the file is truncated "
            "or its header declares too many items",
            where,
        )


def check_finite(
    path: str | os.PathLike, name: str, values: np.ndarray, where: Callable[[int], str]
) -> None:
    """Raise naming the first row of ``values`` that holds a NaN or an infinity.

    ``where(row)`` says where that row is in the file (``"line 12"``).
    """
    if values.size == 0 or np.isfinite(values).all():
        return
    bad = int(np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))[0])
    raise ReadError(
        path,
        f"{name} {bad} is not finite ({values[bad].tolist()}); "
        "pass allow_nonfinite=True to keep such values",
        where(bad),
    )
