"""PLY ASCII bodies: each element parsed in one ``np.fromstring`` call, every error with its line.

Rows are one per line (what every writer produces), so each row's token count is checked
against the header; a body with blank lines or a token numpy cannot parse takes a general path
that names the line.
"""

from __future__ import annotations

import os

import numpy as np

from hetload.io.ply_header import Element, PlyHeader, Values, check_list_count, empty_values
from hetload.io.read_error import ReadError
from hetload.io.text import NotNumbers, parse_lines, parse_numbers, parse_table, tokens_per_line

__all__ = ["read_ascii"]


class _Irregular(Exception):
    """The ASCII fast path does not apply (blank lines, a sentinel value in the data, a bad
    token); the general path re-reads the body and names the line of any error."""


def read_ascii(path: str | os.PathLike, data: bytes, header: PlyHeader) -> list[Values]:
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
            out.append(empty_values(element))
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
            out.append(empty_values(element))
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
            check_list_count(path, int(n[row]), where(row))
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
            path,
            f"property {name!r}: {values[k].item()!r} is not a valid {dtype.name}",
            where(row_of(k)),
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
