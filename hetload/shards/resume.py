"""The run state of ``preprocess``: the output lock, the journal's resume point, leftovers of
a killed run, the final index, and :func:`merge_parts` for ``--part i/n`` runs."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hetload.shards.index import ShardEntry, ShardIndex, check_shards, merge_indexes, write_atomic
from hetload.shards.journal import Journal

__all__ = [
    "JOURNAL",
    "PreprocessResult",
    "exclusive",
    "finish",
    "finished",
    "full_disk_hint",
    "merge_parts",
    "refuse_stray_shards",
    "remove_leftovers",
    "resume_point",
]

JOURNAL = ".hetload-journal.jsonl"


@dataclass
class PreprocessResult:
    """What a run did; ``str()`` is the summary table the CLI prints."""

    out_dir: Path
    files: int
    samples: int
    skipped: int
    shards: int
    shard_bytes: int
    resumed_at: int = 0
    read_files: int = 0
    read_bytes: int = 0
    seconds: float = 0.0
    already_complete: bool = False
    errors: list[dict[str, str]] = field(default_factory=list)
    #: files under the source folder of a suffix no reader handles (not read)
    unreadable: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        rate = self.read_files / self.seconds if self.seconds > 0 else 0.0
        mbps = self.read_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0
        rows = [
            ("output", str(self.out_dir)),
            ("files", f"{self.files} ({self.skipped} skipped, see errors.jsonl)"),
            ("samples", f"{self.samples} in {self.shards} shards, {self.shard_bytes / 1e6:.1f} MB"),
        ]
        if self.unreadable:
            more = f", ... ({len(self.unreadable)})" if len(self.unreadable) > 3 else ""
            names = ", ".join(self.unreadable[:3]) + more
            rows.append(("not read", f"no reader handles {names}"))
        if self.already_complete:
            rows.append(("status", "already complete: nothing to do"))
        else:
            if self.resumed_at:
                rows.append(("resumed", f"after {self.resumed_at} files done by an earlier run"))
            rows.append(
                (
                    "this run",
                    f"{self.read_files} files, {self.read_bytes / 1e6:.1f} MB in "
                    f"{self.seconds:.1f} s: {rate:.1f} files/s, {mbps:.1f} MB/s",
                )
            )
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


@contextlib.contextmanager
def full_disk_hint(out_dir: Path) -> Iterator[None]:
    """A full disk or quota: name the output folder and say that a rerun resumes (the bare
    ``[Errno 28] No space left on device`` of a buffered write names neither)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise OSError(
            exc.errno,
            f"{out_dir}: {exc.strerror or os.strerror(exc.errno)}; the shards finished so far "
            "are kept: free some space and rerun the same command to resume",
        ) from exc


