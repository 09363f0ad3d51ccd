"""Give freed memory back to the operating system once a lot of it has been freed.

CPython's small-object allocator returns an arena only when every object in it is gone, and
glibc's malloc keeps freed chunks of its heaps for reuse; after many clients leave, the
process's RSS would stay at its peak. ``malloc_trim(0)`` (glibc) releases the free pages of
every heap. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
except (OSError, AttributeError):  # not glibc
    _trim = None


def give_back() -> bool:
    """Release free heap pages to the OS; True if the C library can and did."""
    return _trim is not None and bool(_trim(0))
