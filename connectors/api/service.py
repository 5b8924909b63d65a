"""What every submission goes through, whichever mode runs the conversion.

`JobService.submit` names the job (its doc_id: content hash + options), joins a job of the same
document already under way, answers from the result cache when it can, refuses with 503 when
the mode is saturated, and otherwise hands the job to the mode (`Mode.start`). Finished results
go to the cache and to the job's callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from connectors.api.cache import LruCache, RedisCache, cache_key
from connectors.api.callbacks import CallbackSender
from connectors.api.errors import Saturated
from connectors.api.jobs import Job, JobStore, SourceKey
from connectors.api.metrics import ApiMetrics
from ocrflux.identity import content_digest, doc_id_for
from schemas.options import ConversionOptions

__all__ = ["JobService", "Mode", "Submission"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    data: bytes
    options: ConversionOptions
    source_key: SourceKey
    source: str | None
    callback_url: str | None = None

    @property
    def sha256(self) -> str:
        return content_digest(self.data)


class Mode(Protocol):
    name: str
    #: The mode sends a submission's callback itself (kafka mode: from any instance).
    relays_callbacks: bool

    def engine_for(self, submission: Submission) -> str:
        """The engine that would convert it now (part of the cache key); may raise a 503."""
        ...

    def saturated(self) -> bool: ...

    async def start(self, job: Job, submission: Submission) -> None: ...

    async def find(self, job_id: str) -> Job | None:
        """A job another instance may have accepted (kafka mode catches up first)."""
        ...

    async def ready(self) -> dict[str, bool]: ...


class JobService:
    def __init__(
        self,
        store: JobStore,
        cache: LruCache | RedisCache,
        callbacks: CallbackSender,
        metrics: ApiMetrics,
        retry_after_s: int,
    ) -> None:
        self.store = store
        self.cache = cache
        self.callbacks = callbacks
        self.metrics = metrics
        self.retry_after_s = retry_after_s
        self.mode: Mode | None = None
        self._puts: set[asyncio.Task[None]] = set()
        store.on_finished(self._finished)

    def attach(self, mode: Mode) -> None:
        self.mode = mode

    def _mode(self) -> Mode:
        if self.mode is None:
            raise RuntimeError("no mode attached")
        return self.mode

    async def submit(self, submission: Submission) -> Job:
        mode = self._mode()
        if submission.callback_url:
            self.callbacks.check(submission.callback_url)
        job_id = doc_id_for(submission.sha256, submission.options)
        engine = mode.engine_for(submission)
        existing = self.store.get(job_id)
        if existing is None or existing.state == "failed":
            existing = await self._from_cache(job_id, engine, submission)
        if existing is not None and existing.state != "failed":
            self._add_callback(existing, submission.callback_url)
            return existing
        if mode.saturated():
            self.metrics.saturated.inc()
            raise Saturated("the conversion pipeline is saturated; retry later", self.retry_after_s)
        job = self.store.add(
            self._new_job(job_id, submission, local_callback=not mode.relays_callbacks)
        )
        await mode.start(job, submission)
        return job

    async def find(self, job_id: str) -> Job | None:
        return self.store.get(job_id) or await self._mode().find(job_id)

    async def _from_cache(self, job_id: str, engine: str, submission: Submission) -> Job | None:
        cached = await self.cache.get(cache_key(job_id, engine))
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
            source_key=submission.source_key,
            source=submission.source,
            file_size=len(submission.data),
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
        self.metrics.jobs_finished.labels(state=job.state).inc()
        self.callbacks.job_finished(job)
        mode = self.mode
        if job.result is not None and mode is not None and job.result.status != "failed":
            engine = job.result.engine if mode.name == "direct" else mode.name
            key = cache_key(job.job_id, engine)
            task = asyncio.create_task(self.cache.put(key, job.result))
            self._puts.add(task)
            task.add_done_callback(self._puts.discard)

    async def close(self) -> None:
        """Let pending cache writes finish."""
        if self._puts:
            await asyncio.gather(*self._puts, return_exceptions=True)
