"""``preprocess``: mesh files -> WebDataset shards + ``index.json``, parallel and resumable.

The run is a pure function of (sorted input list, settings):

1. the input files are listed and sorted by relative path; sample keys are positions in that
   global list (``000000042``), so keys are the same whatever the workers or parts;
2. a process pool reads, transforms and encodes files; results are consumed strictly in input
   order (a bounded window of futures), never in completion order;
3. shards are cut by :class:`~hetload.shards.writer.ShardSequence` from that ordered stream, each
   written under ``.partial`` and renamed when complete;
4. after each rename, one fsynced line in ``.hetload-journal.jsonl`` records the shard, the input
   position reached and the files skipped. A restart (after ``kill -9`` included) resumes from the
   last journaled position and, the writer being deterministic, produces the same bytes;
5. at the end ``index.json`` and ``errors.jsonl`` are written (atomically) and the journal removed.

``part=(i, n)`` processes the ``i``-th of ``n`` contiguous slices of the list into
``DST/part-000i-of-000n/``; :func:`~hetload.shards.index.merge_indexes` joins the parts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import multiprocessing
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import numpy as np

from hetload.errors import ErrorPolicy, OnError
from hetload.io.formats import find_mesh_files, is_hetload_file
from hetload.shards.format import EncodedSample, encode_sample
from hetload.shards.index import ShardEntry, ShardIndex, check_shards, merge_indexes, write_atomic
from hetload.shards.journal import Journal
from hetload.shards.writer import ShardSequence

__all__ = [
    "PreprocessResult",
    "find_inputs",
    "list_inputs",
    "load_transform_specs",
    "merge_parts",
    "parse_part",
    "parse_size",
    "preprocess",
]

JOURNAL = ".hetload-journal.jsonl"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)b?|b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str | int) -> int:
    """Bytes from ``"256MB"``, ``"1.5G"``, ``"512KiB"`` or a plain number (SI: MB = 10**6)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"cannot read a size from {text!r} (try 256MB, 1GB, 512KiB)")
    number, prefix, binary = match.group(1), (match.group(2) or "").lower(), match.group(3)
    scale = 1024 ** ("kmgt".index(prefix) + 1) if binary else _UNITS[prefix]
    value = int(float(number) * scale)
    if value <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return value


def parse_part(text: str | tuple[int, int]) -> tuple[int, int]:
    """``(i, n)`` from ``"i/n"`` with ``0 <= i < n`` (0-based, as SLURM array / k8s indexes)."""
    if isinstance(text, tuple):
        i, n = text
    else:
        match = re.match(r"^\s*(\d+)\s*/\s*(\d+)\s*$", str(text))
        if not match:
            raise ValueError(f"--part wants i/n (e.g. 0/4), got {text!r}")
        i, n = int(match.group(1)), int(match.group(2))
    if not 0 <= i < n:
        raise ValueError(f"--part {i}/{n}: need 0 <= i < n (parts are numbered from 0)")
    return i, n


def list_inputs(
    src: str | os.PathLike, extensions: Sequence[str] | str | None = None
) -> list[tuple[str, Path]]:
    """``(relative path, path)`` of every input, sorted by relative path (see
    :func:`find_inputs`)."""
    return find_inputs(src, extensions)[0]


def find_inputs(
    src: str | os.PathLike, extensions: Sequence[str] | str | None = None
) -> tuple[list[tuple[str, Path]], list[str]]:
    """``(inputs, unreadable)``: ``(relative path, path)`` of every input, sorted by relative
    path, and the relative paths of the files under a folder ``src`` that no reader handles.

    ``src`` is a folder (every file of a suffix :func:`hetload.io.load` reads, any case, or of
    ``extensions``; hidden entries left out) or a text file listing one path per line
    (relative to the list's folder; blank lines and ``#`` comments ignored).

    Raises:
        ValueError: a path listed twice, or hetload's own index / journal listed as an input.
    """
    src = Path(src)
    unreadable: list[str] = []
    if src.is_dir():
        found = find_mesh_files(src, extensions)
        pairs = [(path.relative_to(src).as_posix(), path) for path in found.files]
        unreadable = [path.relative_to(src).as_posix() for path in found.unreadable]
    elif src.is_file():
        pairs = []
        for line in src.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                path = Path(line) if Path(line).is_absolute() else src.parent / line
                if is_hetload_file(path):
                    raise ValueError(f"{src}: {line} is a file hetload writes, not an input")
                pairs.append((line, path))
    else:
        raise FileNotFoundError(f"no input folder or file list at {src}")
    pairs.sort(key=lambda pair: pair[0])
    for (a, _), (b, _) in pairwise(pairs):
        if a == b:
            raise ValueError(f"{src}: {a} is listed twice")
    return pairs, unreadable


