"""Workers keep large buffers out of the heap (`streams.runtime.heap`)."""

from __future__ import annotations

import pytest

from tests.fixtures.processes import python_probe

# Counts glibc's mmapped blocks while a 300 KB buffer is held, twice in a row: glibc mmaps the
# first (above its initial 128 KiB threshold) and, unless the threshold was fixed, raises the
# threshold when it is freed, so the second comes from the heap.
PROBE = """
import ctypes, sys
from streams.runtime.heap import return_large_buffers

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    )]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    print(return_large_buffers())

def mmapped_while_holding(size):
    block = bytearray(size)
    return libc.mallinfo2().hblks

before = libc.mallinfo2().hblks
print(mmapped_while_holding(300_000) - before, mmapped_while_holding(300_000) - before)
"""


def _probe(mode: str, **env: str) -> list[str]:
    return python_probe(PROBE, mode, **env).split()


@pytest.fixture(autouse=True)
def _glibc() -> None:
    import ctypes

    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.fail("these tests need glibc 2.33 or later (mallinfo2), as the CI machine has")


def test_without_it_glibc_moves_the_second_large_buffer_into_the_heap() -> None:
    assert _probe("default") == ["1", "0"]


def test_with_it_every_large_buffer_is_mmapped_and_so_given_back_when_freed() -> None:
    assert _probe("fixed") == ["True", "1", "1"]


def test_a_threshold_chosen_in_the_environment_is_left_alone() -> None:
    assert _probe("fixed", MALLOC_MMAP_THRESHOLD_="1048576") == ["False", "0", "0"]


# Frees 40 MB of 4 KB blocks below one block still held (so the heap cannot shrink from its
# top), then reports the resident MB given back by `release_free_heap`.
TRIM_PROBE = """
from streams.runtime.heap import release_free_heap

def resident_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

blocks = [bytearray(4096) for _ in range(10_000)]
pinned = bytearray(4096)
del blocks
before = resident_mb()
release_free_heap()
print(round(before - resident_mb()))
"""


def test_releasing_the_free_heap_gives_freed_blocks_below_the_top_back() -> None:
    assert int(python_probe(TRIM_PROBE)) >= 30  # of the 40 MB freed
