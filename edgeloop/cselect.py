"""``select(2)`` past FD_SETSIZE: libc's select called through ctypes with bitmaps of any size.

Design
------
Why this exists.  ``FD_SETSIZE`` (1024) is not a kernel limit.  It is a glibc macro: the size of
the fixed bit array inside ``fd_set`` and the bound of the ``FD_SET``/``FD_ISSET`` macros.
Python's ``select.select`` builds its sets with those macros, so it refuses any descriptor >= 1024.
The kernel's select(2) takes any ``nfds`` up to the size of the process's descriptor table and
copies the first ``nfds`` bits of each set in, and back out, in whole longs; glibc's ``select()``
passes ``nfds`` and the pointers through untouched.  A caller that hands in larger buffers therefore gets select past 1024 (the
seed article benchmarked it that way).  The select backend uses this module only once a watched
descriptor is >= FD_SETSIZE; below that ``select.select`` is faster (see ``SelectPoller``).

Bitmaps.  A set is an array of ``ceil(nfds / W)`` C longs (W = bits per long, 64 on 64-bit Linux),
bit ``fd % W`` of word ``fd // W`` standing for descriptor ``fd``; a shorter buffer would be
overrun by the kernel.  The poller keeps each set as
a Python int with bit ``fd`` set (``1 << fd``) and updates it on register/modify/unregister; on a
little-endian machine ``bits.to_bytes(n, "little")`` is exactly that array of longs, so a wait
costs one C-speed conversion per set instead of a Python loop over the descriptors.  ``nfds`` is
one more than the highest watched descriptor, which is ``bits.bit_length()``.  select(2) writes
the ready bits over its input, so every call gets fresh buffers.  The ready descriptors are read
back from the returned bits with ``str.find`` over their binary digits: C-speed skipping of the
zero bits, one Python step per ready descriptor.  Big-endian machines (where the bytes of a long
are the other way round) are not supported: ``load()`` says so and the poller refuses the
descriptor as before.

Timeout.  A ``struct timeval``, rounded *up* to the microsecond, like the other pollers round up
to their unit: a timer 0.4 µs away sleeps 1 µs instead of becoming a zero-timeout busy loop.
``None`` blocks (a NULL pointer).

EINTR.  As the stdlib does since PEP 475: a signal interrupting the call runs the Python signal
handlers (the interpreter runs them on its way back into the retry loop below); if one raises,
the exception leaves ``wait()``; otherwise select is called again with the time that is left,
and once the deadline has passed nothing is reported.  The GIL is released during the call (a
``ctypes.CDLL`` function), so other threads run meanwhile.

Errors.  Any other failure raises ``OSError`` with errno set, as ``select.select`` does.  EBADF
(a watched descriptor was closed behind the loop's back) is left to the poller, which finds the
closed descriptors the same way whichever select it called.

Availability.  ``load()`` imports ctypes and finds ``select`` in libc the first time it is needed
(no cost for programs that never watch a descriptor >= 1024); without ctypes or libc it raises
``Unavailable`` with the reason, and the poller refuses such descriptors with ValueError.
"""
from __future__ import annotations

import errno
import math
import os
import sys
import time
from typing import Any, Callable

FD_SETSIZE = 1024


class Unavailable(Exception):
    """libc's select cannot be called through ctypes here (the reason is the message)."""


def timeval(timeout: float) -> tuple[int, int]:
    """``(tv_sec, tv_usec)`` for ``timeout`` seconds, rounded up to the microsecond: a positive
    timeout never becomes zero."""
    if timeout <= 0:
        return 0, 0
    sec, usec = divmod(math.ceil(timeout * 1e6), 1_000_000)
    return sec, usec


def fds_of(bits: int) -> list[int]:
    """The descriptors whose bits are set in ``bits`` (bit n is descriptor n), highest first."""
    digits = format(bits, "b")  # most significant bit first; "0" for no bits
    top = len(digits) - 1
    fds = []
    i = digits.find("1")
    while i >= 0:
        fds.append(top - i)
        i = digits.find("1", i + 1)
    return fds


class LibcSelect:
    """libc's ``select`` with bitmaps sized to the highest descriptor."""

    def __init__(self, func: Callable[..., int], word_bytes: int, char: Any, timeval_type: Any,
                 byref: Callable[[Any], Any], get_errno: Callable[[], int]) -> None:
        self._select = func
        self._word_bytes = word_bytes
        self._word_bits = word_bytes * 8
        self._char = char
        self._timeval = timeval_type
        self._byref = byref
        self._get_errno = get_errno

    def wait(self, rbits: int, wbits: int, timeout: float | None) -> tuple[list[int], list[int]]:
        """Wait until a descriptor of ``rbits`` is readable or one of ``wbits`` writable, at most
        ``timeout`` seconds (None: no limit).  Returns the ready descriptors (read, write)."""
        nfds = max(rbits.bit_length(), wbits.bit_length())
        nbytes = -(-nfds // self._word_bits) * self._word_bytes  # ceil(nfds / W) longs
        deadline = None if timeout is None else time.monotonic() + timeout
        array = self._char * nbytes
        while True:  # the Python signal handlers of an EINTR run on the way back to the top
            # Fresh buffers on every call: select overwrites them with the ready bits.
            rbuf = array.from_buffer_copy(rbits.to_bytes(nbytes, "little")) if rbits else None
            wbuf = array.from_buffer_copy(wbits.to_bytes(nbytes, "little")) if wbits else None
            tvp = None if timeout is None else self._byref(self._timeval(*timeval(timeout)))
            n = self._select(nfds, rbuf, wbuf, None, tvp)
            if n >= 0:
                break
            err = self._get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return [], []
        if n == 0:
            return [], []
        r = fds_of(int.from_bytes(rbuf.raw, "little")) if rbuf is not None else []
        w = fds_of(int.from_bytes(wbuf.raw, "little")) if wbuf is not None else []
        return r, w


_loaded: LibcSelect | str | None = None  # the instance, or why there is none


def load() -> LibcSelect:
    """libc's select, loaded on first use; ``Unavailable`` (with the reason) if it cannot be."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    if isinstance(_loaded, str):
        raise Unavailable(_loaded)
    return _loaded


def _load() -> LibcSelect | str:
    if sys.byteorder != "little":
        return "libc's select() is only driven with little-endian fd_set bitmaps"
    try:
        import ctypes
    except ImportError as exc:
        return f"libc's select() would be called through ctypes, which is not available ({exc})"
    func: Any = None
    try:
        func = ctypes.CDLL(None, use_errno=True).select  # the interpreter's symbols, libc's included
    except (OSError, AttributeError):
        import ctypes.util
        path = ctypes.util.find_library("c")
        try:
            if path:
                func = ctypes.CDLL(path, use_errno=True).select
        except (OSError, AttributeError):
            pass
    if func is None:
        return "libc's select() cannot be loaded through ctypes"

    class Timeval(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]

    # No ``argtypes``: the arguments are always a Python int (passed as a C int), ctypes arrays or
    # byref() (passed as pointers) and None (NULL), which ctypes converts right by itself, and
    # checking them costs a sixth of the call (0.35 of 2.1 µs).
    func.restype = ctypes.c_int
    return LibcSelect(func, ctypes.sizeof(ctypes.c_ulong), ctypes.c_char, Timeval, ctypes.byref,
                      ctypes.get_errno)