def load_transform_specs(config: str | os.PathLike | Sequence[Any] | None) -> list[Any] | None:
    """The transform specs of ``--transform CONFIG``: a YAML list (or a mapping holding one
    under ``transforms``), each item a name or ``{name: {arg: value}}``."""
    if config is None:
        return None
    if isinstance(config, (str, os.PathLike)):
        import yaml

        path = Path(config)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        if isinstance(data, Mapping):
            data = data.get("transforms")
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of transforms (or 'transforms: [...]')")
        return data
    return list(config)


def _build_transform(specs: list[Any] | None) -> Callable[[dict], dict] | None:
    if not specs:
        return None
    from hetload import transforms

    return transforms.build(specs)


def _check_casts(casts: Mapping[str, str] | None) -> dict[str, str]:
    out = {}
    for name, dtype in (casts or {}).items():
        try:
            parsed = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"--cast {name}={dtype}: not a numpy dtype") from None
        if parsed.kind not in "biuf":
            raise ValueError(f"--cast {name}={dtype}: only numeric dtypes can be cast to")
        out[str(name)] = parsed.name
    return dict(sorted(out.items()))


def _cast(sample: dict[str, Any], casts: Mapping[str, str]) -> dict[str, Any]:
    for name, dtype in casts.items():
        value = sample.get(name)
        if not isinstance(value, np.ndarray) or value.dtype == dtype:
            continue
        target = np.dtype(dtype)
        if target.kind in "iu":
            if value.dtype.kind not in "biu":
                raise ValueError(f"field {name!r}: cannot cast {value.dtype} to {target}")
            if value.size:
                info = np.iinfo(target)
                low, high = int(value.min()), int(value.max())
                if low < info.min or high > info.max:
                    raise ValueError(
                        f"field {name!r}: values in [{low}, {high}] do not fit {target}"
                    )
        sample[name] = value.astype(target)
    return sample


@dataclass(frozen=True)
class _Setup:
    transform_specs: list[Any] | None
    casts: dict[str, str]
    seed: int


_WORKER: dict[str, Any] = {}


def _init_worker(setup: _Setup) -> None:
    from hetload import io

    _WORKER["load"] = io.load
    _WORKER["transform"] = _build_transform(setup.transform_specs)
    _WORKER["casts"] = setup.casts
    _WORKER["seed"] = setup.seed


def _work(task: tuple[int, str, str]) -> tuple[int, int, EncodedSample | None, Exception | None]:
    """Read, transform and encode one file: ``(position, bytes read, sample, error)``; sample
    and error both ``None`` when the transforms dropped the sample."""
    from hetload.io import ReadError
    from hetload.transforms import sample_rng

    position, rel, path = task
    nbytes = 0
    try:
        nbytes = os.path.getsize(path)
        sample = _WORKER["load"](path)
        counts = {k: v.shape[0] for k, v in sample.items() if isinstance(v, np.ndarray) and v.ndim}
        transform = _WORKER["transform"]
        if transform is not None:
            # a generator per input position: random transforms give the same bytes whatever
            # the workers, parts or restarts
            sample = transform(sample, sample_rng(_WORKER["seed"], 0, position))
            if sample is None:
                return position, nbytes, None, None
        sample = _cast(dict(sample), _WORKER["casts"])
        return (
            position,
            nbytes,
            encode_sample(_key(position), sample, source=rel, counts=counts),
            None,
        )
    except Exception as exc:
        if not isinstance(exc, ReadError):
            exc = ReadError(path, f"{type(exc).__name__}: {exc}")
        return position, nbytes, None, exc


