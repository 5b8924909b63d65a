"""The faust app "ocrflux": topics, the assembler's table and the three agents.

`create_app` wires one app for the roles a worker runs. Workers with different roles share one
consumer group: faust assigns a topic's partitions among the members that subscribe to it, so
two workers that both recognize share the pages while only the assembling worker owns the
page-results partitions and the table.

Records travel as raw bytes and are decoded inside the agents, so a record that does not parse
becomes a dlq record (and, where its key names a document, a failed result) instead of a
crashed agent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import traceback
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

import faust
from faust.types import TP
from pydantic import BaseModel, ValidationError

from ocrflux.engines.base import fallback_page
from ocrflux.engines.factory import text_layer_tables
from ocrflux.errors import InputError, OcrfluxError
from ocrflux.render import RenderedPage
from ocrflux.tasks import TaskOutcome
from schemas.options import ConversionOptions
from schemas.records import (
    DlqRecord,
    DocumentRequest,
    PageDone,
    PageTask,
    PairsDetected,
    ProgressEvent,
    ResultRecord,
    TableMerged,
    decode,
    encode,
)
from schemas.results import ErrorInfo
from streams import codec
from streams.assembly import Assembler, DetectJob, Job
from streams.engine_pool import EnginePool
from streams.metrics import WorkerMetrics
from streams.recognize import recognize
from streams.settings import WorkerSettings
from streams.split import request_doc_id, split_document

_log = logging.getLogger(__name__)

#: Records a stream buffers per partition. Page records are large (a PNG each), so the
#: default of thousands would hold hundreds of MB; a few per partition keep consumers busy.
STREAM_BUFFER_MAXSIZE = 16


class Blobs(Protocol):
    async def fetch(
        self, url: str, *, max_bytes: int, expected_sha256: str | None = None
    ) -> bytes: ...

    async def put(self, data: bytes, name: str) -> str: ...


class Outbox:
    """Sends our records as JSON bytes, keyed as schemas/records.py says."""

    def __init__(self, app: faust.App, settings: WorkerSettings) -> None:
        names = settings.topics
        self._topics = {
            name: app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            )
            for name in names.all()
        }
        self.names = names

    def topic(self, name: str) -> faust.TopicT:
        return self._topics[name]

    async def send(self, name: str, key: str, record: BaseModel) -> Awaitable[Any]:
        """Hand a record to the producer; the returned future completes on delivery."""
        return await self._topics[name].send(key=key.encode(), value=encode(record))

    async def progress(self, event: ProgressEvent | None) -> None:
        if event is not None:
            await self.send(self.names.progress, event.doc_id, event)

    async def dlq(
        self,
        *,
        topic: str,
        key: bytes | None,
        value: bytes,
        stage: str,
        code: str,
        message: str,
        exc: BaseException | None = None,
        doc_id: str | None = None,
    ) -> None:
        try:
            text, encoding = value.decode(), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(value).decode(), "base64"
        record = DlqRecord(
            topic=topic,
            key=key.decode(errors="replace") if key else None,
            value=text,
            value_encoding=encoding,
            stage=stage,
            error_code=code,
            message=message,  # type: ignore[arg-type]
            exception="".join(traceback.format_exception(exc)) if exc else None,
            doc_id=doc_id,
        )
        await self.send(self.names.dlq, record.key or "", record)


def create_app(
    settings: WorkerSettings,
    roles: Iterable[str],
    *,
    engines: EnginePool,
    blobs: Blobs,
    metrics: WorkerMetrics,
) -> faust.App:
    roles = set(roles)
    codec.register()
    app = faust.App(
        settings.ocrflux_topic_prefix,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",  # the changelog topic is the state; recovery replays it
        datadir=settings.ocrflux_data_dir,
        topic_partitions=settings.kafka_topic_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        producer_max_request_size=settings.kafka_message_max_bytes,
        consumer_max_fetch_size=settings.kafka_message_max_bytes,
        stream_buffer_maxsize=STREAM_BUFFER_MAXSIZE,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.ocrflux_session_timeout_s,
    )
    outbox = Outbox(app, settings)
    names = settings.topics

    if "split" in roles:
        splitter = _Splitter(settings, outbox, blobs, metrics)

        @app.agent(outbox.topic(names.documents), name="split")
        async def split_agent(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await splitter.handle(event.key, event.value)

    if "recognize" in roles:

        @app.agent(
            outbox.topic(names.pages),
            name="recognize",
            concurrency=settings.ocrflux_recognize_concurrency,
        )
        async def recognize_agent(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await _recognize_one(event.key, event.value, settings, engines, outbox, metrics)

    if "assemble" in roles:
        table = app.Table(
            "assembly", default=None, partitions=settings.kafka_topic_partitions, key_type=str
        )
        # faust takes a table's serializers from faust Records only; ours are pydantic models.
        # The changelog topic, already made with the defaults, is remade so that recovery
        # decodes with our codec too.
        table.key_serializer, table.value_serializer = "json", codec.NAME
        table.changelog_topic = table._new_changelog_topic()
        assembler = _AssemblerAgent(
            app, settings, Assembler(table), outbox, engines, blobs, metrics
        )

        @app.agent(outbox.topic(names.page_results), name="assemble")
        async def assemble_agent(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await assembler.handle(event)

        @app.timer(settings.ocrflux_sweep_interval_s, name="relaunch-lost-merge-jobs")
        async def sweep() -> None:
            assembler.sweep()

    return app


def _key_text(key: bytes | None) -> str | None:
    return key.decode(errors="replace") if key else None


class _Splitter:
    def __init__(
        self, settings: WorkerSettings, outbox: Outbox, blobs: Blobs, metrics: WorkerMetrics
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.blobs = blobs
        self.metrics = metrics

    async def handle(self, key: bytes | None, value: bytes) -> None:
        names = self.outbox.names
        try:
            request = decode(value)
            if not isinstance(request, DocumentRequest):
                raise ValueError(f"expected a document_request, got {type(request).__name__}")
        except (ValidationError, ValueError) as exc:
            doc_id = _key_text(key)
            await self._fail(
                doc_id,
                key,
                value,
                InputError(f"not a document request: {exc}"),
                ConversionOptions(),
                exc,
            )
            return
        doc_id = request_doc_id(request)
        pending: list[Awaitable[Any]] = []
        try:
            async for item in split_document(
                request,
                doc_id,
                fetch=self._fetch,
                tables=text_layer_tables(
                    request.options.engine or self.settings.ocrflux_engine,
                    vllm_configured=bool(self.settings.vllm_url),
                ),
                max_bytes=self.settings.max_file_bytes,
                max_pages=self.settings.max_pages,
            ):
                if isinstance(item, ProgressEvent):
                    await self.outbox.progress(item)
                    continue
                topic = names.pages if isinstance(item, PageTask) else names.page_results
                routing = f"{doc_id}/{item.page}" if isinstance(item, PageTask) else doc_id
                pending.append(await self.outbox.send(topic, routing, item))
                self.metrics.pages_split.inc()
                if len(pending) >= self.settings.ocrflux_split_outstanding:
                    await pending.pop(0)  # bound the rendered pages waiting for delivery
        except OcrfluxError as exc:
            await self._fail(doc_id, key, value, exc, request.options, exc, request)
            return
        await asyncio.gather(*pending)
        self.metrics.documents_split.inc()

    async def _fetch(self, url: str, max_bytes: int, sha256: str | None) -> bytes:
        return await self.blobs.fetch(url, max_bytes=max_bytes, expected_sha256=sha256)

    async def _fail(
        self,
        doc_id: str | None,
        key: bytes | None,
        value: bytes,
        error: OcrfluxError,
        options: ConversionOptions,
        exc: BaseException,
        request: DocumentRequest | None = None,
    ) -> None:
        names = self.outbox.names
        _log.warning("document %s rejected: %s: %s", doc_id, error.code, error.message)
        self.metrics.errors.labels("split", error.code).inc()
        await self.outbox.dlq(
            topic=names.documents,
            key=key,
            value=value,
            stage="split",
            code=error.code,
            message=error.message,
            exc=exc,
            doc_id=doc_id,
        )
        if doc_id is None:
            return  # nobody can be told: no key and no parseable request
        result = ResultRecord(
            doc_id=doc_id,
            status="failed",
            error=ErrorInfo(code=error.code, message=error.message),
            output_format=options.output_format,
            source=(request.filename or request.content_ref) if request else None,
            metadata=request.metadata if request else {},
            reply_to=request.reply_to if request else None,
        )
        await self.outbox.send(names.results, doc_id, result)
        await self.outbox.progress(ProgressEvent(doc_id=doc_id, stage="failed"))
        self.metrics.document_done(result)


async def _recognize_one(
    key: bytes | None,
    value: bytes,
    settings: WorkerSettings,
    engines: EnginePool,
    outbox: Outbox,
    metrics: WorkerMetrics,
) -> None:
    names = outbox.names
    try:
        task = decode(value)
        if not isinstance(task, PageTask):
            raise ValueError(f"expected a page_task, got {type(task).__name__}")
    except (ValidationError, ValueError) as exc:
        await outbox.dlq(
            topic=names.pages,
            key=key,
            value=value,
            stage="recognize",
            code="invalid_record",
            message=str(exc)[:500],
            exc=exc,
        )
        metrics.errors.labels("recognize", "invalid_record").inc()
        return
    try:
        engine = await engines.get(task.info.options.engine)
        done = await recognize(task, engine, settings.ocrflux_worker_id)
    except Exception as exc:  # a page must never be lost: answer with a failed page
        _log.exception("page %s/%s failed unexpectedly", task.doc_id, task.page)
        code = exc.code if isinstance(exc, OcrfluxError) else "internal"
        await outbox.dlq(
            topic=names.pages,
            key=key,
            value=value,
            stage="recognize",
            code=code,
            message=str(exc)[:500],
            exc=exc,
            doc_id=task.doc_id,
        )
        done = _failed_page(task, code, str(exc), settings.ocrflux_worker_id)
    metrics.page_done(done)
    await outbox.send(names.page_results, task.doc_id, done)


def _failed_page(task: PageTask, code: str, message: str, worker: str) -> PageDone:
    page = RenderedPage(task.page, task.png, task.width, task.height, task.text_layer)
    result = fallback_page(page, TaskOutcome(error=ErrorInfo(code=code, message=message[:500])))
    return PageDone(doc_id=task.doc_id, info=task.info, result=result, worker=worker)


class _AssemblerAgent:
    """Runs the assembler's jobs outside the agent loop; their outcomes come back as records."""

    def __init__(
        self,
        app: faust.App,
        settings: WorkerSettings,
        assembler: Assembler,
        outbox: Outbox,
        engines: EnginePool,
        blobs: Blobs,
        metrics: WorkerMetrics,
    ) -> None:
        self.app = app
        self.settings = settings
        self.assembler = assembler
        self.outbox = outbox
        self.engines = engines
        self.blobs = blobs
        self.metrics = metrics
        self.inflight: dict[tuple[str, ...], asyncio.Task[None]] = {}
        self.slots = asyncio.Semaphore(settings.ocrflux_merge_concurrency)

    async def handle(self, event: faust.EventT) -> None:
        names = self.outbox.names
        key, value = event.key, event.value
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
        step = self.assembler.apply(
            record, partition=event.message.partition, at=event.message.timestamp
        )
        self.launch(step.jobs)
        if step.result is not None:
            delivery = await self._emit(step.result)
            await delivery  # the result is durable before the document is marked done
            self.assembler.mark_emitted(step)
        await self.outbox.progress(step.progress)

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

    def launch(self, jobs: list[Job]) -> None:
        for job in jobs:
            if job.key not in self.inflight:
                task = asyncio.create_task(self._run(job))
                self.inflight[job.key] = task
                task.add_done_callback(lambda _t, k=job.key: self.inflight.pop(k, None))

    def sweep(self) -> None:
        """Relaunch jobs of owned, unfinished documents that nothing here is working on."""
        assigned = self.app.assignor.assigned_actives()
        topic = self.outbox.names.page_results
        for state in self.assembler.documents():
            if TP(topic, state.partition) in assigned:
                self.launch(self.assembler.pending_jobs(state.doc_id))

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
