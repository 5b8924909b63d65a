"""What every submission goes through, whichever mode runs the conversion.

`JobService.admit` decides before the body is read (`admission.py`: 503 when the mode is
saturated or too many upload bytes are in flight). `JobService.submit` then names the job (its
doc_id: content hash + options), joins a job of the same document that is under way or
completed, answers from the result cache when it can, and otherwise hands the job to the mode
(`Mode.start`). Only a `completed` document is ever reused: a `partial` one (pages the model
could not read) or a failed one is converted again. Finished results go to the callbacks, and
completed ones to the cache.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from connectors.api.admission import Admission, Ticket
from connectors.api.cache import LruCache, RedisCache, cache_key, worth_caching
from connectors.api.callbacks import CallbackSender
from connectors.api.jobs import Job, JobStore, SourceKey
from connectors.api.metrics import ApiMetrics
from connectors.api.spool import Spool
from ocrflux.identity import doc_id_for
from schemas.options import ConversionOptions

__all__ = ["JobService", "Mode", "Submission"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """A document received (its spool file, held by the submitting request) and its options."""

    spool: Spool
    options: ConversionOptions
    source_key: SourceKey
    source: str | None
    callback_url: str | None = None
    #: The caller asked for a ZIP of the Markdown and its figures (`output_format=zip`).
    zip: bool = False

    @property
    def sha256(self) -> str:
        return self.spool.sha256


class Mode(Protocol):
    name: str
    #: The mode sends a submission's callback itself (kafka mode: from any instance).
    relays_callbacks: bool

    def engine_for(self, submission: Submission) -> str:
        """The engine that would convert it now (part of the cache key); may raise a 503."""
        ...

    def capacity(self) -> int:
        """How many more jobs it may take now."""
        ...

    def saturated(self) -> bool: ...

    async def start(self, job: Job, submission: Submission) -> None:
        """Start the job; a mode that reads the spool after returning holds it (`hold()`)."""
        ...

    async def find(self, job_id: str) -> Job | None:
        """A job another instance may have accepted (kafka mode catches up first)."""
        ...

    async def ready(self) -> dict[str, bool]: ...

    async def fetch_figure(self, url: str) -> bytes:
        """A figure's PNG from where the conversion stored it (`Figure.ref`)."""
        ...

    async def cancel(self, job: Job) -> None:
        """Stop the job's conversion (kafka mode: the job ends when the workers' `cancelled`
        result comes back)."""
        ...


class JobService:
    def __init__(
        self,
        store: JobStore,
        cache: LruCache | RedisCache,
        callbacks: CallbackSender,
        metrics: ApiMetrics,
        *,
        retry_after_s: int,
        max_upload_bytes_in_flight: int,
    ) -> None:
        self.store = store
        self.cache = cache
        self.callbacks = callbacks
        self.metrics = metrics
        self.mode: Mode | None = None
        self.admission = Admission(
            capacity=lambda: self._mode().capacity(),
            max_upload_bytes=max_upload_bytes_in_flight,
            retry_after_s=retry_after_s,
            on_refusal=metrics.saturated.inc,
        )
        self._puts: set[asyncio.Task[None]] = set()
        store.on_finished(self._finished)

    def attach(self, mode: Mode) -> None:
        self.mode = mode

    def _mode(self) -> Mode:
        if self.mode is None:
            raise RuntimeError("no mode attached")
        return self.mode

    def admit(self, upload_bytes: int = 0) -> Ticket:
        """Before reading a submission's body: its ticket (release it once `submit` returned),
        or `Saturated` (503 + Retry-After)."""
        return self.admission.admit(upload_bytes)

    async def submit(self, submission: Submission) -> Job:
        """The job for an admitted submission: one under way or completed, a cached result,
        or a new one."""
        mode = self._mode()
        if submission.callback_url:
            self.callbacks.check(submission.callback_url)
        job_id = doc_id_for(submission.sha256, submission.options)
        engine = mode.engine_for(submission)
        existing = self.store.get(job_id)
        if existing is None or not existing.reusable:
            existing = await self._from_cache(job_id, engine, submission)
        if existing is not None:
            self._add_callback(existing, submission.callback_url)
            return existing
        job = self.store.add(
            self._new_job(job_id, submission, local_callback=not mode.relays_callbacks)
        )
        await mode.start(job, submission)
        _log.info(
            "job %s started (%s mode, %s engine)",
            job_id,
            mode.name,
            engine,
            extra={"job_id": job_id, "doc_id": job_id},
        )
        return job

    async def find(self, job_id: str) -> Job | None:
        return self.store.get(job_id) or await self._mode().find(job_id)

    async def cancel(self, job: Job) -> None:
        """Cancel a job under way; a finished job keeps its state (the caller says so)."""
        if not job.terminal:
            await self._mode().cancel(job)

    async def _from_cache(self, job_id: str, engine: str, submission: Submission) -> Job | None:
        cached = await self.cache.get(cache_key(job_id, engine))
        if cached is not None and not worth_caching(cached):
            cached = None  # written by an older version, which kept partial results
        self.metrics.cache.labels(result="hit" if cached else "miss").inc()
        if cached is None:
            return None
        job = self.store.add(self._new_job(job_id, submission))
        self.store.finish(job, cached)
        return job

    def _new_job(self, job_id: str, submission: Submission, local_callback: bool = True) -> Job:
        callback = submission.callback_url if local_callback else None
        return Job(
            job_id=job_id,
            output_format=submission.options.output_format,
            chunk_tokens=submission.options.chunk_tokens,
            source_key=submission.source_key,
            source=submission.source,
            file_size=submission.spool.size,
            callback_urls=[callback] if callback else [],
        )

    def _add_callback(self, job: Job, url: str | None) -> None:
        if not url:
            return
        if job.terminal:
            self.callbacks.send(url, job)
        elif url not in job.callback_urls:
            job.callback_urls.append(url)

    def _finished(self, job: Job) -> None:
        status = job.result.status if job.result is not None else job.state
        _log.info(
            "job %s %s%s",
            job.job_id,
            status,
            f": {job.error.code}" if job.error else "",
            extra={"job_id": job.job_id, "doc_id": job.job_id},
        )
        self.metrics.jobs_finished.labels(state=job.state).inc()
        self.callbacks.job_finished(job)
        mode = self.mode
        if job.result is not None and mode is not None and worth_caching(job.result):
            engine = job.result.engine if mode.name == "direct" else mode.name
            key = cache_key(job.job_id, engine)
            task = asyncio.create_task(self.cache.put(key, job.result))
            self._puts.add(task)
            task.add_done_callback(self._puts.discard)

    async def close(self) -> None:
        """Let pending cache writes finish."""
        if self._puts:
            await asyncio.gather(*self._puts, return_exceptions=True)
