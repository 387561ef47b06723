"""A shared mapping of a memory file that keeps no file descriptor (``mmap(2)`` via ctypes).

Python's ``mmap.mmap`` keeps a duplicate of the descriptor for as long as the mapping lives, so a
process caching mappings of its DataLoader workers' segments would hold one descriptor per
segment (and the count would follow the ring sizes). A :class:`Mapping` holds only the address.

Its memory is reached as :attr:`Mapping.buffer` (a ctypes array: ``torch.frombuffer`` views it).
Whoever calls :meth:`Mapping.close` must know that no tensor views it any more (the ring and the
main-process cache count the batches over each mapping for exactly that).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os

__all__ = ["Mapping", "memfd"]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def memfd(name: str, size: int) -> int:
    """A new anonymous memory file of ``size`` bytes (Linux ``memfd_create``: nothing in
    ``/dev/shm``, gone when its last descriptor and mapping are)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Mapping:
    """``size`` bytes of ``fd`` mapped shared, read-write; ``populate`` maps every page now (one
    call instead of a page fault per page later)."""

    __slots__ = ("address", "buffer", "size")

    def __init__(self, fd: int, size: int, populate: bool = False) -> None:
        flags = mmap.MAP_SHARED | (_POPULATE if populate else 0)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        address = _libc.mmap(None, size, prot, flags, fd, 0)
        if address in (None, _MAP_FAILED):
            err = ctypes.get_errno()
            raise OSError(err, f"mmap of a {size}-byte batch segment failed: {os.strerror(err)}")
        self.address: int = address
        self.size = size
        self.buffer = (ctypes.c_uint8 * size).from_address(address)

    def byte(self, i: int) -> int:
        return self.buffer[i]

    def set_byte(self, i: int, value: int) -> None:
        self.buffer[i] = value

    def int64(self, at: int) -> int:
        return ctypes.c_int64.from_address(self.address + at).value

    def set_int64(self, at: int, value: int) -> None:
        ctypes.c_int64.from_address(self.address + at).value = value

    def close(self) -> None:
        """Unmap (idempotent). Only once no tensor views the memory."""
        if self.address:
            _libc.munmap(self.address, self.size)
            self.address = 0
            self.buffer = None
