"""Rendering across cores: PDF pages rendered in worker processes (`RenderPool`).

PyMuPDF renders one page at a time per process (`ocrflux.render`), and its calls hold the GIL,
so a process that renders in threads uses one core and stalls its own event loop meanwhile.
A `RenderPool` runs `processes` spawned worker processes instead. Per document, the bytes are
spooled to one temporary file (`open_renderer`); each page task names the file and the page,
and a worker opens the file once and keeps the last few documents it rendered from open, so a
document crosses to a worker once, not once per page. Pages come back in the order they are
awaited (callers keep their page order as before). The processes render as the document was
opened (`open_document`'s text layer table mode, and whether text layers are deferred).

What renders in the caller's executor instead (`PageRenderer` does the same either way):
images (Pillow decodes them in parallel threads already), every page when the pool has no
processes, and documents of fewer than `COLD_START_PAGES` pages (`min_pages`): handing a
document to the processes (spooling it, each process opening it) costs a small document more
time to its first page than it saves (about 0.1 s for 8 pages), and a pool that has not started
spends longer starting a process than rendering them. `start()` warms the pool ahead of work,
as the worker does.

A page that cannot be rendered raises its `InputError` as before. A worker process that dies
(MuPDF crashing on a page, the kernel's OOM killer) breaks the pool: it is replaced and the
pages that were under way are sent again once; a page that breaks it a second time raises
`CorruptInput` naming it (a failed page, like any unrenderable one). Nothing waits forever on a
dead process. The processes are spawned (forking a process with threads can copy a held lock):
a script that starts them must guard its main module (`if __name__ == "__main__":`), as the
`ocrflux` entry points do.

One pool serves a whole process (`shared_pool`): the worker's split role and `ocrflux convert`
take it, of `CoreSettings.render_processes` processes (`OCRFLUX_RENDER_PROCESSES`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, Future
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ocrflux.errors import CorruptInput
from ocrflux.glibc_heap import keep_page_buffers
from ocrflux.pages import OpenedDocument, PoolRule, RenderedPage, TableMode

if TYPE_CHECKING:  # multiprocessing is imported when processes start, not by every convert
    from concurrent.futures import ProcessPoolExecutor

    # PyMuPDF and Pillow load where pages render: `ocrflux convert` may never load them
    # (`ocrflux.head_start`).
    from ocrflux.render import Document

__all__ = ["COLD_START_PAGES", "PageRenderer", "RenderPool", "close_shared_pools", "shared_pool"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Smaller documents render in place: spawning a worker (it imports PyMuPDF) takes about as
#: long as rendering this many pages, and handing over a document delays its first page.
COLD_START_PAGES = 32
#: Renders under way at once in place: the next page rasterises while this one's PNG is
#: compressed (outside PyMuPDF's lock, without the GIL): a 100-page text PDF splits in 0.6 s
#: instead of 1.0 s when a core is free, for one more page in memory.
IN_PLACE_AHEAD = 2
#: Documents a worker process keeps open (the most recent); older ones are closed. More than a
#: split worker renders at once (OCRFLUX_SPLIT_CONCURRENCY): with fewer, pages of interleaved
#: documents reopened their document for every page (split CPU per page doubled).
_KEEP_OPEN = 8
#: How often a worker process checks that the process it renders for still runs.
_PARENT_CHECK_S = 1.0


class PageRenderer:
    """The pages of one opened document, rendered in the pool or in the caller's executor.

    `ahead` is how many renders are worth having under way at once: the pool's processes plus
    one, so that none waits between pages, or `IN_PLACE_AHEAD`. Pages render as `document` was
    opened (`Document.text_layer_tables`, `Document.defer_text_layer`), in the processes too.
    Close it to remove the spooled file."""

    def __init__(
        self,
        document: OpenedDocument,
        *,
        pool: RenderPool | None = None,
        spool: Path | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.document = document
        self._pool = pool if spool is not None else None
        self._spool = spool
        self._executor = executor
        self.ahead = self._pool.processes + 1 if self._pool is not None else IN_PLACE_AHEAD
        self.in_pool = self._pool is not None

    @property
    def spooled(self) -> Path | None:
        """The file the render processes read the document from (None in place or closed)."""
        return self._spool

    async def render(self, index: int) -> RenderedPage:
        """One page by 0-based index (`Document.render_page`'s errors)."""
        if self._pool is None or self._spool is None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self.document.render_page, index)
        document = self.document
        mode = (document.text_layer_tables, document.defer_text_layer)
        task = (str(self._spool), index, *mode, document.page_count)
        try:
            return await self._pool.run(_render_in_worker, *task)
        except BrokenExecutor:
            _log.warning("a render process died; page %d is rendered again once", index + 1)
        try:
            return await self._pool.run(_render_in_worker, *task)
        except BrokenExecutor as exc:
            raise CorruptInput(
                f"page {index + 1} of {self.document.page_count}: the render process died "
                f"twice while rendering it"
            ) from exc

    async def text_layer(self, index: int) -> str | None:
        """The text layer of a page rendered without it (`Document.text_layer`), taken from the
        document in the caller's executor: one page's worth, not worth a process hop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.document.text_layer, index)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.unlink(missing_ok=True)
            self._spool = None


class RenderPool:
    """`processes` render processes (0: none, everything renders in place), used for PDFs of
    `min_pages` pages or more and started by the first of them, or by `start()`."""

    def __init__(self, processes: int, *, min_pages: int = COLD_START_PAGES) -> None:
        if processes < 0:
            raise ValueError(f"processes must be >= 0, got {processes}")
        self.processes = processes
        self.min_pages = min_pages
        self._executor: ProcessPoolExecutor | None = None
        self._spool_dir: Path | None = None
        self._remove_spool_dir: weakref.finalize[..., object] | None = None  # also at exit
        self._lock = threading.Lock()  # renderers may be opened from executor threads

    @property
    def started(self) -> bool:
        return self._executor is not None

    async def start(self) -> None:
        """Start the processes now (each imports the renderer), not when a document needs them."""
        if self.processes == 0:
            return
        executor = self._current()
        started = [executor.submit(os.getpid) for _ in range(self.processes)]
        await asyncio.gather(*map(asyncio.wrap_future, started))

    async def open_renderer(
        self,
        document: OpenedDocument,
        data: bytes,
        *,
        pages: int,
        executor: Executor | None = None,
    ) -> PageRenderer:
        """A renderer for `document` (opened from `data`) of which `pages` pages will be
        rendered; `executor` runs what renders in place."""
        if not self.rule(document.kind, pages):
            return PageRenderer(document, executor=executor)
        loop = asyncio.get_running_loop()
        spool = await loop.run_in_executor(executor, self._spool, data)
        return PageRenderer(document, pool=self, spool=spool, executor=executor)

    @property
    def rule(self) -> PoolRule:
        """Which documents render in the processes (else in place): `rule(kind, pages)`."""
        return PoolRule(self.processes, self.min_pages)

    async def run(self, function: Callable[..., _T], *args: object) -> _T:
        """`function(*args)` in a worker process; a broken pool is replaced and re-raised."""
        executor = self._current()
        try:
            future: Future[_T] = executor.submit(function, *args)
            return await asyncio.wrap_future(future)
        except BrokenExecutor:
            self._replace(executor)
            raise

    def pids(self) -> list[int]:
        """The worker processes' PIDs (for tests and diagnostics)."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return sorted(processes)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
            remove, self._remove_spool_dir = self._remove_spool_dir, None
            self._spool_dir = None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if remove is not None:
            remove()

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                _log.info("starting %d render processes", self.processes)
                self._executor = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(os.getpid(),),
                )
            return self._executor

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is not broken:
                return  # another caller replaced it already
            self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)
        _log.warning("a render process died: the render pool is restarted")

    def _spool(self, data: bytes) -> Path:
        with self._lock:
            if self._spool_dir is None:
                self._spool_dir = Path(tempfile.mkdtemp(prefix="ocrflux-render-"))
                self._remove_spool_dir = weakref.finalize(
                    self, shutil.rmtree, self._spool_dir, ignore_errors=True
                )
            folder = self._spool_dir
        # Never a name used before: workers keep documents open by the name of their file.
        path = folder / f"{uuid.uuid4().hex}.pdf"
        with path.open("xb") as file:
            file.write(data)
        return path


