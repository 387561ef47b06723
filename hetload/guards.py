"""Guards at the I/O seams: bounded error text, regular files only, seeds and epochs in range.

Three small rules every entry point shares, kept in one place so that no module re-invents them:

- :func:`shown`: a value quoted in an error message is cut to a fixed length *while* it is
  rendered, never after (a 600-byte YAML alias bomb expands to gigabytes under ``repr``);
- :func:`open_regular` / :func:`check_regular`: a path where a file is expected must be a regular
  file; a FIFO would block the reader forever, a device would stream without end, a folder fails
  late with an unhelpful ``IsADirectoryError``. Opening is done with ``O_NONBLOCK`` and checked
  with ``fstat`` on the open descriptor, so a file swapped for a FIFO between a check and the open
  still cannot block;
- :func:`check_seed`: seeds and epochs are ints in ``[0, 2**63)``, the range every generator
  hetload seeds (numpy's ``SeedSequence``, torch's ``manual_seed``, int64 shared counters) takes.
"""

from __future__ import annotations

import math
import numbers
import os
import stat
from pathlib import Path
from typing import Any

__all__ = [
    "NotRegularFile",
    "check_fields",
    "check_regular",
    "check_seed",
    "open_regular",
    "open_regular_fd",
    "read_regular",
    "shown",
]

#: the largest seed or epoch accepted (int64, what torch's shared epoch counters hold)
MAX_SEED = 2**63 - 1
#: the most worker processes or threads any hetload entry point starts
MAX_WORKERS = 1024


class _Full(Exception):
    pass


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters (``...`` marks the cut).

    Containers are walked lazily with a character budget, so the cost is ``O(limit)`` whatever
    the value holds: nested lists sharing one object thousands of times (a YAML alias bomb),
    multi-megabyte strings and ints too long for ``str`` are all shown cheaply.
    """
    parts: list[str] = []
    budget = [limit]

    def emit(text: str) -> None:
        if len(text) >= budget[0]:
            parts.append(text[: max(budget[0], 0)])
            raise _Full
        parts.append(text)
        budget[0] -= len(text)

    def walk(item: Any, depth: int) -> None:
        if depth > 8:
            emit("...")
        elif isinstance(item, (list, tuple, set, frozenset)):
            opener, closer = {list: "[]", tuple: "()"}.get(type(item), "{}")
            emit(opener)
            for i, element in enumerate(item):
                if i:
                    emit(", ")
                walk(element, depth + 1)
            emit("," + closer if type(item) is tuple and len(item) == 1 else closer)
        elif isinstance(item, dict):
            emit("{")
            for i, (key, element) in enumerate(item.items()):
                if i:
                    emit(", ")
                walk(key, depth + 1)
                emit(": ")
                walk(element, depth + 1)
            emit("}")
        elif isinstance(item, (str, bytes, bytearray)):
            text = repr(item[: limit + 1])
            emit(text if len(item) <= limit else text + "...")
        elif isinstance(item, int) and not isinstance(item, bool) and item.bit_length() > 256:
            emit(f"<an int of {item.bit_length()} bits>")
        else:
            emit(repr(item))

    try:
        walk(value, 0)
    except _Full:
        return "".join(parts).rstrip() + "..."
    return "".join(parts)


class NotRegularFile(ValueError):
    """A path where a file is expected names a FIFO, a device, a socket or a folder."""

    def __init__(self, path: str | os.PathLike, kind: str) -> None:
        super().__init__(f"{path}: is {kind}, not a regular file")
        self.path = str(path)
        self.kind = kind


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a file"


def check_regular(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` when it is a regular file (symlinks followed).

    Raises:
        NotRegularFile: a FIFO, device, socket or folder (a ``ValueError`` naming the path).
        FileNotFoundError / OSError: the path cannot be stat'ed.
    """
    kind = _kind(os.stat(path).st_mode)
    if kind is not None:
        raise NotRegularFile(path, kind)
    return Path(path)


def open_regular_fd(path: str | os.PathLike) -> int:
    """A read-only descriptor of a regular file, refusing anything else without blocking:
    opened with ``O_NONBLOCK`` (a FIFO opens at once instead of waiting for a writer), checked
    with ``fstat`` on the open descriptor, then switched back to blocking reads.

    Raises:
        NotRegularFile: naming the path and what it is.
        OSError: the path cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise NotRegularFile(path, kind)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: str | os.PathLike, mode: str = "rb"):
    """:func:`open_regular_fd` as a file object: ``"rb"``, or ``"r"`` (UTF-8 text)."""
    if mode not in ("rb", "r"):
        raise ValueError(f"open_regular reads only ('rb' or 'r'), got mode {mode!r}")
    fd = open_regular_fd(path)
    try:
        return os.fdopen(fd, mode, **({} if mode == "rb" else {"encoding": "utf-8"}))
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike) -> bytes:
    """All bytes of a regular file (see :func:`open_regular`)."""
    with open_regular(path) as fh:
        return fh.read()


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as an int when it is a valid seed or epoch: an integer (not a bool, not a
    float) in ``[0, 2**63)``.

    Raises:
        ValueError: naming ``name`` and the value (shown bounded).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            raise ValueError(f"{name} must be an int, got the float {shown(value)}")
        raise ValueError(f"{name} must be an int, got {shown(value)} ({type(value).__name__})")
    value = int(value)
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must be in [0, 2**63), got {shown(value)}")
    return value


def check_fields(fields: Any, who: str) -> list[str] | None:
    """``fields`` as a list of distinct non-empty names, or ``None``.

    A bare string is refused: ``list("verts")`` would select the fields ``v``, ``e``, ``r``...

    Raises:
        ValueError: naming ``who`` and the offending value.
    """
    if fields is None:
        return None
    if isinstance(fields, (str, bytes)) or not isinstance(fields, (list, tuple)):
        raise ValueError(f"{who}: fields must be a list of field names, got {shown(fields)}")
    names = list(fields)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{who}: fields must be non-empty strings, got {shown(name)}")
    if len(set(names)) != len(names):
        repeated = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{who}: field {shown(repeated)} is listed twice in fields")
    return names
