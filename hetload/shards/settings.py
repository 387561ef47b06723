"""Settings of ``preprocess``: input listing, size and part parsing, transforms and casts."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from hetload.guards import read_regular
from hetload.io.formats import find_mesh_files, is_hetload_file
from hetload.shards.format import check_field_name

__all__ = [
    "build_transform",
    "cast",
    "check_casts",
    "find_inputs",
    "list_inputs",
    "load_transform_specs",
    "parse_part",
    "parse_size",
]

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
        ValueError: a path listed twice, hetload's own index / journal listed as an input, or
            a folder under ``src`` that cannot be listed (permissions).
    """
    src = Path(src)
    unreadable: list[str] = []
    if src.is_dir():
        found = find_mesh_files(src, extensions)
        if found.unlisted:
            # its files would be missing from the shards without a word (a loop is not: the
            # files it links to are listed where they are)
            folder, why = found.unlisted[0]
            more = f" (and {len(found.unlisted) - 1} more)" if len(found.unlisted) > 1 else ""
            raise ValueError(f"{folder}: cannot list this input folder ({why}){more}")
        pairs = [(path.relative_to(src).as_posix(), path) for path in found.files]
        unreadable = [path.relative_to(src).as_posix() for path in found.unreadable]
    elif src.is_file():
        pairs = []
        for line in read_regular(src).decode("utf-8").splitlines():
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
    """The transform specs of ``--transform``: a path to a YAML file or YAML text inline
    (``"[Center, {SamplePoints: {n: 1024}}]"``), holding a list (or a mapping with one under
    ``transforms``), each item a name or ``{name: {arg: value}}``; or the list itself."""
    if config is None:
        return None
    if isinstance(config, (str, os.PathLike)):
        import yaml

        text, where = _yaml_source(config)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{where}: not valid YAML ({exc})") from None
        if isinstance(data, Mapping):
            data = data.get("transforms")
        if isinstance(data, str) and where == "--transform":
            data = [data]  # one bare name: "--transform Center"
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected a list of transforms (or 'transforms: [...]')")
        return data
    return list(config)


def _yaml_source(config: str | os.PathLike) -> tuple[str, str]:
    """``(YAML text, where it came from)``: a file when ``config`` names one, else the text."""
    path = Path(config)
    text = str(config)
    looks_inline = isinstance(config, str) and (
        "\n" in text or text.lstrip().startswith(("[", "{", "-"))
    )
    if not looks_inline:
        try:
            if path.exists():  # a FIFO or a folder is refused, never opened (it would block)
                return read_regular(path).decode("utf-8"), str(path)
        except OSError:
            pass
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            raise ValueError(f"--transform {path}: no such file")
    return text, "--transform"


def build_transform(specs: list[Any] | None) -> Callable[[dict], dict] | None:
    if not specs:
        return None
    from hetload import transforms

    return transforms.build(specs)


def check_casts(casts: Mapping[str, str] | None) -> dict[str, str]:
    out = {}
    for name, dtype in (casts or {}).items():
        try:
            parsed = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"--cast {name}={dtype}: not a numpy dtype") from None
        if parsed.kind not in "biuf":
            raise ValueError(f"--cast {name}={dtype}: only numeric dtypes can be cast to")
        try:  # refused before any file is read, not once per file
            check_field_name(name)
        except ValueError as exc:
            raise ValueError(f"--cast {name}={dtype}: {exc}") from None
        out[str(name)] = parsed.name
    return dict(sorted(out.items()))


def cast(sample: dict[str, Any], casts: Mapping[str, str]) -> dict[str, Any]:
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
