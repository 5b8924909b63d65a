"""Direct mode: the core converts in this process, against vLLM or with the local engine.

At most `max_conversions` documents are converted at once; up to `max_queued` more wait for a
slot (their bytes in memory, so the bound is also a memory bound); beyond that, submissions get
503 with `Retry-After`. Rendering runs in the app's executor, never on the event loop.

Engine choice per conversion: `OCRFLUX_ENGINE=vllm` uses vLLM or answers 503 while no vLLM
server is healthy; `local` uses the CPU engine; `auto` uses vLLM while the background health
probe sees one healthy, else the CPU engine (opened on first use, then kept).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from contextlib import AsyncExitStack

from connectors.api.errors import Unavailable
from connectors.api.jobs import Job, JobStore
from connectors.api.metrics import ApiMetrics
from connectors.api.service import Submission
from connectors.api.settings import ApiSettings
from ocrflux.convert import convert_document
from ocrflux.engines import Engine
from ocrflux.engines.vllm import VllmEngine
from ocrflux.errors import OcrfluxError
from ocrflux.vllm_client import VllmClient
from schemas.results import ErrorInfo

__all__ = ["DirectMode"]

_log = logging.getLogger(__name__)


class DirectMode:
    name = "direct"
    relays_callbacks = False

    def __init__(
        self,
        settings: ApiSettings,
        store: JobStore,
        vllm: VllmClient | None,
        executor: Executor,
        metrics: ApiMetrics,
    ) -> None:
        self._settings = settings
        self._store = store
        self._vllm = vllm
        self._executor = executor
        self._metrics = metrics
        self._slots = asyncio.Semaphore(settings.ocrflux_max_conversions)
        self._limit = settings.ocrflux_max_conversions + settings.ocrflux_max_queued
        self._pending = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stack = AsyncExitStack()
        self._local: Engine | None = None
        self._local_lock = asyncio.Lock()
        self._vllm_engine = (
            None
            if vllm is None
            else VllmEngine(
                vllm,
                model=settings.model_name,
                max_tokens=settings.vllm_max_tokens,
                model_max_len=settings.model_max_len,
            )
        )
        self._last_choice = ""

    # --- engine choice --------------------------------------------------------------------

    def vllm_healthy(self) -> bool:
        return self._vllm is not None and any(self._vllm.health().values())

    def current_engine(self, requested: str | None = None) -> str:
        name = requested or self._settings.ocrflux_engine
        if name == "auto":
            name = "vllm" if self.vllm_healthy() else "local"
        if name != self._last_choice:
            _log.info("conversions use the %s engine", name)
            self._last_choice = name
        return name

    def engine_for(self, submission: Submission) -> str:
        name = self.current_engine(submission.options.engine)
        if name == "vllm" and not self.vllm_healthy():
            raise Unavailable(
                "vLLM is not configured or not healthy"
                if self._vllm is not None
                else "vLLM is not configured (OCRFLUX_ENGINE=local)",
                retry_after_s=self._settings.ocrflux_retry_after_s,
            )
        return name

    async def _engine(self, name: str) -> Engine:
        if name == "vllm" and self._vllm_engine is not None:
            return self._vllm_engine
        async with self._local_lock:
            if self._local is None:
                from ocrflux.engines.local import open_local_engine

                self._local = await self._stack.enter_async_context(
                    open_local_engine(self._settings)
                )
            return self._local

    # --- jobs -------------------------------------------------------------------------------

    def saturated(self) -> bool:
        return self._pending >= self._limit

    async def start(self, job: Job, submission: Submission) -> None:
        engine = self.engine_for(submission)
        self._pending += 1
        self._metrics.in_flight.set(self._pending)
        task = asyncio.create_task(self._run(job, submission, engine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job, submission: Submission, engine_name: str) -> None:
        try:
            async with self._slots:
                self._store.running(job)
                engine = await self._engine(engine_name)
                result = await convert_document(
                    submission.data,
                    engine=engine,
                    options=submission.options,
                    source=submission.source,
                    doc_id=job.job_id,
                    page_concurrency=self._settings.page_concurrency,
                    max_bytes=self._settings.max_file_bytes,
                    max_pages=self._settings.max_pages,
                    executor=self._executor,
                    progress=lambda done, total: self._store.running(job, done, total),
                )
            self._store.finish(job, result)
        except OcrfluxError as exc:
            self._store.fail(job, ErrorInfo(code=exc.code, message=exc.message))
        except Exception as exc:  # a bug must fail the job, not leave it running forever
            _log.exception("conversion of job %s crashed", job.job_id)
            self._store.fail(job, ErrorInfo(code="internal", message=repr(exc)))
        finally:
            self._pending -= 1
            self._metrics.in_flight.set(self._pending)

    async def find(self, job_id: str) -> Job | None:
        return self._store.get(job_id)

    async def ready(self) -> dict[str, bool]:
        engine = self._settings.ocrflux_engine
        return {
            "engine": engine != "vllm" or self.vllm_healthy(),
            "capacity": not self.saturated(),
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()
