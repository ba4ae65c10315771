"""Keep freed memory in the process, so that repeated chunks reuse it instead of faulting in new pages.

Gradient statistics draw estimates in chunks whose tensors are freed and allocated again, chunk
after chunk. glibc's malloc hands blocks above its mmap threshold (dynamic, 128 KiB to 32 MiB) back
to the kernel when they are freed, and trims the top of the heap once more than twice that is
free; the next chunk then page-faults every page of its tensors afresh, which made gradient
statistics on the project's 2-core machine up to twice as slow and their times erratic.

:func:`keep_freed_memory` sets, once per process, the mmap threshold to 32 MiB (its largest value:
smaller blocks come from the heap) and the trim threshold to 256 MiB (up to that much freed memory
stays in the process for reuse). It is a no-op where the C library has no ``mallopt`` (not glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20


@functools.cache
def keep_freed_memory() -> bool:
    """Apply the thresholds above (once per process); True where glibc took them."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
