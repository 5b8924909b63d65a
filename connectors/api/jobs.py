"""Jobs: the state machine of one conversion, and the store every handler reads.

    queued ──> running ──> completed      (a result: completed or partial document)
       │          ├──────> failed         (a failed result, or an error before any result)
       │          └──────> cancelled      (DELETE /v1/jobs/{id}, `ocrflux cancel`)
       └─────────────────> completed | failed | cancelled

A terminal job stays terminal. A later submission of the same document (same `job_id`, since
`job_id` is the doc_id: content hash + options) joins the job while it runs or when its
document completed (`Job.reusable`); a job that failed or was cancelled, or whose document is
only `partial`, is replaced by a new one: degraded results are never served as final. In kafka
mode the store is fed by the progress and results topics, so any instance knows every job.

Memory is bounded: at most `retained` finished jobs are kept (oldest dropped first); jobs in
flight are bounded by the modes' own limits.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from connectors.api.models import (
    FAILED_TO_PARSE,
    ConvertMetadata,
    ConvertResponse,
    JobState,
    JobStatus,
)
from ocrflux.result_formats import structured
from schemas.chunks import DocumentChunks
from schemas.options import OutputFormat
from schemas.results import DocumentResult, ErrorInfo

__all__ = ["CANCELLED", "Job", "JobStore", "SourceKey", "convert_response"]

SourceKey = Literal["filename", "url"]
#: The error of a cancelled job (the workers' `cancelled` result carries the same).
CANCELLED = ErrorInfo(code="cancelled", message="cancelled at the caller's request")
TERMINAL: frozenset[JobState] = frozenset({"completed", "failed", "cancelled"})
#: The most jobs one `GET /v1/jobs` answer lists.
MAX_LIST_LIMIT = 500


@dataclass(eq=False)
class Job:
    job_id: str
    output_format: OutputFormat = "markdown"
    chunk_tokens: int | None = None
    source_key: SourceKey = "filename"
    source: str | None = None
    file_size: int = 0
    callback_urls: list[str] = field(default_factory=list)
    state: JobState = "queued"
    pages_done: int = 0
    pages_total: int = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    result: DocumentResult | None = None
    error: ErrorInfo | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _answer: ConvertResponse | DocumentResult | DocumentChunks | None = field(
        default=None, repr=False
    )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def reusable(self) -> bool:
        """Whether a new submission of the same document may be answered by this job: while it
        is under way, or once its document completed (not partial, not failed)."""
        if not self.terminal:
            return True
        return self.result is not None and self.result.status == "completed"

    def status(self) -> JobStatus:
        response = None
        if self.state == "completed" and self.result is not None:
            response = self._answer = self._answer or self._render(self.result)
        return JobStatus(
            job_id=self.job_id,
            status=self.state,
            pages_done=self.pages_done,
            pages_total=self.pages_total,
            created_at=self.created_at,
            updated_at=self.updated_at,
            result=response,
            error=self.error if self.state in ("failed", "cancelled") else None,
        )

    def _render(self, result: DocumentResult) -> ConvertResponse | DocumentResult | DocumentChunks:
        """The result in the job's format: json and chunks as `ocrflux.result_formats` makes
        them for every surface, markdown and text as the guide's answer. Made once: a job's
        result does not change, and chunking a long document is not free."""
        answer = structured(result, self.output_format, self.chunk_tokens)
        if answer is not None:
            return answer
        return convert_response(
            result, source_key=self.source_key, source=self.source, file_size=self.file_size
        )

    def _touch(self) -> None:
        self.updated_at = time.time()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


FinishedHook = Callable[[Job], None]


class JobStore:
    """Every job this instance knows, with waiting and change notification."""

    def __init__(self, retained: int) -> None:
        self._retained = retained
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._finished_hooks: list[FinishedHook] = []

    def __len__(self) -> int:
        return len(self._jobs)

    def on_finished(self, hook: FinishedHook) -> None:
        self._finished_hooks.append(hook)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def counts(self) -> dict[JobState, int]:
        counts: dict[JobState, int] = {
            "queued": 0,
            "running": 0,
            "completed": 0,
            "failed": 0,
            "cancelled": 0,
        }
        for job in self._jobs.values():
            counts[job.state] += 1
        return counts

    def listing(
        self, state: JobState | None = None, *, limit: int, offset: int = 0
    ) -> tuple[list[Job], int | None]:
        """Jobs newest first (by creation), only those in `state` if given: the page at
        `offset`, and the offset of the next page (None on the last)."""
        jobs = [j for j in self._jobs.values() if state is None or j.state == state]
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        page = jobs[offset : offset + limit]
        return page, offset + limit if offset + limit < len(jobs) else None

    def in_flight(self) -> int:
        return sum(1 for job in self._jobs.values() if not job.terminal)

    def add(self, job: Job) -> Job:
        """Store a new job, replacing one of the same id that is not `reusable`; a reusable one
        is returned instead (the submission joins it)."""
        existing = self._jobs.get(job.job_id)
        if existing is not None and existing.reusable:
            return existing
        self._jobs[job.job_id] = job
        self._jobs.move_to_end(job.job_id)
        self._evict()
        if existing is not None:
            existing._touch()
        return job

    # --- transitions --------------------------------------------------------------------------

    def running(self, job: Job, pages_done: int = 0, pages_total: int = 0) -> None:
        if job.terminal:
            return
        job.state = "running"
        job.pages_done = pages_done
        job.pages_total = max(pages_total, job.pages_total)
        job._touch()

    def finish(self, job: Job, result: DocumentResult) -> None:
        """The job's result: a failed document fails the job, anything else completes it."""
        if job.terminal:
            return
        job.result = result
        if result.status in ("failed", "cancelled"):
            job.state = result.status
            job.error = result.error or ErrorInfo(code="internal", message="conversion failed")
        else:
            job.state = "completed"
            job.pages_total = job.pages_total or len(result.page_texts)
            job.pages_done = job.pages_total
        self._finished(job)

    def fail(self, job: Job, error: ErrorInfo) -> None:
        if job.terminal:
            return
        job.state = "failed"
        job.error = error
        self._finished(job)

    def cancel(self, job: Job) -> None:
        if job.terminal:
            return
        job.state = "cancelled"
        job.error = CANCELLED
        self._finished(job)

    def _finished(self, job: Job) -> None:
        job._touch()
        self._jobs.move_to_end(job.job_id)
        self._evict()
        for hook in self._finished_hooks:
            hook(job)

    def _evict(self) -> None:
        finished = [key for key, job in self._jobs.items() if job.terminal]
        for key in finished[: max(0, len(finished) - self._retained)]:
            del self._jobs[key]

    # --- waiting ------------------------------------------------------------------------------

    async def wait(self, job: Job, timeout_s: float) -> bool:
        """Until the job is terminal (True) or `timeout_s` passes (False)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not job.terminal:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(job._changed.wait(), remaining)
            except TimeoutError:
                return job.terminal
        return True

    async def changes(self, job: Job, heartbeat_s: float) -> AsyncIterator[JobStatus | None]:
        """The job's status now and after every change until it is terminal; None when nothing
        changed for `heartbeat_s` (so a stream can send a keep-alive)."""
        while True:
            changed = job._changed
            yield job.status()
            if job.terminal:
                return
            try:
                await asyncio.wait_for(changed.wait(), heartbeat_s)
            except TimeoutError:
                yield None


def convert_response(
    result: DocumentResult, *, source_key: SourceKey, source: str | None, file_size: int
) -> ConvertResponse:
    """The guide's answer for a result: `success` for a completed or partial document."""
    metadata = ConvertMetadata(
        **{source_key: source},
        file_size=file_size,
        pages_processed=len(result.page_texts),
        fallback_pages=result.fallback_pages,
    )
    if result.status in ("failed", "cancelled"):
        error = result.error
        return ConvertResponse(
            status="error",
            format=result.output_format,
            content=None,
            error=FAILED_TO_PARSE,
            error_code=error.code if error else "internal",
            error_detail=error.message if error else None,
            warnings=result.warnings,
            metadata=metadata,
        )
    return ConvertResponse(
        status="success",
        format=result.output_format,
        content=result.content,
        error=None,
        warnings=result.warnings,
        metadata=metadata,
    )
