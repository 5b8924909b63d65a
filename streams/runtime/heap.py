"""Large buffers straight from and back to the operating system, so a worker's resident memory
follows what it holds rather than the most it ever held.

glibc serves allocations below its mmap threshold from the heap, and raises that threshold to
the size of each mmapped block freed (up to 32 MiB). A worker frees fetch responses of a few
hundred KiB all the time, so after the first few those land in the heap, where a freed block
stays resident while anything allocated after it lives. Assembling a 1,000-page document, the
assemble worker's heap grew by 14.5 MB of which 9.7 MB was free; with the threshold fixed at
128 KiB its peak on a first such document fell from 120 to 111-113 MB (2026-12-03). Setting the
threshold explicitly also turns the raising off.
"""

from __future__ import annotations

import os

from ocrflux.glibc_heap import M_MMAP_THRESHOLD, libc_function, mallopt

#: glibc's initial threshold, kept from then on.
MMAP_THRESHOLD_BYTES = 128 * 1024


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD_BYTES`; True when it was set. A no-op
    where the C library has no such setting, and when `MALLOC_MMAP_THRESHOLD_` already chose one."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


_malloc_trim = libc_function("malloc_trim")


def release_free_heap() -> None:
    """Give the heap's free pages back to the system (glibc's `malloc_trim`), wherever they
    are in it: after a large document the assembler holds a few MB of freed small blocks, which
    the next document would otherwise start on top of. A no-op where there is no such call."""
    if _malloc_trim is not None:
        _malloc_trim(0)
