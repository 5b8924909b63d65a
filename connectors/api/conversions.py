"""Direct mode's conversions run in child processes, never in the API process.

Rendering and decoding are CPU work, and PyMuPDF holds the GIL while it rasterises a page (a
complex page takes seconds): in a thread of the API process that stalls the event loop, and
`/health` with it. So each conversion runs in a process of its own (`conversion_worker.py`),
started on first use and kept, at a lower CPU priority than the API process. `size` processes:
one conversion each at a time. They fork from a `forkserver` (forking the API process itself,
which has threads, is unsafe) that has imported the core once: a process starts in milliseconds,
and the imported modules' memory is shared (about 50 MB of each process's own, not 200).

Each process is its own single-worker pool: a process that dies (MuPDF crashing on a hostile
PDF, the OOM killer) fails only the conversion it was running (`ConversionCrashed`) and is
replaced; so is the process of a conversion that is cancelled (the task awaiting `convert`).
Progress comes back on one queue, read by a thread that hands it to the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess

from connectors.api import conversion_worker
from connectors.api.conversion_worker import Order, Progress
from ocrflux.errors import OcrfluxError
from ocrflux.settings import CoreSettings
from schemas.options import ConversionOptions
from schemas.results import DocumentResult

__all__ = ["ConversionCrashed", "ConversionPool"]

_log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
#: How long a conversion process may take to exit when the app stops, before it is killed.
STOP_TIMEOUT_S = 5.0


class ConversionCrashed(OcrfluxError):
    """The process converting the document died (a crash in a native library, the OOM killer)."""

    code = "internal"
    http_status = 500


class ConversionPool:
    def __init__(self, settings: CoreSettings, size: int) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("forkserver")
        # The fork server imports the core once, the renderer with it (the driver itself
        # imports it only when it opens a document); each conversion process forks from it.
        self._context.set_forkserver_preload([conversion_worker.__name__, "ocrflux.render"])
        self._progress: multiprocessing.SimpleQueue[Progress | None] = self._context.SimpleQueue()
        self._idle: asyncio.Queue[ProcessPoolExecutor] = asyncio.Queue()
        self._pools: list[ProcessPoolExecutor] = []
        for _ in range(size):
            self._idle.put_nowait(self._new_pool())
        self._listeners: dict[int, ProgressCallback] = {}
        self._order_ids = itertools.count(1)
        self._loop = asyncio.get_running_loop()
        self._reader = threading.Thread(
            target=self._read_progress, name="ocrflux-api-progress", daemon=True
        )
        self._reader.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=self._context,
            initializer=conversion_worker.start,
            initargs=(self._settings, self._progress),
        )
        self._pools.append(pool)
        return pool

    async def convert(
        self,
        *,
        job_id: str,
        path: str,
        options: ConversionOptions,
        source: str | None,
        engine: str,
        started: Callable[[], None],
        progress: ProgressCallback,
    ) -> DocumentResult:
        """Convert the document in `path` in a conversion process: waits for a free one, then
        calls `started()`, and `progress(pages_done, pages_total)` as pages are done."""
        order = Order(next(self._order_ids), job_id, path, options, source, engine)
        pool = await self._idle.get()
        try:
            started()
            self._listeners[order.order_id] = progress
            # Off the loop: a pool starts its process in `submit`, and the first start waits
            # for the fork server to import the core (seconds).
            submitted = await asyncio.to_thread(pool.submit, conversion_worker.convert, order)
            raw = await asyncio.wrap_future(submitted)
        except BrokenProcessPool as exc:
            self._pools.remove(pool)
            pool.shutdown(wait=False)
            pool = self._new_pool()
            raise ConversionCrashed(
                "the conversion process stopped while converting this document"
            ) from exc
        except asyncio.CancelledError:
            # The job was cancelled (DELETE /v1/jobs/{id}): its process stops converting now,
            # and a fresh one takes its place.
            self._pools.remove(pool)
            processes = _processes(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            reaping = self._loop.run_in_executor(None, _reap, processes)
            reaping.add_done_callback(lambda _: None)
            pool = self._new_pool()
            raise
        finally:
            self._listeners.pop(order.order_id, None)
            self._idle.put_nowait(pool)
        return DocumentResult.model_validate_json(raw)

    def _read_progress(self) -> None:
        while (item := self._progress.get()) is not None:
            try:
                self._loop.call_soon_threadsafe(self._dispatch, item)
            except RuntimeError:  # the loop is closed: the app is gone
                return

    def _dispatch(self, item: Progress) -> None:
        order_id, done, total = item
        listener = self._listeners.get(order_id)
        if listener is not None:
            listener(done, total)

    async def close(self) -> None:
        """Stop every conversion process (conversions under way are abandoned)."""
        processes = [process for pool in self._pools for process in _processes(pool)]
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        await asyncio.to_thread(_reap, processes)
        self._progress.put(None)
        await asyncio.to_thread(self._reader.join, STOP_TIMEOUT_S)
        self._progress.close()


def _processes(pool: ProcessPoolExecutor) -> list[BaseProcess]:
    # No public way to reach a pool's processes before Python 3.14 (`terminate_workers`).
    return list((getattr(pool, "_processes", None) or {}).values())


def _reap(processes: list[BaseProcess]) -> None:
    for process in processes:
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            _log.warning("conversion process %s did not stop; killing it", process.pid)
            process.kill()
            process.join(STOP_TIMEOUT_S)
