"""Direct mode: the core converts in this server, against vLLM or with the local engine.

At most `max_conversions` documents are converted at once, each in a conversion process of its
own (`conversions.py`: the CPU work never runs on, nor takes the GIL from, the event loop); up
to `max_queued` more wait for a slot, holding their spool file (on disk, not in memory); beyond
that, submissions get 503 with `Retry-After` before their body is read (`admission.py`).

Engine choice per conversion: `OCRFLUX_ENGINE=vllm` uses vLLM or answers 503 while no vLLM
server is healthy; `local` uses the CPU engine; `auto` uses vLLM while the background health
probe sees one healthy, else the CPU engine.
"""

from __future__ import annotations

import asyncio
import logging

from connectors.api.conversions import ConversionPool
from connectors.api.errors import Unavailable
from connectors.api.jobs import Job, JobStore
from connectors.api.metrics import ApiMetrics
from connectors.api.service import Submission
from connectors.api.settings import ApiSettings
from ocrflux.errors import FetchFailed, OcrfluxError
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
        metrics: ApiMetrics,
    ) -> None:
        self._settings = settings
        self._store = store
        self._vllm = vllm
        self._metrics = metrics
        self._pool = ConversionPool(settings, settings.ocrflux_max_conversions)
        self._limit = settings.ocrflux_max_conversions + settings.ocrflux_max_queued
        self._pending = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
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

    # --- jobs -------------------------------------------------------------------------------

    def capacity(self) -> int:
        return self._limit - self._pending

    def saturated(self) -> bool:
        return self.capacity() <= 0

    async def start(self, job: Job, submission: Submission) -> None:
        engine = self.engine_for(submission)
        self._pending += 1
        self._metrics.in_flight.set(self._pending)
        submission.spool.hold()  # released by _run, whatever ends it
        task = asyncio.create_task(self._run(job, submission, engine))
        self._tasks[job.job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.job_id, None))

    async def cancel(self, job: Job) -> None:
        """A queued job leaves the queue; a running one's conversion process is stopped."""
        task = self._tasks.get(job.job_id)
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self, job: Job, submission: Submission, engine: str) -> None:
        try:
            result = await self._pool.convert(
                job_id=job.job_id,
                path=str(submission.spool.path),
                options=submission.options,
                source=submission.source,
                engine=engine,
                progress=lambda done, total: self._store.running(job, done, total),
                started=lambda: self._store.running(job),
            )
            self._store.finish(job, result)
        except asyncio.CancelledError:
            self._store.cancel(job)
            raise
        except OcrfluxError as exc:
            self._store.fail(job, ErrorInfo(code=exc.code, message=exc.message))
        except Exception as exc:  # a bug must fail the job, not leave it running forever
            _log.exception("conversion of job %s crashed", job.job_id, extra={"job_id": job.job_id})
            self._store.fail(job, ErrorInfo(code="internal", message=repr(exc)))
        finally:
            submission.spool.release()
            self._pending -= 1
            self._metrics.in_flight.set(self._pending)

    async def find(self, job_id: str) -> Job | None:
        return self._store.get(job_id)

    async def fetch_figure(self, url: str) -> bytes:
        # The conversion processes carry every figure inline: a stored one is not ours.
        raise FetchFailed(f"direct mode does not fetch stored figures ({url[:200]})")

    async def ready(self) -> dict[str, bool]:
        engine = self._settings.ocrflux_engine
        return {
            "engine": engine != "vllm" or self.vllm_healthy(),
            "capacity": not self.saturated(),
        }

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._pool.close()