def _key(position: int) -> str:
    return f"{position:09d}"


def _ordered(
    tasks: Sequence[tuple[int, str, str]], workers: int, setup: _Setup
) -> Iterator[tuple[int, int, EncodedSample | None, Exception | None]]:
    """Results in task order; at most ``4 * workers`` tasks in flight (bounded memory)."""
    if workers <= 1:
        _init_worker(setup)
        for task in tasks:
            yield _work(task)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(setup,)
    )
    try:
        pending = iter(tasks)
        window = deque(pool.submit(_work, task) for task in islice(pending, 4 * workers))
        while window:
            result = window.popleft().result()
            task = next(pending, None)
            if task is not None:
                window.append(pool.submit(_work, task))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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


def preprocess(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    workers: int = 1,
    shard_size: int | str = "256MB",
    max_count: int | None = None,
    transform: str | os.PathLike | Sequence[Any] | None = None,
    casts: Mapping[str, str] | None = None,
    on_error: OnError | ErrorPolicy = "raise",
    part: tuple[int, int] | str = (0, 1),
    seed: int = 0,
    progress: bool = True,
    extensions: Sequence[str] | str | None = None,
) -> PreprocessResult:
    """Preprocess every mesh file under ``src`` into shards in ``dst`` (see the module
    docstring).

    Args:
        src: a folder (searched recursively) or a text file listing input paths.
        dst: the output folder; with ``part=(i, n)``, ``n > 1``, the part goes to
            ``dst/part-{i:04d}-of-{n:04d}/``.
        workers: reader processes (1 reads in this process).
        shard_size: byte budget of one shard (``"256MB"``, ``"1GiB"`` or an int).
        max_count: sample budget of one shard (``None``: bytes only).
        transform: a YAML config path or a list of :func:`hetload.transforms.build` specs
            (``"Center"``, ``{"SamplePoints": {"n": 4096}}``), applied after reading; random
            ones draw from ``hetload.transforms.sample_rng(seed, 0, position)``.
        casts: ``{field: dtype}`` casts after the transforms (integer casts are range-checked).
        on_error: what a file that cannot be read does; skipped files go to ``errors.jsonl``.
        part: ``(i, n)`` or ``"i/n"``: process the ``i``-th of ``n`` contiguous slices.
        seed: the seed of random transforms.
        progress: show a tqdm bar (files/s, MB/s).
        extensions: the suffixes read from a folder ``src`` (default: every format
            :func:`hetload.io.load` reads); the files no reader handles are listed in the
            result's ``unreadable``.

    Returns:
        A :class:`PreprocessResult`. Running again on a finished ``dst`` does nothing; running
        again on an interrupted one finishes it, with the same bytes an uninterrupted run writes.

    Raises:
        hetload.io.ReadError: the first unreadable file under ``on_error="raise"`` (completed
            shards are kept; rerun with the same arguments to resume).
        ValueError: settings that contradict an unfinished run in ``dst``, or a damaged ``dst``.
    """
    i, n = parse_part(part)
    size_budget = parse_size(shard_size)
    if max_count is not None and max_count <= 0:
        raise ValueError(f"max_count must be positive, got {max_count}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    policy = ErrorPolicy(on_error)
    specs = load_transform_specs(transform)
    setup = _Setup(specs, _check_casts(casts), int(seed))
    _build_transform(specs)  # fail on a bad config here, not once per worker

    inputs, unreadable = find_inputs(src, extensions)
    total = len(inputs)
    lo, hi = i * total // n, (i + 1) * total // n
    out_dir = Path(dst) if n == 1 else Path(dst) / f"part-{i:04d}-of-{n:04d}"
    out_dir.mkdir(parents=True, exist_ok=True)
    header: dict[str, Any] = {
        "files": total,
        "files_sha256": hashlib.sha256("\n".join(rel for rel, _ in inputs).encode()).hexdigest(),
        "parts": [[i, n]],
        "settings": {
            "casts": setup.casts,
            "max_count": max_count,
            "seed": setup.seed,
            "shard_size": size_budget,
            "transforms": specs,
        },
    }
    header = json.loads(json.dumps(header))  # the form it has once read back from JSON
    with _exclusive(out_dir), _full_disk_hint(out_dir):
        finished = _finished(out_dir, header)
        if finished is not None:
            finished.unreadable = unreadable
            return finished
        if not (out_dir / JOURNAL).exists():
            _refuse_stray_shards(out_dir)
        journal = Journal(out_dir / JOURNAL, header)
        done, shard_count = _resume_point(out_dir, journal, lo)
        _remove_leftovers(out_dir, shard_count)
        sequence = ShardSequence(
            out_dir, shard_size=size_budget, max_count=max_count, first_shard=shard_count
        )
        tasks = [(pos, inputs[pos][0], str(inputs[pos][1])) for pos in range(done, hi)]
        result = PreprocessResult(out_dir, hi - lo, 0, 0, 0, 0, resumed_at=done - lo)
        result.unreadable = unreadable
        started = time.perf_counter()
        skipped: list[dict[str, str]] = []
        bar = _progress_bar(hi - lo, done - lo, progress, out_dir.name)
        results = _ordered(tasks, workers, setup)
        try:
            for position, nbytes, sample, error in results:
                result.read_files += 1
                result.read_bytes += nbytes
                if error is not None:
                    policy.handle(inputs[position][0], error)
                    skipped.append(policy.last.as_dict())
                elif sample is None:
                    skipped.append(
                        {"reason": "dropped by the transforms", "source": inputs[position][0]}
                    )
                else:
                    closed = sequence.add(sample)
                    if closed is not None:
                        journal.append(
                            {"done": position, "errors": skipped, "shard": closed.to_json()}
                        )
                        skipped = []
                _tick(bar, result, started)
        except BaseException:
            sequence.abort()
            raise
        finally:
            results.close()
            if bar is not None:
                bar.close()
        last = sequence.close()
        if not journal.records or journal.records[-1]["done"] < hi:
            journal.append(
                {"done": hi, "errors": skipped, "shard": None if last is None else last.to_json()}
            )
        result.seconds = time.perf_counter() - started
        _finish(out_dir, journal, header, result, Path(src).stem)
    return result


def _progress_bar(total: int, initial: int, enabled: bool, name: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="file", desc=f"preprocess {name}", smoothing=0.1)


def _tick(bar, result: PreprocessResult, started: float) -> None:
    if bar is None:
        return
    bar.update(1)
    elapsed = time.perf_counter() - started
    if elapsed > 0 and result.read_files % 16 == 1:
        bar.set_postfix_str(f"{result.read_bytes / 1e6 / elapsed:.1f} MB/s", refresh=False)


@contextlib.contextmanager
def _full_disk_hint(out_dir: Path) -> Iterator[None]:
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


class _exclusive:
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


def _finished(out_dir: Path, header: dict[str, Any]) -> PreprocessResult | None:
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
        shard_bytes=sum(s.filesize for s in index.shards),
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


def _refuse_stray_shards(out_dir: Path) -> None:
    """Before a run creates its journal: shards there are another run's, never to be deleted.
    (Once the journal exists, even holding only its header after a kill between the first
    shard's rename and its journal line, shards past the journal are this run's leftovers.)"""
    stray = sorted(out_dir.glob("shard-*.tar"))
    if stray:
        raise ValueError(
            f"{out_dir} holds {stray[0].name} but no journal of the run that wrote it; "
            "use an empty output folder"
        )


def _resume_point(out_dir: Path, journal: Journal, lo: int) -> tuple[int, int]:
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


def _remove_leftovers(out_dir: Path, shard_count: int) -> None:
    """Partial files, and shards past the journal (renamed just before a kill), are redone."""
    for path in out_dir.glob("*.partial"):
        path.unlink()
    for path in out_dir.glob("shard-*.tar"):
        number = path.name[len("shard-") : -len(".tar")]
        if number.isdigit() and int(number) >= shard_count:
            path.unlink()


def _finish(
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
