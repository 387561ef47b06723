"""PLY (ascii, binary little- and big-endian): every element and property, read with numpy.

Binary elements of fixed-size rows (all scalars, or lists whose count is the same in every row,
e.g. all triangles) are one ``np.frombuffer`` view; rows of varying size (mixed arity) are walked
once to find where each row starts, then gathered. ASCII bodies are parsed one element at a time
in a single ``np.fromstring`` call, with one row per line (what every writer produces), so each
row's token count is checked against the header and an error names the line.

Every declared size is checked against the bytes that remain before anything is allocated.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field

import numpy as np

from hetload.io.options import LoadOptions
from hetload.io.polygons import fan_triangles
from hetload.io.read_error import ReadError, check_finite, check_fits
from hetload.io.text import NotNumbers, parse_lines, parse_numbers, parse_table, tokens_per_line

__all__ = ["PlyHeader", "read_ply", "read_ply_header"]

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_EOL = re.compile(rb"\r\n|\r|\n")
_MAX_HEADER = 1 << 20
FACE_LISTS = ("vertex_indices", "vertex_index")
_UV_NAMES = (("u", "v"), ("s", "t"), ("texture_u", "texture_v"), ("texture_s", "texture_t"))


@dataclass
class Prop:
    """One property: ``dtype`` of the values; ``count_dtype`` is set for a list property."""

    name: str
    dtype: np.dtype
    count_dtype: np.dtype | None = None


@dataclass
class Element:
    name: str
    count: int
    props: list[Prop] = field(default_factory=list)

    @property
    def fixed(self) -> bool:
        return all(p.count_dtype is None for p in self.props)


@dataclass
class PlyHeader:
    """The parsed header: ``fmt`` is ``"ascii"`` or a binary format; ``body`` its byte offset."""

    fmt: str
    elements: list[Element]
    body: int
    lines: int  # header lines, for ascii line numbers

    def count(self, name: str) -> int:
        return sum(e.count for e in self.elements if e.name == name)


def read_ply_header(path: str | os.PathLike, data: bytes) -> PlyHeader:
    """Parse the header at the start of ``data`` (which may be the first bytes of the file)."""
    if not data:
        raise ReadError(path, "the file is empty")
    first = _EOL.search(data, 0, 16)
    if not data.startswith(b"ply") or first is None or first.start() != 3:
        raise ReadError(path, "not a PLY file: it does not start with a 'ply' line")
    eol = first.group()
    end = data.find(b"end_header", 0, _MAX_HEADER)
    if end < 0:
        raise ReadError(path, "no 'end_header' line in the first MiB: not a PLY header")
    body = end + len(b"end_header")
    while data[body : body + 1] in (b" ", b"\t"):
        body += 1
    # a CR-only header may be followed by binary data that starts with a \n byte: consume
    # exactly the header's own line end
    if data[body : body + len(eol)] == eol:
        body += len(eol)
    elif data[body : body + 1] == b"\n":
        body += 1
    elif body < len(data):
        raise ReadError(path, "'end_header' is not followed by a line end")

    lines = _EOL.split(data[:end])
    fmt: str | None = None
    elements: list[Element] = []
    for number, raw in enumerate(lines[1:], start=2):
        words = raw.decode("latin-1").split()
        where = f"header line {number}"
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise ReadError(path, f"unknown format line {' '.join(words)!r}", where)
            fmt = words[1]
        elif words[0] == "element":
            # isdigit() alone takes digits such as '²' that int() refuses
            if len(words) != 3 or not (words[2].isascii() and words[2].isdigit()):
                raise ReadError(path, f"bad element line {' '.join(words)!r}", where)
            elements.append(Element(words[1], int(words[2])))
        elif words[0] == "property":
            if not elements:
                raise ReadError(path, "a property before any element", where)
            prop = _prop(path, words, where)
            if any(p.name == prop.name for p in elements[-1].props):
                raise ReadError(
                    path,
                    f"property {prop.name!r} is declared twice in element {elements[-1].name!r}",
                    where,
                )
            elements[-1].props.append(prop)
        else:
            raise ReadError(path, f"unknown header keyword {words[0]!r}", where)
    if fmt is None:
        raise ReadError(path, "the header has no 'format' line")
    return PlyHeader(fmt, elements, body, len(lines) + 1)


def _prop(path: str | os.PathLike, words: list[str], where: str) -> Prop:
    if len(words) == 5 and words[1] == "list":
        count, item = _TYPES.get(words[2]), _TYPES.get(words[3])
        if count is None or item is None or count[0] == "f":
            raise ReadError(path, f"bad list property {' '.join(words)!r}", where)
        return Prop(words[4], np.dtype(item), np.dtype(count))
    if len(words) != 3 or words[1] not in _TYPES:
        raise ReadError(path, f"bad property line {' '.join(words)!r}", where)
    return Prop(words[2], np.dtype(_TYPES[words[1]]))


# --------------------------------------------------------------------------------------- body
# An element's values: scalar property -> [count] array; list property -> (flat values, sizes).
Values = dict[str, "np.ndarray | tuple[np.ndarray, np.ndarray]"]


def read_ply(path: str | os.PathLike, data: bytes, options: LoadOptions) -> dict[str, np.ndarray]:
    """Parse PLY bytes into a sample (see :func:`hetload.io.load` for the fields)."""
    header = read_ply_header(path, data)
    if header.fmt == "ascii":
        values = _read_ascii(path, data, header)
    else:
        values = _read_binary(path, data, header, _FORMATS[header.fmt])
    return _assemble(path, header, values, options)


def _read_binary(
    path: str | os.PathLike, data: bytes, header: PlyHeader, order: str
) -> list[Values]:
    offset = header.body
    out = []
    for element in header.elements:
        where = f"element {element.name!r} at byte {offset}"
        if not element.props:
            # rows of no bytes: nothing to read, whatever the count (np.frombuffer would take
            # a count past ssize_t)
            out.append({})
            continue
        if element.fixed:
            dtype = np.dtype([(p.name, p.dtype.newbyteorder(order)) for p in element.props])
            need = element.count * dtype.itemsize
            check_fits(path, need, len(data) - offset, f"{element.count} rows", where)
            rows = np.frombuffer(data, dtype=dtype, count=element.count, offset=offset)
            # views into the file's bytes (maybe big-endian); converted once, when assembled
            out.append({p.name: rows[p.name] for p in element.props})
            offset += need
            continue
        values, offset = _binary_lists(path, data, offset, element, order, where)
        out.append(values)
    if offset != len(data) and data[offset:].strip(b"\0\r\n \t"):
        raise ReadError(
            path,
            f"{len(data) - offset} bytes follow the last element: the header does not "
            "describe the whole file",
            f"byte {offset}",
        )
    return out


def _binary_lists(
    path: str | os.PathLike, data: bytes, offset: int, element: Element, order: str, where: str
) -> tuple[Values, int]:
    """An element with list properties: one strided view if every row has the same counts,
    else one pass over the rows to find where each starts."""
    minimum = sum(
        p.count_dtype.itemsize if p.count_dtype else p.dtype.itemsize for p in element.props
    )  # type: ignore[union-attr]
    check_fits(path, element.count * minimum, len(data) - offset, f"{element.count} rows", where)
    if element.count == 0:
        return {p.name: _empty(p) for p in element.props}, offset
    # the first row's counts give a candidate fixed layout
    layout = []
    pos = offset
    for p in element.props:
        if p.count_dtype is None:
            layout.append((p.name, p.dtype.newbyteorder(order)))
            pos += p.dtype.itemsize
            continue
        check_fits(path, pos + p.count_dtype.itemsize, len(data), "a list count", where)
        (n,) = struct.unpack_from(order + p.count_dtype.char, data, pos)
        _check_list_count(path, n, where)
        check_fits(
            path,
            p.count_dtype.itemsize + n * p.dtype.itemsize,
            len(data) - pos,
            f"a list of {n} items",
            where,
        )
        layout.append((p.name + "\0n", p.count_dtype.newbyteorder(order)))
        layout.append((p.name, p.dtype.newbyteorder(order), (n,)))
        pos += p.count_dtype.itemsize + n * p.dtype.itemsize
    dtype = np.dtype(layout)
    need = element.count * dtype.itemsize
    if need <= len(data) - offset:
        rows = np.frombuffer(data, dtype=dtype, count=element.count, offset=offset)
        lists = [p for p in element.props if p.count_dtype is not None]
        if all((rows[p.name + "\0n"] == rows.dtype[p.name].shape[0]).all() for p in lists):
            values: Values = {}
            for p in element.props:
                if p.count_dtype is None:
                    values[p.name] = rows[p.name]
                else:
                    width = rows.dtype[p.name].shape[0]
                    # a read-only broadcast: no [count] array for a size every row shares
                    sizes = np.broadcast_to(np.int64(width), (element.count,))
                    values[p.name] = (rows[p.name], sizes)  # [count, width] view
            return values, offset + need
    return _walk_rows(path, data, offset, element, order)


def _walk_rows(
    path: str | os.PathLike, data: bytes, offset: int, element: Element, order: str
) -> tuple[Values, int]:
    """Rows of varying size (mixed arity): find each row's fields in one pass, then gather."""
    lists = [p for p in element.props if p.count_dtype is not None]
    if len(lists) == 1 and lists[0].count_dtype == np.uint8:
        return _walk_byte_counted(path, data, offset, element, order)
    starts: dict[str, list[int]] = {p.name: [] for p in element.props}
    sizes: dict[str, list[int]] = {p.name: [] for p in element.props if p.count_dtype}
    readers = [
        (
            p.name,
            p.dtype.itemsize,
            struct.Struct(order + p.count_dtype.char) if p.count_dtype else None,
        )
        for p in element.props
    ]
    pos, end = offset, len(data)
    for row in range(element.count):
        for name, itemsize, count in readers:
            if count is None:
                starts[name].append(pos)
                pos += itemsize
                continue
            if pos + count.size > end:
                break
            (n,) = count.unpack_from(data, pos)
            _check_list_count(path, n, f"element {element.name!r} row {row} at byte {pos}")
            pos += count.size
            starts[name].append(pos)
            sizes[name].append(n)
            pos += n * itemsize
        if pos > end:
            raise ReadError(
                path,
                f"row {row} of {element.count} runs past the end of the file: truncated",
                f"element {element.name!r} at byte {min(pos, end)}",
            )
        if len(starts[readers[-1][0]]) != row + 1:
            raise ReadError(
                path,
                f"row {row} of {element.count} runs past the end of the file: truncated",
                f"element {element.name!r} at byte {pos}",
            )
    buf = np.frombuffer(data, dtype=np.uint8)
    values: Values = {}
    for p in element.props:
        first = np.array(starts[p.name], dtype=np.int64)
        dtype = p.dtype.newbyteorder(order)
        if p.count_dtype is None:
            values[p.name] = _gather(buf, first, np.ones(len(first), np.int64), dtype)
        else:
            n = np.array(sizes[p.name], dtype=np.int64)
            values[p.name] = (_gather(buf, first, n, dtype), n)
    return values, pos


