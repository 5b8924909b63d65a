"""Render processes keep their page buffers in the heap (`ocrflux.glibc_heap`): the buffers a
page allocates and frees cost no page faults on the pages after it."""

from __future__ import annotations

import ctypes
import resource

import pytest

from ocrflux.render_pool import RenderPool
from tests.fixtures.processes import python_probe

MB = 1024 * 1024


def faults_per_page() -> int:
    """Minor page faults a page-like round of buffers takes once a few rounds have run.

    A page render frees one bitmap of about 3 MB (glibc then raises its mmap threshold to that
    size and its trim threshold to twice it) and allocates and frees about 8 MB of buffers just
    under it: with glibc's defaults the heap is trimmed after each round and faulted in again
    (about 2,000 faults a round), as the render processes did on every page."""
    bitmap = b"\x01" * (3 * MB)
    del bitmap
    faults = 0
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        held = [b"\x01" * (2 * MB) for _ in range(4)]
        del held
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return faults


PROBE = """
import sys
from ocrflux.glibc_heap import keep_page_buffers
from tests.ocrflux.test_glibc_heap import faults_per_page
kept = keep_page_buffers() if sys.argv[1] == "keep" else None
print(kept, faults_per_page())
"""


def _probe(mode: str, **env: str) -> tuple[str, int]:
    kept, faults = python_probe(PROBE, mode, **env).split()
    return kept, int(faults)


@pytest.fixture(autouse=True)
def _glibc() -> None:
    if not hasattr(ctypes.CDLL(None), "mallopt"):
        pytest.fail("these tests need glibc (mallopt), as the CI machine has")


def test_by_default_every_page_faults_its_buffers_in_again() -> None:
    kept, faults = _probe("default")
    assert kept == "None"
    assert faults > 1000  # 8 MB is 2,048 pages of 4 KiB


def test_kept_page_buffers_come_back_without_page_faults() -> None:
    kept, faults = _probe("keep")
    assert kept == "True"
    assert faults < 50


def test_thresholds_chosen_in_the_environment_are_left_alone() -> None:
    kept, _ = _probe("keep", MALLOC_TRIM_THRESHOLD_="1048576")
    assert kept == "False"


async def test_render_processes_keep_their_page_buffers() -> None:
    pool = RenderPool(1, min_pages=1)
    try:
        await pool.start()
        assert await pool.run(faults_per_page) < 50
    finally:
        pool.close()
