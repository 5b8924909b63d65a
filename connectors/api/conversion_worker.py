"""What a conversion process runs (direct mode): one document at a time, read from its spool
file and converted by the core's `convert_document` with the engine the API chose.

Each process keeps one event loop, and the engines it has used, for its whole life: the vLLM
client's connections and the local engine's OCR models are opened on first use and kept.
Progress goes back to the API process on a queue as `(order_id, pages_done, pages_total)`.
Nothing here is imported by the API process's request path; `conversions.py` is its side.
"""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from multiprocessing.queues import SimpleQueue
from pathlib import Path

from ocrflux import logs
from ocrflux.convert import convert_document
from ocrflux.engines import Engine
from ocrflux.settings import CoreSettings
from schemas.options import ConversionOptions

__all__ = ["Order", "convert", "start"]

#: Rendering threads of one conversion process (pages are rendered ahead of recognition).
RENDER_THREADS = 2
#: Conversions are batch work; the API process's event loop must win the CPU against them.
NICENESS = 10

Progress = tuple[int, int, int]


@dataclass(frozen=True)
class Order:
    """One conversion, as sent to a conversion process (pickled)."""

    order_id: int
    job_id: str
    path: str
    options: ConversionOptions
    source: str | None
    engine: str  # "vllm" or "local"


class _Worker:
    def __init__(self, settings: CoreSettings, progress: SimpleQueue[Progress | None]) -> None:
        self.settings = settings
        self.progress = progress
        self.loop = asyncio.new_event_loop()
        self.executor = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="ocrflux-render")
        self.engines: dict[str, Engine] = {}
        self.stack = AsyncExitStack()

    def convert(self, order: Order) -> str:
        return self.loop.run_until_complete(self._convert(order))

    async def _convert(self, order: Order) -> str:
        engine = await self._engine(order.engine)
        data = Path(order.path).read_bytes()
        result = await convert_document(
            data,
            engine=engine,
            options=order.options,
            source=order.source,
            doc_id=order.job_id,
            page_concurrency=self.settings.page_concurrency,
            max_bytes=self.settings.max_file_bytes,
            max_pages=self.settings.max_pages,
            executor=self.executor,
            progress=lambda done, total: self.progress.put((order.order_id, done, total)),
        )
        return result.model_dump_json()

    async def _engine(self, name: str) -> Engine:
        engine = self.engines.get(name)
        if engine is not None:
            return engine
        if name == "vllm":
            from ocrflux.engines.factory import vllm_client
            from ocrflux.engines.vllm import VllmEngine

            client = await self.stack.enter_async_context(vllm_client(self.settings))
            engine = VllmEngine(
                client,
                model=self.settings.model_name,
                max_tokens=self.settings.vllm_max_tokens,
                model_max_len=self.settings.model_max_len,
            )
        else:
            from ocrflux.engines.local import open_local_engine

            engine = await self.stack.enter_async_context(open_local_engine(self.settings))
        self.engines[name] = engine
        return engine


_worker: _Worker | None = None


def start(settings: CoreSettings, progress: SimpleQueue[Progress | None]) -> None:
    """The process's initializer."""
    global _worker
    # Ctrl-C reaches the whole process group: the API process stops us, we do not stop alone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICENESS)
    logs.configure()  # as the API process (which exported its choice to the environment)
    _worker = _Worker(settings, progress)


def convert(order: Order) -> str:
    """Convert one document; its `DocumentResult` as JSON."""
    if _worker is None:
        raise RuntimeError("the conversion process was not started")
    return _worker.convert(order)