def _walk_byte_counted(
    path: str | os.PathLike, data: bytes, offset: int, element: Element, order: str
) -> tuple[Values, int]:
    """The common mixed-arity layout (one list with a uchar count, as Blender writes faces):
    the loop only reads one byte per row; every field is then gathered with numpy."""
    index = next(i for i, p in enumerate(element.props) if p.count_dtype is not None)
    item = element.props[index].dtype.itemsize
    before = sum(p.dtype.itemsize for p in element.props[:index])
    after = sum(p.dtype.itemsize for p in element.props[index + 1 :])
    row_starts = np.empty(element.count, dtype=np.int64)
    counts = np.empty(element.count, dtype=np.int64)
    pos, end, fixed = offset, len(data), before + 1 + after
    for row in range(element.count):
        if pos + before >= end:
            raise ReadError(
                path,
                f"row {row} of {element.count} runs past the end of the file: truncated",
                f"element {element.name!r} at byte {min(pos, end)}",
            )
        n = data[pos + before]
        row_starts[row] = pos
        counts[row] = n
        pos += fixed + n * item
    if pos > end:
        row = int(np.flatnonzero(row_starts + fixed + counts * item > end)[0])
        raise ReadError(
            path,
            f"row {row} of {element.count} runs past the end of the file: truncated",
            f"element {element.name!r} at byte {int(row_starts[row])}",
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    ones = np.ones(element.count, dtype=np.int64)
    values: Values = {}
    field = row_starts.copy()
    for i, p in enumerate(element.props):
        dtype = p.dtype.newbyteorder(order)
        if i == index:
            values[p.name] = (_gather(buf, field + 1, counts, dtype), counts)
            field = field + 1 + counts * item
        else:
            values[p.name] = _gather(buf, field, ones, dtype)
            field = field + p.dtype.itemsize
    return values, pos


def _check_list_count(path: str | os.PathLike, n: int, where: str) -> None:
    if n < 0:
        raise ReadError(path, f"a list count is negative ({n})", where)


def _gather(buf: np.ndarray, starts: np.ndarray, counts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``counts[i]`` items of ``dtype`` at byte ``starts[i]``, concatenated: ``[sum counts]``."""
    width = dtype.itemsize
    nbytes = counts * width
    total = int(nbytes.sum())
    first = np.repeat(starts - np.concatenate([[0], np.cumsum(nbytes)[:-1]]), nbytes)
    index = first + np.arange(total, dtype=np.int64)
    return buf[index].view(dtype).astype(dtype.newbyteorder("="))


def _empty(p: Prop) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    if p.count_dtype is None:
        return np.zeros(0, dtype=p.dtype)
    return np.zeros(0, dtype=p.dtype), np.zeros(0, dtype=np.int64)


class _Irregular(Exception):
    """The ASCII fast path does not apply (blank lines, a sentinel value in the data, a bad
    token); the general path re-reads the body and names the line of any error."""


def _read_ascii(path: str | os.PathLike, data: bytes, header: PlyHeader) -> list[Values]:
    body = data[header.body :]
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not body.endswith(b"\n"):
        body += b"\n"
    try:
        return _ascii_fast(path, body, header)
    except _Irregular:
        return _ascii_general(path, body, header)


def _all_int(element: Element) -> bool:
    return all(p.dtype.kind in "iu" for p in element.props)


def _ascii_fast(path: str | os.PathLike, body: bytes, header: PlyHeader) -> list[Values]:
    """One row per line and no blank lines: each element is one slice of the body, parsed in
    one call, its line structure checked by ``loadtxt`` or by line-end sentinels."""
    newlines = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
    out = []
    cursor = 0
    for element in header.elements:
        if element.count == 0:
            out.append({p.name: _empty(p) for p in element.props})
            continue
        if cursor + element.count > len(newlines):
            raise _Irregular
        start = 0 if cursor == 0 else int(newlines[cursor - 1]) + 1
        region = body[start : int(newlines[cursor + element.count - 1]) + 1]
        first_line = cursor + header.lines

        def where(i: int, first_line: int = first_line) -> str:
            return f"line {first_line + i}"

        dtype = np.int64 if _all_int(element) else np.float64
        try:
            if element.fixed:
                table = parse_table(region, dtype, element.count)
                tokens = np.full(element.count, table.shape[1], dtype=np.int64)
                numbers, row_start = table.reshape(-1), np.arange(element.count) * table.shape[1]
            else:
                # a count or an index is never -1... except in tristrips, which then take the
                # general path; floats use nan, which a mesh file does not hold in a list row
                sentinel = b"-1" if dtype is np.int64 else b"nan"
                numbers, row_start, tokens = parse_lines(region, dtype, element.count, sentinel)
        except NotNumbers as exc:
            raise _Irregular from exc
        if (tokens == 0).any():
            raise _Irregular
        out.append(_decode_rows(path, numbers, row_start, tokens, element, where))
        cursor += element.count
    if body[int(newlines[cursor - 1]) + 1 if cursor else 0 :].strip():
        raise _Irregular
    return out


def _ascii_general(path: str | os.PathLike, body: bytes, header: PlyHeader) -> list[Values]:
    """Any layout the fast path declines: blank lines allowed, every error with its line."""
    buf = np.frombuffer(body, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    line_starts = np.concatenate([[0], newlines[:-1] + 1])
    _, counts = tokens_per_line(buf, line_starts)
    rows = np.flatnonzero(counts)  # one row per non-blank line
    out = []
    cursor = 0
    for element in header.elements:
        if element.count > len(rows) - cursor:
            raise ReadError(
                path,
                f"the header declares {element.count} rows but only {len(rows) - cursor} "
                "lines remain: the file is truncated or its header is wrong",
                f"element {element.name!r}",
            )
        lines = rows[cursor : cursor + element.count]
        cursor += element.count
        if element.count == 0:
            out.append({p.name: _empty(p) for p in element.props})
            continue

        def where(i: int, lines: np.ndarray = lines) -> str:
            return f"line {int(lines[i]) + header.lines}"

        tokens = counts[lines]
        numbers = np.empty(int(tokens.sum()), dtype=np.float64)
        row_start = np.concatenate([[0], np.cumsum(tokens)[:-1]])
        try:
            # rows of one element may be split by blank lines: parse each run of lines
            for run in np.split(np.arange(len(lines)), np.flatnonzero(np.diff(lines) != 1) + 1):
                a, b = lines[run[0]], lines[run[-1]]
                chunk = body[line_starts[a] : newlines[b]]
                n = int(tokens[run].sum())
                numbers[row_start[run[0]] : row_start[run[0]] + n] = parse_numbers(
                    chunk, np.float64, n
                )
        except NotNumbers:
            _raise_bad_token(path, body, line_starts, newlines, lines, where)
        out.append(_decode_rows(path, numbers, row_start, tokens, element, where))
    if cursor != len(rows):
        raise ReadError(
            path,
            f"{len(rows) - cursor} lines follow the last element: the header does not describe "
            "the whole file",
            f"line {int(rows[cursor]) + header.lines}",
        )
    return out


def _decode_rows(
    path: str | os.PathLike,
    numbers: np.ndarray,
    row_start: np.ndarray,
    tokens: np.ndarray,
    element: Element,
    where,
) -> Values:
    """Split each row's numbers among the element's properties, vectorized over rows.

    Row ``i``'s numbers are ``numbers[row_start[i] : row_start[i] + tokens[i]]``; every row
    must be used up exactly (else the header does not describe the row).
    """
    if (tokens == tokens[0]).all() and element.count:
        values = _decode_uniform(path, numbers, row_start, int(tokens[0]), element, where)
        if values is not None:
            return values
    pos = row_start.copy()
    row_end = row_start + tokens

    def row_of(index: np.ndarray):
        return lambda k: int(np.searchsorted(row_start, index[k], side="right") - 1)

    values: Values = {}
    for p in element.props:
        _check_room(path, pos + 1, row_end, element, where)
        if p.count_dtype is None:
            values[p.name] = _cast(path, numbers[pos], p.dtype, p.name, row_of(pos), where)
            pos = pos + 1
            continue
        n = _cast(path, numbers[pos], p.count_dtype, p.name, row_of(pos), where)
        n = n.astype(np.int64)
        negative = np.flatnonzero(n < 0)
        if len(negative):  # a signed count type ('list char int')
            row = int(negative[0])
            _check_list_count(path, int(n[row]), where(row))
        _check_room(path, pos + 1 + n, row_end, element, where)
        index = np.repeat(pos + 1 - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
        index += np.arange(len(index), dtype=np.int64)
        items = _cast(path, numbers[index], p.dtype, p.name, row_of(index), where)
        values[p.name] = (items, n)
        pos = pos + 1 + n
    extra = np.flatnonzero(pos != row_end)
    if len(extra):
        i = int(extra[0])
        raise ReadError(
            path,
            f"row {i} of element {element.name!r} has {int(tokens[i])} values, its properties "
            f"take {int(pos[i] - row_start[i])}",
            where(i),
        )
    return values


def _decode_uniform(
    path: str | os.PathLike,
    numbers: np.ndarray,
    row_start: np.ndarray,
    width: int,
    element: Element,
    where,
) -> Values | None:
    """Rows that all hold ``width`` numbers and, if lists, the same list sizes: column slices.
    ``None`` when the list sizes differ between rows (the general walk takes over)."""
    # rows are evenly spaced (a line-end sentinel may follow each): a strided view
    table = numbers.reshape(len(row_start), -1)[:, :width]
    values: Values = {}
    col = 0
    for p in element.props:
        if col >= width:
            return None
        if p.count_dtype is None:
            column = table[:, col]
            values[p.name] = _cast(path, column, p.dtype, p.name, lambda k: k, where)
            col += 1
            continue
        if not np.isfinite(table[0, col]):
            return None  # the general walk names the row
        n = int(table[0, col])
        if n < 0 or col + 1 + n > width or (table[:, col] != n).any():
            return None
        _cast(path, table[:1, col], p.count_dtype, p.name, lambda k: k, where)
        items = table[:, col + 1 : col + 1 + n].reshape(-1)
        flat = _cast(path, items, p.dtype, p.name, lambda k, n=n: k // n, where)
        values[p.name] = (flat, np.full(len(table), n, dtype=np.int64))
        col += 1 + n
    return values if col == width else None


def _check_room(
    path: str | os.PathLike, need: np.ndarray, have: np.ndarray, element: Element, where
) -> None:
    short = np.flatnonzero(need > have)
    if len(short):
        i = int(short[0])
        raise ReadError(
            path,
            f"row {i} of element {element.name!r} has fewer values than its properties take",
            where(i),
        )


def _cast(
    path: str | os.PathLike, values: np.ndarray, dtype: np.dtype, name: str, row_of, where
) -> np.ndarray:
    """Parsed numbers -> the declared type, refusing fractions and out-of-range integers.

    ``row_of(k)`` is the row of ``values[k]``, for the error message.
    """
    if dtype.kind == "f" or len(values) == 0:
        return values.astype(dtype)
    info = np.iinfo(dtype)
    fraction = values.dtype.kind == "f" and (values != np.floor(values)).any()
    if fraction or values.min() < info.min or values.max() > info.max:
        bad = (values < info.min) | (values > info.max)
        if values.dtype.kind == "f":
            bad |= values != np.floor(values)
        k = int(np.flatnonzero(bad)[0])
        raise ReadError(
            path, f"property {name!r}: {values[k]!r} is not a valid {dtype.name}", where(row_of(k))
        )
    return values.astype(dtype)


def _raise_bad_token(path, body, line_starts, newlines, lines, where) -> None:
    for i, line in enumerate(lines):
        for token in body[line_starts[line] : newlines[line]].split():
            try:
                float(token)
            except ValueError:
                text = token.decode("utf-8", "replace")
                raise ReadError(path, f"{text!r} is not a number", where(i)) from None
    raise ReadError(path, "a value is not a number numpy can read", where(0))


# ------------------------------------------------------------------------------------ sample
def _assemble(
    path: str | os.PathLike, header: PlyHeader, values: list[Values], options: LoadOptions
) -> dict[str, np.ndarray]:
    by_name = {e.name: (e, v) for e, v in zip(header.elements, values)}
    sample: dict[str, np.ndarray] = {}
    if "vertex" in by_name:
        _vertex(path, *by_name["vertex"], sample, options)
    else:
        sample["verts"] = np.zeros((0, 3), dtype=options.dtype)
    n_verts = len(sample["verts"])

    flat = np.zeros(0, dtype=np.int64)
    sizes = np.zeros(0, dtype=np.int64)
    per_face: list[str] = []
    if "face" in by_name:
        flat, sizes, per_face = _face(path, *by_name["face"], sample, n_verts, options)
    if "tristrips" in by_name:
        strips = _tristrips(path, *by_name["tristrips"], n_verts)
        if len(strips) and len(sizes):
            raise ReadError(path, "both 'face' and 'tristrips' hold faces; expected one of them")
        if len(strips):
            flat, sizes = strips.reshape(-1), np.full(len(strips), 3, dtype=np.int64)
    if len(sizes) and (sizes == 3).all():
        sample["faces"] = flat.reshape(-1, 3).astype(options.index_dtype, copy=False)
        if "faces_uvs" in sample:
            sample["faces_uvs"] = sample["faces_uvs"].reshape(-1, 3).astype(options.index_dtype)
    elif len(sizes):
        corners, owner = fan_triangles(sizes)
        sample["faces"] = flat[corners].astype(options.index_dtype)
        for key in per_face:
            sample[key] = sample[key][owner]
        if "faces_uvs" in sample:
            sample["faces_uvs"] = sample["faces_uvs"][corners].astype(options.index_dtype)
    if len(sizes) and options.polygons:
        sample["polygons"] = flat.astype(options.index_dtype)
        sample["polygon_sizes"] = np.array(sizes, dtype=np.int64)
    for element, vals in zip(header.elements, values):
        if element.name in ("vertex", "face", "tristrips"):
            continue
        for p in element.props:
            _put_extra(sample, f"{element.name}_{p.name}", vals[p.name])
    return sample


def _native(values: np.ndarray) -> np.ndarray:
    """A writable copy in native byte order (file views may be big-endian and read-only)."""
    return np.array(values, dtype=values.dtype.newbyteorder("="))


def _columns(vals: Values, names: tuple[str, ...] | list[str], dtype) -> np.ndarray:
    """Scalar properties side by side, ``[count, len(names)]``, converted in one pass each."""
    first = vals[names[0]]
    out = np.empty((len(first), len(names)), dtype=dtype)
    for i, name in enumerate(names):
        out[:, i] = vals[name]
    return out


def _put_extra(sample: dict, key: str, value) -> None:
    if isinstance(value, tuple):
        sample[key] = _native(value[0]).reshape(-1)
        sample[key + "_sizes"] = np.array(value[1], dtype=np.int64)
    else:
        sample[key] = _native(value)


def _vertex(
    path: str | os.PathLike, element: Element, vals: Values, sample: dict, options: LoadOptions
) -> None:
    names = {p.name for p in element.props}
    if not {"x", "y", "z"} <= names:
        raise ReadError(path, "element 'vertex' has no x, y, z properties", "header")
    xyz = _columns(vals, "xyz", options.dtype)
    if not options.allow_nonfinite:
        check_finite(path, "vertex", xyz, lambda row: f"element 'vertex' row {row}")
    sample["verts"] = xyz
    used = {"x", "y", "z"}
    if {"nx", "ny", "nz"} <= names:
        sample["normals"] = _columns(vals, ("nx", "ny", "nz"), options.dtype)
        used |= {"nx", "ny", "nz"}
    channels = [c for c in ("red", "green", "blue", "alpha") if c in names]
    if {"red", "green", "blue"} <= names:
        kind = np.result_type(*(vals[c].dtype for c in channels))
        dtype = options.dtype if kind.kind == "f" else kind.newbyteorder("=")
        sample["colors"] = _columns(vals, channels, dtype)
        used |= set(channels)
    for u, v in _UV_NAMES:
        if {u, v} <= names:
            sample["uvs"] = _columns(vals, (u, v), options.dtype)
            used |= {u, v}
            break
    for p in element.props:
        if p.name not in used:
            clash = p.name in _RESERVED or p.name in sample
            key = f"vertex_{p.name}" if clash else p.name
            _put_extra(sample, key, vals[p.name])


_RESERVED = {
    "verts", "faces", "normals", "colors", "uvs", "faces_uvs", "faces_normals", "face_groups",
    "polygons", "polygon_sizes", "points", "edges", "label", "path", "key",
}  # fmt: skip


def _face(
    path: str | os.PathLike,
    element: Element,
    vals: Values,
    sample: dict,
    n_verts: int,
    options: LoadOptions,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The polygons ``(flat int64, sizes int64)`` of the face element, and the names of the
    per-face fields put into ``sample`` (to be repeated per triangle); nothing for 0 faces."""
    index_name = next((n for n in FACE_LISTS if isinstance(vals.get(n), tuple)), None)
    if index_name is None:
        raise ReadError(path, "element 'face' has no vertex_indices list", "header")
    flat, sizes = vals[index_name]  # type: ignore[misc]
    flat = flat.astype(np.int64).reshape(-1)
    sizes = sizes.astype(np.int64, copy=False)
    if element.count == 0:
        return flat, sizes, []
    small = np.flatnonzero(sizes < 3) if sizes.min() < 3 else ()
    if len(small):
        raise ReadError(
            path,
            f"face {int(small[0])} has {int(sizes[small[0]])} corners; a face needs at least 3",
            "element 'face'",
        )
    _check_indices(path, flat, sizes, n_verts, "face")
    scalars = {p.name for p in element.props if p.count_dtype is None}
    per_face: list[str] = []
    used = {index_name}
    channels = [c for c in ("red", "green", "blue", "alpha") if c in scalars]
    if {"red", "green", "blue"} <= scalars:
        kind = np.result_type(*(vals[c].dtype for c in channels)).newbyteorder("=")
        sample["face_colors"] = _columns(vals, channels, kind)
        per_face.append("face_colors")
        used |= set(channels)
    texcoord = vals.get("texcoord")
    if isinstance(texcoord, tuple) and "uvs" not in sample and (texcoord[1] == 2 * sizes).all():
        # per-corner uvs (MeshLab / VCG): one uv row per corner; faces_uvs index those rows
        sample["uvs"] = texcoord[0].astype(options.dtype).reshape(-1, 2)
        sample["faces_uvs"] = np.arange(len(flat), dtype=np.int64)
        used.add("texcoord")
    for p in element.props:
        if p.name in used:
            continue
        key = f"face_{p.name}"
        _put_extra(sample, key, vals[p.name])
        if p.count_dtype is None:
            per_face.append(key)
    return flat, sizes, per_face


def _check_indices(
    path: str | os.PathLike, flat: np.ndarray, sizes: np.ndarray, n_verts: int, name: str
) -> None:
    # as unsigned, a negative index is huge: one max() checks both bounds
    if len(flat) == 0 or flat.view(np.uint64).max() < n_verts:
        return
    bad = np.flatnonzero((flat < 0) | (flat >= n_verts))
    if len(bad):
        k = int(bad[0])
        row = int(np.searchsorted(np.cumsum(sizes), k, side="right"))
        raise ReadError(
            path,
            f"{name} {row} refers to vertex {int(flat[k])}, outside [0, {n_verts})",
            f"element {name!r}",
        )


def _tristrips(path: str | os.PathLike, element: Element, vals: Values, n_verts: int) -> np.ndarray:
    """Triangles ``[T, 3]`` of every strip (``-1`` restarts a strip), alternating winding,
    without the degenerate triangles strips use as joints."""
    index_name = next((n for n in FACE_LISTS if isinstance(vals.get(n), tuple)), None)
    if index_name is None:
        raise ReadError(path, "element 'tristrips' has no vertex_indices list", "header")
    flat = vals[index_name][0].astype(np.int64).reshape(-1)  # type: ignore[index]
    bad = np.flatnonzero((flat < -1) | (flat >= n_verts))
    if len(bad):
        raise ReadError(
            path,
            f"strip index {int(flat[bad[0]])} is outside [0, {n_verts})",
            "element 'tristrips'",
        )
    triangles = []
    for strip in np.split(flat, np.flatnonzero(flat == -1)):
        strip = strip[strip >= 0]
        if len(strip) < 3:
            continue
        k = np.arange(len(strip) - 2)
        tri = np.stack([strip[k], strip[k + 1], strip[k + 2]], axis=1)
        odd = k % 2 == 1
        tri[odd, 0], tri[odd, 1] = tri[odd, 1], tri[odd, 0].copy()
        triangles.append(tri)
    if not triangles:
        return np.zeros((0, 3), dtype=np.int64)
    tri = np.concatenate(triangles)
    keep = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
    return tri[keep]
