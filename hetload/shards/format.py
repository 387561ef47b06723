"""What one sample looks like inside a shard: member names, ``.npy`` bytes, ``.json`` metadata.

A sample with key ``000000042`` is stored as consecutive tar members, sorted by name::

    000000042.faces.npy   one .npy per array field (never pickled)
    000000042.json        {"arrays": ["faces", "verts"], "counts": {"faces": 50, "verts": 100},
                           "extra": {"label": 3}, "source": "chairs/a.obj"}
    000000042.verts.npy

which is the WebDataset convention (key = the name up to the first dot), so any WebDataset reader
sees a sample ``{"__key__": "000000042", "faces.npy": ..., "json": ..., "verts.npy": ...}``.
``arrays`` names the ``.npy`` members the sample must have; ``counts`` are the rows of each array
as the reader returned them (before transforms); ``extra`` holds the sample's non-array values
(numbers, strings), returned with the arrays on read.
"""

from __future__ import annotations

import ast
import io
import json
import math
import numbers
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hetload.guards import shown
from hetload.keys import sample_key

__all__ = [
    "BLOCK",
    "EncodedSample",
    "ShardError",
    "check_field_name",
    "decode_npy",
    "decode_sample",
    "encode_npy",
    "encode_sample",
    "member_name",
    "read_npy_header",
    "tar_size",
]

#: tar block size: every header and every member's padded data is a multiple of it
BLOCK = 512
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_NPY_MAGIC = b"\x93NUMPY"
#: ast.literal_eval, one thread at a time
_AST_LOCK = threading.Lock()
#: " at 0x7f..." in a repr
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# the header numpy writes for plain dtypes; anything else goes through ast.literal_eval
_NPY_HEADER = re.compile(
    r"^\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': (True|False), "
    r"'shape': \(((?:\d+, ?)*\d*)\), \}\s*$"
)


class ShardError(ValueError):
    """A shard, its index or one of its members is unreadable or inconsistent.

    The message names the shard and the member; ``source`` is ``"<shard>:<member>"`` so an
    :class:`~hetload.ErrorPolicy` report points at the exact place.
    """

    def __init__(self, shard: str, member: str | None, reason: str) -> None:
        self.shard = str(shard)
        self.member = member
        self.source = self.shard if member is None else f"{self.shard}:{member}"
        where = f"shard {self.shard}" + ("" if member is None else f", member {member}")
        super().__init__(f"{where}: {reason}")


def check_field_name(name: str) -> str:
    """Field names become tar member suffixes: letters, digits and ``_`` only (no dots), not
    starting with ``__`` (WebDataset's own names, ``__key__``, ``__url__``: its readers drop
    such members, so the field would not come back)."""
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise ValueError(
            f"field name {shown(name)} cannot be stored in a shard: use 1-64 letters, digits "
            "or '_' (a dot would split the WebDataset key)"
        )
    if name.startswith("__"):
        raise ValueError(
            f"field name {name!r} cannot be stored in a shard: names starting with '__' are "
            "WebDataset's own (__key__, __url__) and its readers drop them"
        )
    return name


def member_name(key: str, suffix: str) -> str:
    """``"<key>.<suffix>"``: ``suffix`` is ``"<field>.npy"`` or ``"json"``."""
    return f"{key}.{suffix}"


