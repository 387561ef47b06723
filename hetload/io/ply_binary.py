"""PLY binary bodies (little- and big-endian): every element as numpy views of the file's bytes.

Elements of fixed-size rows (all scalars, or lists whose count is the same in every row, e.g.
all triangles) are one ``np.frombuffer`` view; rows of varying size (mixed arity) are walked
once to find where each row starts, then gathered. Every declared size is checked against the
bytes that remain before anything is allocated.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from hetload.io.ply_header import Element, PlyHeader, Values, check_list_count, empty_values
from hetload.io.read_error import ReadError, check_fits

__all__ = ["read_binary"]


def read_binary(
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
        return empty_values(element), offset
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
        check_list_count(path, n, where)
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
            check_list_count(path, n, f"element {element.name!r} row {row} at byte {pos}")
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


def _gather(buf: np.ndarray, starts: np.ndarray, counts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``counts[i]`` items of ``dtype`` at byte ``starts[i]``, concatenated: ``[sum counts]``."""
    width = dtype.itemsize
    nbytes = counts * width
    total = int(nbytes.sum())
    first = np.repeat(starts - np.concatenate([[0], np.cumsum(nbytes)[:-1]]), nbytes)
    index = first + np.arange(total, dtype=np.int64)
    return buf[index].view(dtype).astype(dtype.newbyteorder("="))
