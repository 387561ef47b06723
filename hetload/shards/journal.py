"""The journal that makes ``preprocess`` resumable: one fsynced JSON line per finished shard.

Line 1 is the run's header (input fingerprint and settings); each further line records one
segment of the input: the files it covered (up to ``done``, exclusive), the shard they produced
(its index entry, or ``null`` when every file in it was skipped) and the files skipped in it.
A line is appended only after its shard has been renamed to its final name, so a run killed at
any moment leaves at most one shard that the journal does not list; a restart redoes that shard
(with the same bytes, the writer being deterministic). A kill in the middle of an append leaves
a partial last line, which is dropped on reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["Journal"]


class Journal:
    """Append-only JSON lines, each written with one ``write`` and an ``fsync``.

    Args:
        path: the journal file.
        header: what the run is (input fingerprint, settings); a journal with another header
            belongs to another run and is refused.
    """

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.records: list[dict[str, Any]] = []
        if path.exists():
            self.records = self._read()
        else:
            self._append(path, {"journal": 1, **header}, create=True)

    def _read(self) -> list[dict[str, Any]]:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        complete = lines[:-1]  # a kill mid-append leaves a tail without its newline
        records: list[dict[str, Any]] = []
        good_end = 0
        for number, line in enumerate(complete, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(complete):
                    break
                raise ValueError(
                    f"{self.path}: line {number} is not JSON; the journal is damaged "
                    "(delete the output folder to start again)"
                ) from None
            records.append(record)
            good_end += len(line) + 1
        if good_end != len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
        if not records:
            self._append(self.path, {"journal": 1, **self.header}, create=True)
            return []
        head = dict(records[0])
        head.pop("journal", None)
        if head != self.header:
            changed = sorted(
                k for k in set(head) | set(self.header) if head.get(k) != self.header.get(k)
            )
            raise ValueError(
                f"{self.path.parent} holds an unfinished run with a different {', '.join(changed)} "
                "(the input files or the settings changed): rerun with the same input and "
                "settings to finish it, or use a new output folder"
            )
        return records[1:]

    def append(self, record: dict[str, Any]) -> None:
        self._append(self.path, record)
        self.records.append(record)

    @staticmethod
    def _append(path: Path, record: dict[str, Any], create: bool = False) -> None:
        line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_TRUNC if create else 0)
        fd = os.open(path, flags, 0o644)
        try:
            # a nearly full disk may take part of the line and return the count: a torn line
            # followed by whole ones would make the journal unreadable
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