def tar_size(nbytes: int) -> int:
    """Bytes one member of ``nbytes`` data takes in a tar: header + data padded to a block."""
    return BLOCK + -(-nbytes // BLOCK) * BLOCK


def encode_npy(array: np.ndarray) -> bytes:
    """``.npy`` bytes of ``array`` (C order, no pickle); raises ``ValueError`` for object dtypes."""
    if not array.flags.c_contiguous:
        array = array.copy(order="C")  # not ascontiguousarray: it turns 0-d arrays into 1-d
    if array.dtype.hasobject:
        raise ValueError(f"dtype {array.dtype} holds Python objects and cannot be stored as .npy")
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def read_npy_header(
    data: bytes | bytearray | memoryview, shard: str, member: str
) -> tuple[np.dtype, bool, tuple[int, ...], int]:
    """The ``.npy`` header at the start of ``data``: ``(dtype, fortran_order, shape, data
    offset)``. ``data`` may stop anywhere after the header (the array's bytes are not needed).

    Raises:
        ShardError: naming ``shard`` and ``member`` for a bad magic, version, header, dtype
            (``object`` dtypes are refused: they would need pickle) or shape.
    """
    view = memoryview(data)
    if len(view) < 10 or view[:6] != _NPY_MAGIC:
        raise ShardError(shard, member, "not a .npy member (bad magic bytes)")
    major = view[6]
    if major == 1:
        header_len, start = int.from_bytes(view[8:10], "little"), 10
    elif major in (2, 3):
        header_len, start = int.from_bytes(view[8:12], "little"), 12
    else:
        raise ShardError(shard, member, f"unsupported .npy format version {major}")
    end = start + header_len
    if end > len(view):
        raise ShardError(shard, member, "truncated .npy header")
    try:
        text = bytes(view[start:end]).decode("latin1")
        match = _NPY_HEADER.match(text)
        if match:
            descr, fortran = match.group(1), match.group(2) == "True"
            shape = tuple(int(n) for n in match.group(3).split(",") if n.strip())
        else:
            with _AST_LOCK:  # CPython 3.11's AST state is shared by threads (cpython#106905)
                header = ast.literal_eval(text)
            descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
        dtype = np.dtype(np.lib.format.descr_to_dtype(descr))
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as exc:
        # (without object addresses: the same damage gives the same report text)
        reason = _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")
        raise ShardError(shard, member, f"bad .npy header ({reason})") from None
    if dtype.hasobject:
        raise ShardError(shard, member, f"dtype {dtype} would need pickle, which is refused")
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ShardError(shard, member, f"bad .npy shape {shape!r}")
    if not isinstance(fortran, bool):
        raise ShardError(shard, member, f"bad .npy fortran_order {fortran!r}")
    return dtype, fortran, shape, end


def decode_npy(data: bytes | bytearray | memoryview, shard: str, member: str) -> np.ndarray:
    """The array in ``.npy`` bytes, without copying them (writable when ``data`` is).

    Raises:
        ShardError: naming ``shard`` and ``member`` for a bad magic, header, dtype or a size that
            does not match the header (a truncated or corrupted member).
    """
    view = memoryview(data)
    dtype, fortran, shape, end = read_npy_header(view, shard, member)
    count = math.prod(shape)
    if len(view) - end != count * dtype.itemsize:
        raise ShardError(
            shard,
            member,
            f"holds {len(view) - end} data bytes, its header says {count * dtype.itemsize} "
            f"({dtype} {shape}): truncated or corrupted",
        )
    array = np.frombuffer(view, dtype=dtype, count=count, offset=end)
    if fortran:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


@dataclass(frozen=True)
class EncodedSample:
    """One sample as tar members, ready for a :class:`~hetload.shards.writer.ShardWriter`.

    ``members`` are ``(suffix, bytes)`` sorted by suffix; ``rows`` the first-dimension size of
    each stored array (1 for a 0-d array).
    """

    key: str
    members: tuple[tuple[str, bytes], ...]
    rows: Mapping[str, int]

    @property
    def tar_bytes(self) -> int:
        return sum(tar_size(len(data)) for _, data in self.members)


def _jsonable(name: str, value: Any) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(name, v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(name, v) for k, v in value.items()}
    raise ValueError(
        f"field {name!r} holds a {type(value).__name__}, which a shard cannot store "
        "(arrays, numbers, strings, lists and str-keyed dicts of those are stored)"
    )


def encode_sample(
    key: str,
    sample: Mapping[str, Any],
    *,
    source: str,
    counts: Mapping[str, int],
    dataset_key: str | None = None,
) -> EncodedSample:
    """Encode ``sample`` (field -> array, or a JSON-able value) as the members of ``key``.

    Args:
        key: the sample's key; no dots or slashes.
        sample: arrays become ``<field>.npy`` members; numbers, strings and the like go to the
            ``.json`` member's ``extra`` (a numpy scalar is stored as a 0-d array).
        source: where the sample came from (a path relative to the preprocessed folder).
        counts: rows of each array as read, before transforms.
        dataset_key: the sample's ``"key"`` where it is not ``sample_key(source)``: two inputs
            sharing a name in two formats (``chair/a.obj`` beside ``chair/a.ply``) keep their
            whole relative paths, as in MeshFolder (:func:`hetload.keys.sample_keys`).

    Raises:
        ValueError: naming the field for a name or value a shard cannot hold.
    """
    if not re.match(r"^[A-Za-z0-9_-]+$", key):
        raise ValueError(f"sample key {key!r} must be letters, digits, '_' or '-'")
    members: list[tuple[str, bytes]] = []
    rows: dict[str, int] = {}
    extra: dict[str, Any] = {}
    for name in sorted(sample):
        check_field_name(name)
        value = sample[name]
        if hasattr(value, "__array__") and not isinstance(value, np.ndarray):
            value = np.asarray(value)  # torch tensors, numpy scalars
        if isinstance(value, np.ndarray):
            try:
                members.append((f"{name}.npy", encode_npy(value)))
            except ValueError as exc:
                raise ValueError(f"field {name!r}: {exc}") from None
            rows[name] = int(value.shape[0]) if value.ndim else 1
        else:
            extra[name] = _jsonable(name, value)
    meta: dict[str, Any] = {
        "arrays": sorted(rows),
        "counts": {k: int(v) for k, v in sorted(counts.items())},
        "source": source,
    }
    if extra:
        meta["extra"] = extra
    if dataset_key is not None and dataset_key != sample_key(source):
        meta["key"] = dataset_key
    members.append(("json", json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()))
    members.sort(key=lambda member: member[0])
    return EncodedSample(key, tuple(members), rows)


def decode_sample(
    members: Mapping[str, bytes | bytearray | memoryview],
    shard: str,
    key: str,
    fields: list[str] | None = None,
) -> dict[str, Any]:
    """The sample dict back from its members (``suffix -> bytes``, e.g. ``"verts.npy"``).

    Arrays come back as numpy arrays sharing the members' memory, ``extra`` values as they were
    written. ``fields`` selects fields; ``None`` returns every field the ``.json`` lists. Like a
    MeshFolder sample, it always carries ``"key"`` (the source path without its extension) and
    ``"label"`` where one was stored.

    Raises:
        ShardError: naming the shard and member for a missing or corrupt member.
    """
    meta = decode_meta(members.get("json"), shard, key)
    extra = meta.get("extra", {})
    wanted = sorted(set(meta["arrays"]) | set(extra)) if fields is None else fields
    sample: dict[str, Any] = {}
    for name in wanted:
        suffix = f"{name}.npy"
        if suffix in members:
            sample[name] = decode_npy(members[suffix], shard, member_name(key, suffix))
        elif name in extra:
            sample[name] = extra[name]
        else:
            raise ShardError(shard, member_name(key, suffix), "missing from the sample")
    if "label" in extra:
        sample.setdefault("label", extra["label"])
    key_of = stored_key(meta)
    if key_of is not None:
        sample.setdefault("key", key_of)
    return sample


def stored_key(meta: Mapping[str, Any]) -> str | None:
    """A sample's ``"key"`` from its ``.json``: the one written where it differs from its
    source path's (:func:`encode_sample`'s ``dataset_key``), else its source path's."""
    key = meta.get("key")
    if isinstance(key, str):
        return key
    source = meta.get("source")
    return sample_key(source) if isinstance(source, str) else None


def decode_meta(data: bytes | bytearray | memoryview | None, shard: str, key: str) -> dict:
    """The parsed ``.json`` member of sample ``key``; raises :class:`ShardError` when bad."""
    member = member_name(key, "json")
    if data is None:
        raise ShardError(shard, member, "missing from the sample")
    try:
        meta = json.loads(bytes(data))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(shard, member, f"not valid JSON ({exc})") from None
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("arrays"), list)
        or not isinstance(meta.get("extra", {}), dict)
    ):
        raise ShardError(shard, member, "metadata without an 'arrays' list")
    return meta
