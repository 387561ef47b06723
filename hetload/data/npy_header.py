"""The ``.npy`` header numpy writes for an array, built without numpy's writer.

A batch read compares every ``.npy`` header it skips with the one numpy's writer
(``np.lib.format.write_array``, through :func:`hetload.shards.format.encode_npy`) would have
written for the shape the index gives. numpy writes a C-order array's header as the magic, the
header's length, then ``{'descr': '<f4', 'fortran_order': False, 'shape': (N, 3), }``, spaces
and a newline; it pads the first dimension's digits to a fixed width (room to grow the array in
place) and the whole header to a 64-byte boundary. So within one dtype and trailing shape only
``N``'s digits vary: the header is a prefix, the digits and a suffix whose spaces make up for
them, all of one length. :func:`npy_headers` builds that template once per dtype and trailing
shape and checks it against numpy's own header writer there; where they differ (another numpy
writing another form) every header comes from numpy's writer, as exact and only slower.

Format 1.0 holds headers up to 65535 bytes; numpy writes a longer one (a structured dtype of
many fields) as 2.0, and so does this module. A header that needs 3.0 (non-latin-1 field names)
raises ``ValueError``: the batch read leaves such a field to the per-sample path.
"""

from __future__ import annotations

import io
import struct
from functools import lru_cache

import numpy as np

__all__ = ["NpyHeaders", "npy_headers", "numpy_header"]

_MAGIC = b"\x93NUMPY"
#: numpy pads the header to this boundary (``np.lib.format.ARRAY_ALIGN``)
_ALIGN = 64
#: numpy's room for the growing axis' digits (``GROWTH_AXIS_MAX_DIGITS``)
_GROWTH = 21
#: first dimensions the template is checked at against numpy's writer: 1 to 13 digits
_CHECK_ROWS = (0, 7, 10, 99, 123456, 1 << 40)


def numpy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The header (magic to newline) numpy's writer gives a C-order array of ``dtype`` and
    ``shape``: format 1.0, or 2.0 where the header does not fit 1.0 (as ``write_array``)."""
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    out = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(out, header)
    except UnicodeEncodeError:
        raise ValueError(f".npy header of {dtype} needs format 3.0 (utf-8)") from None
    except ValueError:  # longer than 1.0 holds
        out = io.BytesIO()
        np.lib.format.write_array_header_2_0(out, header)
    return out.getvalue()


@lru_cache(maxsize=4096)
def _numpy_header_cached(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    return numpy_header(dtype, shape)


class NpyHeaders:
    """The headers of C-order arrays of one ``dtype`` and trailing shape ``tail`` (``None``:
    0-d arrays); ``headers(rows)`` is the header of shape ``(rows, *tail)`` (of ``()`` for
    0-d, whatever ``rows``), ``length`` the bytes of every header (``None``: it varies).

    Raises ``ValueError`` for a dtype whose header needs format 3.0."""

    def __init__(self, dtype: np.dtype, tail: tuple[int, ...] | None) -> None:
        self.dtype, self.tail = dtype, tail
        self._prefix = b""
        self._suffixes: list[bytes] = []
        self.length: int | None = None
        if tail is None:
            self._scalar: bytes | None = numpy_header(dtype, ())
            self.length = len(self._scalar)
            return
        self._scalar = None
        descr = np.lib.format.dtype_to_descr(dtype)
        # numpy's dict: its keys sorted, each "'key': repr(value), "; the shape's "(N" apart
        try:
            head = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': (".encode("latin1")
        except UnicodeEncodeError:
            raise ValueError(f".npy header of {dtype} needs format 3.0 (utf-8)") from None
        rest = (repr((0, *tail))[2:] + ", }").encode("latin1")
        text = len(head) + len(rest) + _GROWTH + 1  # + the newline
        for fmt in ("<H", "<I"):  # format 1.0, else 2.0
            size = len(_MAGIC) + 2 + struct.calcsize(fmt)
            pad = _ALIGN - (size + text) % _ALIGN
            if text + pad <= (1 << (8 * struct.calcsize(fmt))) - 1:
                break
        version = b"\x01\x00" if fmt == "<H" else b"\x02\x00"
        self._prefix = _MAGIC + version + struct.pack(fmt, text + pad) + head
        # by the digits' count (1 to 21): the shape's rest, the spaces, the newline
        self._suffixes = [b""] + [
            rest + b" " * (_GROWTH - digits + pad) + b"\n" for digits in range(1, _GROWTH + 1)
        ]
        self.length = size + text + pad
        if any(self._built(n) != numpy_header(dtype, (n, *tail)) for n in _CHECK_ROWS):
            self.length = None  # this numpy writes another form: ask it for every header

    def _built(self, rows: int) -> bytes:
        digits = b"%d" % rows
        return self._prefix + digits + self._suffixes[len(digits)]

    def __call__(self, rows: int) -> bytes:
        if self._scalar is not None:
            return self._scalar
        if self.length is not None and 0 <= rows < 10**_GROWTH:
            digits = b"%d" % rows
            return self._prefix + digits + self._suffixes[len(digits)]
        assert self.tail is not None
        return _numpy_header_cached(self.dtype, (rows, *self.tail))

    def many(self, rows: list[int]) -> list[bytes]:
        """``[self(n) for n in rows]``, for ``rows`` in ``[0, 10**21)`` without a call each."""
        if self._scalar is not None:
            return [self._scalar] * len(rows)
        if self.length is None:
            return [self(n) for n in rows]
        prefix, suffixes = self._prefix, self._suffixes
        return [prefix + d + suffixes[len(d)] for d in (b"%d" % n for n in rows)]


@lru_cache(maxsize=1024)
def npy_headers(dtype: np.dtype, tail: tuple[int, ...] | None) -> NpyHeaders:
    """The (cached) :class:`NpyHeaders` of ``dtype`` and trailing shape ``tail``."""
    return NpyHeaders(dtype, tail)
