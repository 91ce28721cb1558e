"""``select(2)`` past FD_SETSIZE: libc's select called through ctypes with a larger fd_set bitmap.

Python's ``select.select`` refuses descriptors >= 1024 because glibc's ``FD_SET`` macros index a
fixed 1024-bit array.  The kernel itself takes any ``nfds`` up to the process's descriptor table
size, so a bitmap of ``ceil(nfds / 64)`` longs works; this module keeps the watched set as a
template and copies it into the call buffer before every call (select overwrites its input).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from typing import Iterable

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_WORD_BITS = ctypes.sizeof(ctypes.c_ulong) * 8


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


_libc.select.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.POINTER(_Timeval)]
_libc.select.restype = ctypes.c_int


class BigSelect:
    """Watch a fixed set of descriptors for reading with select(2), without the 1024 cap."""

    name = "select"

    def __init__(self, fds: Iterable[int]) -> None:
        fds = list(fds)
        self.nfds = max(fds) + 1 if fds else 0
        words = max(1, -(-self.nfds // _WORD_BITS))
        self.nbytes = words * ctypes.sizeof(ctypes.c_ulong)
        mask = 0
        for fd in fds:
            mask |= 1 << fd
        self._template = mask.to_bytes(self.nbytes, "little")
        self._buf = (ctypes.c_ulong * words)()
        self._tv = _Timeval()

    def wait(self, timeout: float | None) -> list[int]:
        """Descriptors ready for reading (timeout in seconds; None blocks)."""
        ctypes.memmove(self._buf, self._template, self.nbytes)
        tvp = None
        if timeout is not None:
            self._tv.tv_sec = int(timeout)
            self._tv.tv_usec = int((timeout - int(timeout)) * 1e6)
            tvp = ctypes.pointer(self._tv)
        n = _libc.select(self.nfds, self._buf, None, None, tvp)
        if n < 0:
            err = ctypes.get_errno()
            if err == errno.EINTR:
                return []
            raise OSError(err, os.strerror(err))
        if n == 0:
            return []
        bits = int.from_bytes(bytes(self._buf), "little")
        ready = []
        while bits:
            low = bits & -bits
            ready.append(low.bit_length() - 1)
            bits ^= low
        return ready

    def close(self) -> None:
        pass
