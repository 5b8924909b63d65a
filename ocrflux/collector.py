"""The cyclic garbage collector while a one-shot command loads (`ocrflux convert`), and once a
long-running worker has started (`settle`).

Importing what `ocrflux convert` runs allocates hundreds of thousands of objects (modules,
classes, functions, pydantic's schemas) that live as long as the command, and about a hundred
collections walked them before its first model call (15 to 18 ms of the one core it loads on).
None of it is garbage. `pause()` turns the collector off while the command loads; `resume()`
moves everything then alive to the permanent generation (`gc.freeze`), so that later
collections skip it, and turns the collector back on for the work itself, which makes garbage
(aiohttp's and asyncio's reference cycles). Only the process that paused it resumes it: a
program embedding the command keeps its own collector as it was.

A worker's startup leaves about 100,000 objects alive for good (its modules, clients and
pipeline), and a full collection walked them all once every 1,000 pages or so: a 42-47 ms stop
of the recognize and assemble workers' event loops, measured. `settle()` collects once and then
freezes what is alive, so that later full collections walk only what the work itself made.
"""

from __future__ import annotations

import gc

__all__ = ["pause", "resume", "settle"]

_paused = False


def pause() -> None:
    """Turn the collector off until `resume` (nothing if it is off already)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Freeze what is alive and turn the collector back on, if `pause` turned it off."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def settle() -> None:
    """For a long-running process that has loaded and connected everything it runs: collect
    what its startup left behind, then leave what is alive out of later collections."""
    gc.collect()
    gc.freeze()
