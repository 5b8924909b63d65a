"""glibc's heap settings (`mallopt`), and the ones a render process runs with.

A page render allocates and frees the same buffers every page: MuPDF's pixmap and its samples
(2.2 MB each for 724 x 1024 px), Pillow's 3 MB RGBX copy for the grey check, the packed
channels. With glibc's defaults a process can give them back to the system after every page:
once a block of about 3 MB has been mapped and freed, glibc serves smaller ones from the heap
but trims the heap whenever more than twice that is free at its top, and a page frees about
7.5 MB there. The render pool's processes took about 1,950 page faults a page that way (3 of
the split worker's 8-11 CPU-ms a page). `keep_page_buffers` fixes both thresholds instead: a
process then keeps at most `KEEP_FREE_BYTES` of free heap, and buffers that large are mapped
on their own.
"""

from __future__ import annotations

import logging
import os
from typing import Any

_log = logging.getLogger(__name__)

#: glibc's mallopt parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Free heap a render process keeps instead of giving it back; allocations this large or larger
#: are mapped and unmapped on their own. 32 MiB is glibc's largest mmap threshold.
KEEP_FREE_BYTES = 32 * 1024 * 1024


def libc_function(name: str) -> Any:
    """The C library's `name`, or None where it has none (macOS, musl): nothing to tune."""
    import ctypes  # here: `ocrflux convert` imports this module without tuning anything

    try:
        return getattr(ctypes.CDLL(None), name)  # the C library this process already uses
    except (OSError, AttributeError):
        return None


def mallopt(option: int, value: int) -> bool:
    """glibc's `mallopt(option, value)`; True when it was applied."""
    import ctypes

    function = libc_function("mallopt")
    if function is None:
        return False
    function.argtypes = (ctypes.c_int, ctypes.c_int)
    function.restype = ctypes.c_int
    if function(option, value) != 1:
        _log.debug("mallopt(%d, %d) refused; the heap keeps its behaviour", option, value)
        return False
    return True


def keep_page_buffers() -> bool:
    """Keep freed buffers below `KEEP_FREE_BYTES` in this process's heap (the thresholds fixed,
    which also stops glibc from moving them); True when set. Thresholds chosen in the
    environment (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) are left alone."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    return mallopt(M_MMAP_THRESHOLD, KEEP_FREE_BYTES) and mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES)
