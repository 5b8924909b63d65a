"""The assemble agent's handler: applies page-results records to the assembler's state, runs
merge jobs outside the agent loop, emits each result once it is complete."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from aiokafka import ConsumerRecord
from aiokafka.structs import RecordMetadata
from pydantic import ValidationError

from ocrflux.engines.base import Engine
from schemas.records import (
    DocumentCancelled,
    PageDone,
    PairsDetected,
    ProgressEvent,
    ResultRecord,
    TableMerged,
    decode,
    encode,
)
from schemas.results import ErrorInfo
from streams.assembly import Assembler, DetectJob, Job, Step, outcome_key
from streams.engine_pool import EnginePool
from streams.figure_store import FigureStore
from streams.metrics import WorkerMetrics
from streams.model_gate import ModelGate
from streams.outbox import Blobs, Outbox
from streams.result_reader import ResultReader
from streams.runtime.heap import release_free_heap
from streams.runtime.table import ChangelogTable
from streams.settings import WorkerSettings

_log = logging.getLogger(__name__)

#: Records between two `release_free_heap` calls (under 0.1 ms each). While a large document
#: comes in, the blocks freed between its long-lived entries stay resident until trimmed: with
#: this and the single encoding of results, the assembler's peak on a 1,000-page document fell
#: from 120/127/127 to 120/122/122 MB (2026-12-03).
TRIM_EVERY_RECORDS = 50


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
        gate: ModelGate,
        figures: FigureStore,
    ) -> None:
        self.settings = settings
        self.results = results
        self.figures = figures
        self.assembler = assembler
        self.table = table
        self.outbox = outbox
        self.engines = engines
        self.blobs = blobs
        self.metrics = metrics
        self.gate = gate
        self.inflight: dict[tuple[str, ...], asyncio.Task[bool]] = {}
        self.slots = asyncio.Semaphore(settings.ocrflux_merge_concurrency)
        self._handled = 0

    async def handle(self, message: ConsumerRecord[bytes, bytes]) -> None:
        names = self.outbox.names
        key, value = message.key, message.value or b""
        try:
            record = decode(value)
            if not isinstance(record, PageDone | PairsDetected | TableMerged | DocumentCancelled):
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
        if isinstance(record, PairsDetected | TableMerged):
            self.inflight.pop(outcome_key(record), None)  # the job's answer is here
        self.table.current_partition = message.partition
        at = message.timestamp / 1000
        step = self.assembler.apply(record, partition=message.partition, at=at)
        if step.restart or (step.resend is not None and not await self._resend(step)):
            # A degraded result is not final, and a result no longer on the topic cannot be
            # sent again: this submission is assembled anew from its pages, this page first.
            self.assembler.forget(record.doc_id)
            step = self.assembler.apply(record, partition=message.partition, at=at)
        await self.table.sync()
        self.launch(step.jobs)
        await self._finish(step)
        self._handled += 1
        if self._handled % TRIM_EVERY_RECORDS == 0:
            asyncio.get_running_loop().call_soon(release_free_heap)

    async def answer_crash(self, message: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
        """A record that made the handler raise (a bug): its document ends `failed`, and the
        record goes to the dlq."""
        names = self.outbox.names
        doc_id = _doc_id_of(message)
        _log.error(
            "page-results record %s[%d]@%d raised; its document fails",
            message.topic,
            message.partition,
            message.offset,
            exc_info=exc,
            extra={"doc_id": doc_id},
        )
        self.metrics.errors.labels("assemble", "internal").inc()
        await self.outbox.dlq(
            topic=names.page_results,
            key=message.key,
            value=message.value or b"",
            stage="assemble",
            code="internal",
            message=f"{type(exc).__name__}: {exc}"[:500],
            exc=exc,
            doc_id=doc_id,
        )
        if doc_id is None:
            return
        self.table.current_partition = message.partition
        error = ErrorInfo(code="internal", message=f"assembling failed: {exc!r}"[:500])
        await self._finish(self.assembler.fail(doc_id, error))

    async def _finish(self, step: Step) -> None:
        """Emit the step's result, if any (durable before the document is marked done)."""
        if step.result is not None:
            result = step.result
            if step.info is not None and result.figures:
                result = await self.figures.attach(result, step.info)
            done = await self._emit(result)
            self.assembler.mark_emitted(step, (done.partition, done.offset))
            await self.table.sync()
            # Once this record's objects are gone: the document's state was freed just now.
            asyncio.get_running_loop().call_soon(release_free_heap)
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
                extra={"doc_id": resend.doc_id},
            )
            return False
        info = resend.info
        record = old.model_copy(update={"metadata": info.metadata, "reply_to": info.reply_to})
        done = await self.outbox.deliver(names.results, resend.doc_id, record)
        self.assembler.mark_resent(step, (done.partition, done.offset))
        await self.table.sync()
        _log.info(
            "answered a new submission of %s with its result",
            resend.doc_id,
            extra={"doc_id": resend.doc_id},
        )
        total = info.pages_total
        event = ProgressEvent(
            doc_id=resend.doc_id, stage=record.status, pages_done=total, pages_total=total
        )
        await self.outbox.progress(event)
        return True

    async def _emit(self, result: ResultRecord) -> RecordMetadata:
        names = self.outbox.names
        encoded = encode(result)
        if len(encoded) > self.settings.result_max_bytes:
            # Claim check for results too: the full JSON goes to the blob store.
            url = await self.blobs.put(encoded, f"results/{result.doc_id}.json")
            # Everything that grows with the document stays behind the reference.
            emptied = {"document_text": "", "content": "", "page_texts": {}, "pages": []}
            result = result.model_copy(
                update={**emptied, "merges": [], "blocks": [], "result_ref": url}
            )
            encoded = encode(result)
        # Encoded once: a large result's JSON is several MB, and encoding takes twice that.
        delivered = await self.outbox.deliver(names.results, result.doc_id, encoded)
        self.metrics.document_done(result)
        _log.info(
            "assembled %s: %s, %d page(s)%s",
            result.doc_id,
            result.status,
            result.num_pages,
            f", error {result.error.code}" if result.error else "",
            extra={"doc_id": result.doc_id},
        )
        return delivered

    def launch(self, jobs: list[Job]) -> int:
        """Start the jobs not already under way. A job stays listed in `inflight` until its
        outcome record comes back through page-results (`handle` removes it), not merely until
        its task ends: in between, the state still asks for it, and relaunching it then would
        repeat the model's work."""
        launched = 0
        for job in jobs:
            if job.key not in self.inflight:
                task = asyncio.create_task(self._run(job))
                self.inflight[job.key] = task
                task.add_done_callback(partial(self._ended, job.key))
                launched += 1
        return launched

    def _ended(self, key: tuple[str, ...], task: asyncio.Task[bool]) -> None:
        delivered = not task.cancelled() and task.exception() is None and task.result()
        if not delivered and self.inflight.get(key) is task:
            del self.inflight[key]  # no outcome is coming: the sweeper may start it again

    def sweep(self) -> None:
        """Relaunch jobs of owned, unfinished documents that nothing here is working on, and
        forget finished jobs and table plans of documents this worker no longer holds."""
        documents = launched = 0
        held = set()
        for state in self.assembler.documents():  # the table holds owned partitions only
            held.add(state.doc_id)
            relaunched = self.launch(self.assembler.pending_jobs(state.doc_id))
            documents += relaunched > 0
            launched += relaunched
        for key in [k for k, t in self.inflight.items() if t.done() and k[1] not in held]:
            del self.inflight[key]
        self.assembler.keep_plans(held)
        if launched:
            _log.info("relaunched %d merge job(s) of %d document(s)", launched, documents)

    async def _run(self, job: Job) -> bool:
        """Run one job; True once its outcome record is on Kafka."""
        names = self.outbox.names
        try:
            async with self.slots:
                engine = await self.engines.get(job.engine or None)
                record = await self.gate.run(engine, partial(self._ask, engine, job))
            await self.outbox.deliver(names.page_results, job.doc_id, record)
        except asyncio.CancelledError:
            raise
        except Exception:  # the sweeper retries; a job must not take the worker down
            _log.exception(
                "merge job %s failed; it will be relaunched", job.key, extra={"doc_id": job.doc_id}
            )
            self.metrics.errors.labels("assemble", "merge_job").inc()
            return False
        return True

    async def _ask(self, engine: Engine, job: Job) -> PairsDetected | TableMerged:
        """The model's answer to one merge job, as the record that brings it back."""
        if isinstance(job, DetectJob):
            self.metrics.merge_jobs.labels("detect").inc()
            found = await engine.detect_merges(
                job.previous, job.following, max_attempts=job.max_attempts
            )
            return PairsDetected(
                doc_id=job.doc_id,
                first=job.first,
                pairs=found.value or [],
                usage=found.usage,
                error=found.error,
            )
        self.metrics.merge_jobs.labels("table").inc()
        merged = await engine.merge_tables(job.table1, job.table2, max_attempts=job.max_attempts)
        return TableMerged(
            doc_id=job.doc_id,
            page=job.page,
            i=job.i,
            j=job.j,
            html=merged.value,
            usage=merged.usage,
        )


def _doc_id_of(message: ConsumerRecord[bytes, bytes]) -> str | None:
    """The document a page-results record belongs to: its key (every writer keys by doc_id)."""
    return message.key.decode(errors="replace") if message.key else None
