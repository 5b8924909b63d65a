"""The assemble agent's handler: applies page-results records to the assembler's state, runs
merge jobs outside the agent loop, emits each result once it is complete."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from functools import partial
from typing import Any

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from schemas.records import (
    PageDone,
    PairsDetected,
    ProgressEvent,
    ResultRecord,
    TableMerged,
    decode,
    encode,
)
from streams.assembly import Assembler, DetectJob, Job, Step
from streams.engine_pool import EnginePool
from streams.metrics import WorkerMetrics
from streams.outbox import Blobs, Outbox
from streams.result_reader import ResultReader
from streams.runtime.table import ChangelogTable
from streams.settings import WorkerSettings

_log = logging.getLogger(__name__)


class AssembleHandler:
    """Runs the assembler's jobs outside the agent loop; their outcomes come back as records."""

    def __init__(
        self,
        settings: WorkerSettings,
        assembler: Assembler,
        table: ChangelogTable,
        outbox: Outbox,
        engines: EnginePool,
        blobs: Blobs,
        metrics: WorkerMetrics,
        results: ResultReader,
    ) -> None:
        self.settings = settings
        self.results = results
        self.assembler = assembler
        self.table = table
        self.outbox = outbox
        self.engines = engines
        self.blobs = blobs
        self.metrics = metrics
        self.inflight: dict[tuple[str, ...], asyncio.Task[None]] = {}
        self.slots = asyncio.Semaphore(settings.ocrflux_merge_concurrency)

    async def handle(self, message: ConsumerRecord[bytes, bytes]) -> None:
        names = self.outbox.names
        key, value = message.key, message.value or b""
        try:
            record = decode(value)
            if not isinstance(record, PageDone | PairsDetected | TableMerged):
                raise ValueError(f"unexpected {type(record).__name__} on page-results")
        except (ValidationError, ValueError) as exc:
            await self.outbox.dlq(
                topic=names.page_results,
                key=key,
                value=value,
                stage="assemble",
                code="invalid_record",
                message=str(exc)[:500],
                exc=exc,
            )
            return
        self.table.current_partition = message.partition
        at = message.timestamp / 1000
        step = self.assembler.apply(record, partition=message.partition, at=at)
        if step.resend is not None:
            if await self._resend(step):
                return
            # The old result is gone: this submission is assembled anew from its pages, this
            # page first (`_finished_already` asks for a resend on a submission's first page).
            self.assembler.forget(record.doc_id)
            step = self.assembler.apply(record, partition=message.partition, at=at)
        await self.table.sync()
        self.launch(step.jobs)
        if step.result is not None:
            delivery = await self._emit(step.result)
            done = await delivery  # the result is durable before the document is marked done
            self.assembler.mark_emitted(step, (done.partition, done.offset))
            await self.table.sync()
        await self.outbox.progress(step.progress)

    async def _resend(self, step: Step) -> bool:
        """Answer a new submission of a finished document with its result, read back from the
        results topic (with the new submission's metadata); False when it is not there."""
        resend = step.resend
        assert resend is not None
        names = self.outbox.names
        old = await self.results.read(resend.doc_id, resend.partition, resend.offset)
        if old is None:
            _log.warning(
                "the result of %s is no longer at %s[%d]@%d; converting it again",
                resend.doc_id,
                names.results,
                resend.partition,
                resend.offset,
            )
            return False
        info = resend.info
        record = old.model_copy(update={"metadata": info.metadata, "reply_to": info.reply_to})
        done = await (await self.outbox.send(names.results, resend.doc_id, record))
        self.assembler.mark_resent(step, (done.partition, done.offset))
        await self.table.sync()
        _log.info("answered a new submission of %s with its result", resend.doc_id)
        total = info.pages_total
        event = ProgressEvent(
            doc_id=resend.doc_id, stage=record.status, pages_done=total, pages_total=total
        )
        await self.outbox.progress(event)
        return True

    async def _emit(self, result: ResultRecord) -> Awaitable[Any]:
        names = self.outbox.names
        encoded = encode(result)
        if len(encoded) > self.settings.result_max_bytes:
            # Claim check for results too: the full JSON goes to the blob store.
            url = await self.blobs.put(encoded, f"results/{result.doc_id}.json")
            result = result.model_copy(
                update={"document_text": "", "content": "", "page_texts": {}, "result_ref": url}
            )
        delivery = await self.outbox.send(names.results, result.doc_id, result)
        self.metrics.document_done(result)
        return delivery

    def launch(self, jobs: list[Job]) -> int:
        launched = 0
        for job in jobs:
            if job.key not in self.inflight:
                task = asyncio.create_task(self._run(job))
                self.inflight[job.key] = task
                task.add_done_callback(partial(self._forget, job.key))
                launched += 1
        return launched

    def _forget(self, key: tuple[str, ...], _task: asyncio.Task[None]) -> None:
        self.inflight.pop(key, None)

    def sweep(self) -> None:
        """Relaunch jobs of owned, unfinished documents that nothing here is working on."""
        documents = launched = 0
        for state in self.assembler.documents():  # the table holds owned partitions only
            relaunched = self.launch(self.assembler.pending_jobs(state.doc_id))
            documents += relaunched > 0
            launched += relaunched
        if launched:
            _log.info("relaunched %d merge job(s) of %d document(s)", launched, documents)

    async def _run(self, job: Job) -> None:
        names = self.outbox.names
        try:
            async with self.slots:
                engine = await self.engines.get(job.engine or None)
                record: PairsDetected | TableMerged
                if isinstance(job, DetectJob):
                    self.metrics.merge_jobs.labels("detect").inc()
                    found = await engine.detect_merges(
                        job.previous, job.following, max_attempts=job.max_attempts
                    )
                    record = PairsDetected(
                        doc_id=job.doc_id,
                        first=job.first,
                        pairs=found.value or [],
                        usage=found.usage,
                    )
                else:
                    self.metrics.merge_jobs.labels("table").inc()
                    merged = await engine.merge_tables(
                        job.table1, job.table2, max_attempts=job.max_attempts
                    )
                    record = TableMerged(
                        doc_id=job.doc_id,
                        page=job.page,
                        i=job.i,
                        j=job.j,
                        html=merged.value,
                        usage=merged.usage,
                    )
            await self.outbox.send(names.page_results, job.doc_id, record)
        except asyncio.CancelledError:
            raise
        except Exception:  # the sweeper retries; a job must not take the worker down
            _log.exception("merge job %s failed; it will be relaunched", job.key)
            self.metrics.errors.labels("assemble", "merge_job").inc()
