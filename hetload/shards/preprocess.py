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

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hetload.data.labels import LabelSpec
from hetload.errors import ErrorPolicy, OnError
from hetload.guards import MAX_WORKERS, check_seed
from hetload.keys import sample_keys
from hetload.shards.journal import Journal
from hetload.shards.pool import Setup, ordered
from hetload.shards.preprocess_layout import layout_inputs
from hetload.shards.resume import (
    JOURNAL,
    PreprocessResult,
    exclusive,
    finish,
    finished,
    full_disk_hint,
    merge_parts,
    refuse_stray_shards,
    remove_leftovers,
    resume_point,
)
from hetload.shards.settings import (
    build_transform,
    check_casts,
    find_inputs,
    list_inputs,
    load_transform_specs,
    parse_part,
    parse_size,
)
from hetload.shards.targets import resolve_targets
from hetload.shards.writer import ShardSequence

__all__ = [
    "JOURNAL",
    "PreprocessResult",
    "find_inputs",
    "list_inputs",
    "load_transform_specs",
    "merge_parts",
    "parse_part",
    "parse_size",
    "preprocess",
]


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
    labels: LabelSpec = None,
    classes: Sequence[str] | None = None,
    manifest: str | os.PathLike | None = None,
    extensions: Sequence[str] | str | None = None,
    layout: str | None = None,
    layout_options: Mapping[str, Any] | None = None,
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
        labels: ``"folder"``: store ``label``, the index of each file's top folder under
            ``src`` in ``classes`` (default: every folder under ``src``, sorted, empty ones
            included), as ``MeshFolder(labels="folder")`` numbers them; or a mapping / callable
            of keys to labels, as ``MeshFolder`` takes (:mod:`hetload.data.labels`).
        classes: explicit class names for ``labels`` / a manifest's string labels.
        manifest: a ``.csv`` / ``.jsonl`` file mapping each input (``path`` column, relative to
            ``src``, with or without extension) to per-sample values (``label``: an int or a
            class name; other columns: numbers or strings), stored with the sample.
            :func:`hetload.data.labels.read_manifest` describes the format.
        extensions: the suffixes read from a folder ``src`` (default: every format
            :func:`hetload.io.load` reads); the files no reader handles are listed in the
            result's ``unreadable``.
        layout: read ``src`` as an on-disk layout (:mod:`hetload.shards.preprocess_layout`):
            ``"modelnet"``, ``"shapenet"``, ``"scannet"`` or ``"semantic-kitti"``; samples,
            keys, class labels and per-point labels (``labels``, ``semantic``, ``instance``)
            are those the layout's dataset class reads. Not with ``labels``, ``manifest``,
            ``classes`` or ``extensions`` (the layout decides them).
        layout_options: the layout class's options: ``split`` (ModelNet), ``synsets``,
            ``model_file`` (ShapeNetCore), ``scenes``, ``label_map`` (ScanNetScenes),
            ``sequences``, ``labels``, ``learning_map``, ``allow_nonfinite`` (SemanticKITTI).

    Shards keep each sample's source path (its ``key`` on read is that path without the
    extension) and the values above; ``index.json`` records ``classes`` under ``settings``.

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
    if not 1 <= workers <= MAX_WORKERS:  # a typo of 10**8 would try to start 10**8 processes
        raise ValueError(f"workers must be in [1, {MAX_WORKERS}], got {workers}")
    policy = ErrorPolicy(on_error)
    specs = load_transform_specs(transform)
    setup = Setup(specs, check_casts(casts), check_seed(seed, "--seed"))
    build_transform(specs)  # fail on a bad config here, not once per worker

    listed: list[dict[str, str]] = []  # what a layout refused while listing its samples
    if layout is not None:
        given = {"labels": labels, "classes": classes, "manifest": manifest, "ext": extensions}
        clash = [name for name, value in given.items() if value is not None]
        if clash:
            raise ValueError(f"--layout {layout} decides the inputs and labels: drop --{clash[0]}")
        found = layout_inputs(src, layout, layout_options, policy.mode)
        inputs, unreadable, targets = found.inputs, [], found.targets
        setup = Setup(setup.transform_specs, setup.casts, setup.seed, reader=found.reader)
        listed = found.skipped
    else:
        if layout_options:
            raise ValueError("layout_options need a layout")
        inputs, unreadable = find_inputs(src, extensions)
        targets = resolve_targets(src, [rel for rel, _ in inputs], labels, classes, manifest)
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
            **({"targets": targets.settings} if targets.settings else {}),
            **({"layout": found.settings} if layout is not None else {}),
        },
    }
    header = json.loads(json.dumps(header))  # the form it has once read back from JSON
    with exclusive(out_dir), full_disk_hint(out_dir):
        earlier = finished(out_dir, header)
        if earlier is not None:
            earlier.unreadable = unreadable
            return earlier
        if not (out_dir / JOURNAL).exists():
            refuse_stray_shards(out_dir)
        journal = Journal(out_dir / JOURNAL, header)
        done, shard_count = resume_point(out_dir, journal, lo)
        remove_leftovers(out_dir, shard_count)
        sequence = ShardSequence(
            out_dir, shard_size=size_budget, max_count=max_count, first_shard=shard_count
        )
        values = targets.values or [{}] * total
        # two inputs sharing a name in two formats keep their whole paths as keys (MeshFolder's)
        keys = sample_keys([rel for rel, _ in inputs]) if layout is None else None
        tasks = [
            (
                pos,
                inputs[pos][0],
                str(inputs[pos][1]),
                values[pos],
                None if keys is None else keys[pos],
            )
            for pos in range(done, hi)
        ]
        result = PreprocessResult(out_dir, hi - lo, 0, 0, 0, 0, resumed_at=done - lo)
        result.unreadable = unreadable
        started = time.perf_counter()
        # the layout's refusals are journaled with the first shard of a fresh run
        skipped: list[dict[str, str]] = list(listed) if done == lo else []
        bar = _progress_bar(hi - lo, done - lo, progress, out_dir.name)
        results = ordered(tasks, workers, setup)
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
        finish(out_dir, journal, header, result, Path(src).stem)
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