class exclusive:
    """An advisory lock on ``out_dir``: two runs writing the same shards would corrupt both."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / ".hetload-lock"

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise RuntimeError(
                f"another `hetload preprocess` is writing to {self.path.parent}"
            ) from None

    def __exit__(self, *exc: object) -> None:
        if (self.path.parent / "index.json").exists():
            self.path.unlink(missing_ok=True)  # a finished folder holds only its results
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def finished(out_dir: Path, header: dict[str, Any]) -> PreprocessResult | None:
    """The result of an earlier complete run of the same job in ``out_dir``, if there is one."""
    path = out_dir / "index.json"
    if not path.exists():
        return None
    index = ShardIndex.load(path)
    check_shards(index)
    stored = {k: index.info.get(k) for k in header}
    if stored != header:
        raise ValueError(
            f"{out_dir} already holds shards from other inputs or settings; use a new folder"
        )
    (out_dir / JOURNAL).unlink(missing_ok=True)
    errors = _read_errors(out_dir / "errors.jsonl")
    return PreprocessResult(
        out_dir,
        files=_part_size(header),
        samples=index.nsamples,
        skipped=len(errors),
        shards=len(index.shards),
        shard_bytes=sum(head[2] for head in index.heads()),
        already_complete=True,
        errors=errors,
    )


def _part_size(header: dict[str, Any]) -> int:
    (i, n), total = header["parts"][0], header["files"]
    return (i + 1) * total // n - i * total // n


def _read_errors(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def refuse_stray_shards(out_dir: Path) -> None:
    """Before a run creates its journal: shards there are another run's, never to be deleted.
    (Once the journal exists, even holding only its header after a kill between the first
    shard's rename and its journal line, shards past the journal are this run's leftovers.)"""
    stray = sorted(out_dir.glob("shard-*.tar"))
    if stray:
        raise ValueError(
            f"{out_dir} holds {stray[0].name} but no journal of the run that wrote it; "
            "use an empty output folder"
        )


def resume_point(out_dir: Path, journal: Journal, lo: int) -> tuple[int, int]:
    """``(next input position, shards already done)``, after checking the journaled shards."""
    shard_count = 0
    for record in journal.records:
        shard = record.get("shard")
        if shard is None:
            continue
        path = out_dir / shard["url"]
        size = path.stat().st_size if path.exists() else -1
        if size != shard["filesize"]:
            raise ValueError(
                f"{path}: the journal lists it with {shard['filesize']} bytes, found "
                f"{'no file' if size < 0 else f'{size} bytes'}; the output was modified, "
                "delete the folder to start again"
            )
        shard_count += 1
    done = journal.records[-1]["done"] if journal.records else lo
    return done, shard_count


def remove_leftovers(out_dir: Path, shard_count: int) -> None:
    """Partial files, and shards past the journal (renamed just before a kill), are redone."""
    for path in out_dir.glob("*.partial"):
        path.unlink()
    for path in out_dir.glob("shard-*.tar"):
        number = path.name[len("shard-") : -len(".tar")]
        if number.isdigit() and int(number) >= shard_count:
            path.unlink()


def finish(
    out_dir: Path, journal: Journal, header: dict[str, Any], result: PreprocessResult, name: str
) -> None:
    shards = [
        ShardEntry.from_json(r["shard"], str(journal.path)) for r in journal.records if r["shard"]
    ]
    errors = [error for record in journal.records for error in record["errors"]]
    lines = b"".join(json.dumps(e, sort_keys=True).encode() + b"\n" for e in errors)
    write_atomic(out_dir / "errors.jsonl", lines)
    samples = sum(s.nsamples for s in shards)
    info = {**header, "samples": samples, "skipped": len(errors)}
    ShardIndex(shards, root=str(out_dir), name=name, info=info).write(out_dir / "index.json")
    journal.path.unlink()
    result.samples, result.skipped, result.shards = samples, len(errors), len(shards)
    result.shard_bytes = sum(s.filesize for s in shards)
    result.errors = errors


def merge_parts(
    dst: str | os.PathLike,
    parts: Sequence[str | os.PathLike] | None = None,
    *,
    verify: bool = False,
) -> ShardIndex:
    """Join the indexes of ``part=(i, n)`` runs into ``dst/index.json`` and their skipped files
    into ``dst/errors.jsonl``, both written atomically.

    Args:
        dst: the folder the merged index goes to.
        parts: part index files or folders; default ``dst/part-*-of-*/``.
        verify: check every shard's size and sha256 against its part index first.

    Raises:
        ValueError: a part missing, repeated, unfinished, or from other input/settings.
    """
    dst = Path(dst)
    if parts is None:
        folders = sorted(p for p in dst.glob("part-*-of-*") if p.is_dir())
        if not folders:
            raise FileNotFoundError(f"no part-*-of-* folders in {dst}")
        parts = folders
    indexes = []
    for part in parts:
        path = Path(part)
        folder = path if path.is_dir() else path.parent
        if not (folder / "index.json").exists() and (folder / JOURNAL).exists():
            raise ValueError(f"{folder}: this part has not finished (rerun its preprocess)")
        index = ShardIndex.load(path)
        check_shards(index, deep=verify)
        indexes.append(index)
    merged = merge_indexes(indexes, dst)
    ordered = sorted(indexes, key=lambda index: index.info["parts"][0][0])
    errors = b"".join(
        Path(index.root, "errors.jsonl").read_bytes()
        for index in ordered
        if Path(index.root, "errors.jsonl").exists()
    )
    write_atomic(dst / "errors.jsonl", errors)
    merged.write(dst / "index.json")
    return merged