_shared: dict[int, RenderPool] = {}
_shared_lock = threading.Lock()


def shared_pool(processes: int) -> RenderPool:
    """This process's render pool of `processes` processes, made on first use. Its processes
    live as long as this process (ended with it), so that every user in it shares them."""
    with _shared_lock:
        pool = _shared.get(processes)
        if pool is None:
            pool = _shared[processes] = RenderPool(processes)
        return pool


def close_shared_pools() -> None:
    """End the processes of every `shared_pool` (a process about to `os._exit` must)."""
    with _shared_lock:
        pools = list(_shared.values())
        _shared.clear()
    for pool in pools:
        pool.close()


# ---- in the worker processes ---------------------------------------------------------------

_open: OrderedDict[str, Document] = OrderedDict()


def _init_worker(parent: int) -> None:
    # Ctrl-C reaches the whole process group: the parent decides what stops, not the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_page_buffers()
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker once `parent` has gone (killed, or ended by `os._exit`): an orphaned
    worker would otherwise wait for tasks forever."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_S)
    os._exit(0)


def _render_in_worker(
    path: str, index: int, tables: TableMode, defer_text_layer: bool, page_count: int
) -> RenderedPage:
    from ocrflux.render import open_document

    document = _open.get(path)
    if document is None:
        data = Path(path).read_bytes()
        document = open_document(
            data,
            max_bytes=len(data),
            max_pages=page_count,
            text_layer_tables=tables,
            defer_text_layer=defer_text_layer,
        )
        _open[path] = document
        while len(_open) > _KEEP_OPEN:
            _open.popitem(last=False)[1].close()
    else:
        _open.move_to_end(path)
    return document.render_page(index)
