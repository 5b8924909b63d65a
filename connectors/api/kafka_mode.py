"""Kafka mode: jobs go to the stream processor; every instance follows them on the topics.

Submitting produces a `queued` progress event and the document request (key = job_id = doc_id;
documents above `DEFAULT_INLINE_LIMIT` go to the blob store, claim check). Every instance reads
the progress and results topics from `OCRFLUX_JOB_HISTORY_S` ago onwards into its job store, so
any instance answers for any job: nothing pins a job to the instance that accepted it. A request
for a job this instance has not seen yet first waits (briefly) until its reader has caught up
with the topics' current ends, so a job submitted elsewhere a moment ago is found. A result read
back from the topics is reused only when its document completed: a new submission of a document
whose result was `partial` or `failed` is sent to the workers again (`Job.reusable`).

A submission's callback URL travels with the document request (its metadata) and comes back on
the result, where the API instances' callback relay sends it (`callback_relay.py`).

The submitting and reading clients are aiokafka's, on the event loop: the producer is the
workers' (`streams.runtime.clients.Producer`: idempotent, acks from every in-sync replica,
replaced when a fatal answer stops it) and the reader is a consumer outside any group, with
the partitions assigned.
Records are encoded and decoded by `schemas.records` only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from connectors.api.callback_relay import CALLBACK_METADATA_KEY, CallbackRelay
from connectors.api.callbacks import CallbackSender
from connectors.api.errors import Unavailable
from connectors.api.figure_answers import inline_figures
from connectors.api.jobs import Job, JobStore
from connectors.api.service import Submission
from connectors.api.settings import ApiSettings
from connectors.client import DEFAULT_INLINE_LIMIT, RESULT_MAX_BYTES
from ocrflux.errors import FetchFailed, OcrfluxError
from ocrflux.figures import FIGURE_MAX_BYTES
from ocrflux.sniff import MIME_TYPES, sniff
from schemas.records import (
    CancelRequest,
    DocumentRequest,
    ProgressEvent,
    ResultRecord,
    decode,
    encode,
)
from schemas.results import DocumentResult, ErrorInfo
from streams.blobstore import BlobFetcher, open_blob_store
from streams.kafka import KafkaClientError, ensure_topics
from streams.runtime.clients import Producer

__all__ = ["KafkaMode"]

_log = logging.getLogger(__name__)

_BATCH = 500
#: The broker holds an empty fetch this long: it bounds how long reaching a partition's end
#: (and so a `catch_up`) takes to be noticed.
_FETCH_WAIT_MS = 100
#: How long Kafka gets to acknowledge a submission's records before the API answers 503.
_DELIVERY_TIMEOUT_S = 30.0
_METADATA_TIMEOUT_S = 10.0
#: How long the reader waits for freshly created topics to get their partition leaders.
_START_TIMEOUT_S = 60.0

#: A `catch_up` waiting for the reader: the end offsets it must reach.
_Barrier = tuple[asyncio.Future[None], dict[TopicPartition, int]]


class KafkaMode:
    name = "kafka"
    relays_callbacks = True

    def __init__(self, settings: ApiSettings, store: JobStore, callbacks: CallbackSender) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._producer: Producer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._reading: asyncio.Task[None] | None = None
        self._barriers: list[_Barrier] = []
        self._mine: set[str] = set()
        self._blobs = open_blob_store(settings=settings)
        self._fetcher = BlobFetcher(settings, stores=(self._blobs,))
        self._resolving: set[asyncio.Task[None]] = set()
        self._relay = CallbackRelay(settings, callbacks, self.catch_up, store)
        self._relaying: asyncio.Task[None] | None = None
        self.caught_up = False
        store.on_finished(lambda job: self._mine.discard(job.job_id))

    # --- lifetime -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._open()
        except BaseException:
            await self.close()  # what did start; the app closes only a mode that opened
            raise

    async def _open(self) -> None:
        try:
            await asyncio.to_thread(ensure_topics, self._settings, timeout_s=_METADATA_TIMEOUT_S)
            # A submission waits for its records' acknowledgement: the API's own, shorter timeout.
            timeouts = {"kafka_delivery_timeout_s": _DELIVERY_TIMEOUT_S}
            self._producer = Producer(self._settings.model_copy(update=timeouts), "ocrflux-api")
            await self._producer.start()
            self._consumer = await self._start_reader()
        except (KafkaClientError, KafkaError) as exc:
            raise Unavailable(str(exc), code="kafka_unavailable") from exc
        self._reading = asyncio.create_task(self._read(self._consumer), name="ocrflux-api-reader")
        self.caught_up = await self.catch_up(timeout_s=_START_TIMEOUT_S + 30)
        if self._reading.done():
            raise Unavailable("the Kafka reader stopped at start", code="kafka_unavailable")
        self._relaying = asyncio.create_task(self._relay.run(), name="ocrflux-api-callbacks")
        self._relaying.add_done_callback(_log_end)

    async def close(self) -> None:
        if self._relaying is not None:
            self._relay.stop()
            await asyncio.gather(self._relaying, return_exceptions=True)
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        for task in list(self._resolving):
            task.cancel()
        await self._fetcher.close()
        await self._blobs.close()

    # --- the mode ---------------------------------------------------------------------------

    def engine_for(self, submission: Submission) -> str:
        return self.name

    def capacity(self) -> int:
        return self._settings.ocrflux_max_queued - len(self._mine)

    def saturated(self) -> bool:
        return self.capacity() <= 0

    async def start(self, job: Job, submission: Submission) -> None:
        try:
            await self._send(job, submission)
        except (KafkaClientError, OcrfluxError) as exc:
            self._store.fail(job, ErrorInfo(code="kafka_unavailable", message=str(exc)))
            raise Unavailable(f"cannot submit to Kafka: {exc}", code="kafka_unavailable") from exc
        self._mine.add(job.job_id)

    async def _send(self, job: Job, submission: Submission) -> None:
        data = await submission.spool.read()  # sent before `start` returns: no hold needed
        source: dict[str, Any]
        if len(data) <= DEFAULT_INLINE_LIMIT:
            source = {"content": data}
        else:
            name = submission.source.rsplit("/", 1)[-1] if submission.source else job.job_id
            source = {"content_ref": await self._blobs.put(data, name or job.job_id)}
        metadata = {"source_key": submission.source_key, "file_size": str(len(data))}
        if submission.callback_url:
            metadata[CALLBACK_METADATA_KEY] = submission.callback_url
        request = DocumentRequest(
            doc_id=job.job_id,
            content_sha256=submission.sha256,
            content_length=len(data),
            filename=submission.source,
            content_type=_content_type(submission.spool.head),
            options=submission.options,
            metadata=metadata,
            **source,
        )
        queued = ProgressEvent(doc_id=job.job_id, stage="queued")
        await self._produce(self._topics.progress, job.job_id, encode(queued))
        await self._produce(self._topics.documents, job.job_id, encode(request))

    async def _produce(self, topic: str, key: str, value: bytes) -> None:
        """Send one record and wait for its acknowledgement (no second attempt: the caller
        answers `Unavailable` and the client submits again)."""
        producer = self._producer
        if producer is None:
            raise KafkaClientError("the producer is not open")
        try:
            async with asyncio.timeout(producer.ack_timeout_s):
                try:
                    delivered = await producer.hand_over(topic, key.encode(), value)
                except KafkaError as exc:
                    raise KafkaClientError(f"cannot send to {topic}: {exc}") from exc
                try:
                    await delivered
                except KafkaError as exc:
                    raise KafkaClientError(f"Kafka did not accept the record: {exc}") from exc
        except TimeoutError as exc:
            raise KafkaClientError(
                f"Kafka did not accept the record: no acknowledgement from {topic} "
                f"within {producer.ack_timeout_s:.0f} s"
            ) from exc

    async def cancel(self, job: Job) -> None:
        request = CancelRequest(doc_id=job.job_id)
        try:
            await self._produce(self._topics.cancels, job.job_id, encode(request))
        except KafkaClientError as exc:
            raise Unavailable(f"cannot cancel on Kafka: {exc}", code="kafka_unavailable") from exc

    async def find(self, job_id: str) -> Job | None:
        job = self._store.get(job_id)
        if job is None:
            await self.catch_up(self._settings.ocrflux_catch_up_timeout_s)
            job = self._store.get(job_id)
        return job

    async def fetch_figure(self, url: str) -> bytes:
        try:
            return await self._fetcher.fetch(url, max_bytes=FIGURE_MAX_BYTES)
        except (ValueError, OSError) as exc:  # a warning for the figure, not a lost result
            raise FetchFailed(f"cannot fetch {url[:200]}: {exc}") from exc

    async def ready(self) -> dict[str, bool]:
        alive = self._reading is not None and not self._reading.done()
        alive = alive and self._relaying is not None and not self._relaying.done()
        return {"kafka": alive, "caught_up": self.caught_up, "capacity": not self.saturated()}

    async def catch_up(self, timeout_s: float) -> bool:
        """Until the reader has applied every record that was on the topics when called."""
        consumer, reading = self._consumer, self._reading
        if consumer is None or reading is None or reading.done():
            return False
        barrier: asyncio.Future[None] = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout_s):
                ends = await consumer.end_offsets(self._partitions)
                self._barriers.append((barrier, ends))
                await barrier
        except (TimeoutError, KafkaError) as exc:
            if isinstance(exc, KafkaError):
                _log.warning("no end offsets for the Kafka reader: %r", exc)
            return False
        finally:
            self._barriers = [b for b in self._barriers if b[0] is not barrier]
        return True

    # --- the reader -----------------------------------------------------------------------------

    async def _start_reader(self) -> AIOKafkaConsumer:
        """A consumer assigned the progress and results partitions, each positioned at its first
        offset at or after the history window (its end when there is none)."""
        most = self._settings.kafka_message_max_bytes
        wanted = (self._topics.progress, self._topics.results)
        consumer = AIOKafkaConsumer(
            **self._settings.aiokafka_options(),
            client_id=f"ocrflux-api-{uuid.uuid4().hex}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            fetch_max_bytes=most,
            max_partition_fetch_bytes=most,
            request_timeout_ms=int(_START_TIMEOUT_S * 1000),
        )
        await consumer.start()
        try:
            # A consumer outside any group learns a topic's partitions once asked about one of
            # them: every topic has a partition 0 (aiokafka waits for new topics' leaders).
            await consumer.end_offsets([TopicPartition(topic, 0) for topic in wanted])
            self._partitions = [
                TopicPartition(topic, p)
                for topic in wanted
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(self._partitions)
            since_ms = int((time.time() - self._settings.ocrflux_job_history_s) * 1000)
            starts = await consumer.offsets_for_times(dict.fromkeys(self._partitions, since_ms))
            at_end = []
            for tp in self._partitions:
                start = starts.get(tp)
                if start is None:
                    at_end.append(tp)
                else:
                    consumer.seek(tp, start.offset)
            if at_end:
                await consumer.seek_to_end(*at_end)
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=_FETCH_WAIT_MS, max_records=_BATCH)
                for messages in batches.values():
                    self._apply([r for r in map(_decode, messages) if r is not None])
                if self._barriers:
                    await self._release(consumer)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("the Kafka reader stopped")
            raise

    async def _release(self, consumer: AIOKafkaConsumer) -> None:
        """Settle the `catch_up` calls whose end offsets the reader has reached."""
        positions = {tp: await consumer.position(tp) for tp in self._partitions}
        for barrier, ends in self._barriers:
            if not barrier.done() and all(positions[tp] >= end for tp, end in ends.items()):
                barrier.set_result(None)

    # --- records into the store (on the event loop) ---------------------------------------

    def _apply(self, records: list[Any]) -> None:
        for record in records:
            if isinstance(record, ProgressEvent):
                self._apply_progress(record)
            elif isinstance(record, ResultRecord):
                self._apply_result(record)

    def _apply_progress(self, event: ProgressEvent) -> None:
        job = self._store.get(event.doc_id)
        # A new submission (from any instance) of a document whose job failed or ended
        # partial starts a new job: only completed documents are reused.
        if job is None or (not job.reusable and event.stage == "queued"):
            if event.stage in ("completed", "partial", "failed", "cancelled"):
                return  # the result record follows and creates the job
            job = self._store.add(Job(job_id=event.doc_id, created_at=event.at))
        if event.stage in ("split", "recognize", "assemble"):
            self._store.running(job, event.pages_done, event.pages_total)

    def _apply_result(self, record: ResultRecord) -> None:
        job = self._store.get(record.doc_id)
        if job is None:
            job = self._store.add(Job(job_id=record.doc_id))
        if job.terminal:
            return
        metadata = record.metadata
        job.output_format = record.output_format
        job.source = job.source or record.source
        job.source_key = "url" if metadata.get("source_key") == "url" else "filename"
        if not job.file_size and metadata.get("file_size", "").isdigit():
            job.file_size = int(metadata["file_size"])
        if record.result_ref is None and not _needs_figure_data(record):
            self._store.finish(job, record)
            return
        task = self._loop.create_task(self._resolve(job, record))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, job: Job, record: ResultRecord) -> None:
        """A result too large for Kafka: fetch the full one from the blob store. A json result
        then gets its figures inline, as direct mode's (the status and callbacks carry it)."""
        result: DocumentResult = record
        if record.result_ref is not None:
            try:
                data = await self._fetcher.fetch(record.result_ref, max_bytes=RESULT_MAX_BYTES)
                result = DocumentResult.model_validate_json(data)
            except (OcrfluxError, ValueError) as exc:
                self._store.fail(job, ErrorInfo(code="fetch_failed", message=str(exc)))
                return
        if _needs_figure_data(result):
            result = await inline_figures(result, self.fetch_figure)
        self._store.finish(job, result)


def _log_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("the callback relay stopped", exc_info=task.exception())


def _decode(message: ConsumerRecord[bytes, bytes]) -> BaseModel | None:
    """The record in a message; None (logged) for a tombstone or a value that is no record."""
    if message.value is None:
        return None
    try:
        return decode(message.value)
    except ValidationError as exc:
        _log.warning(
            "skipping an undecodable record at %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            exc.errors()[0]["msg"] if exc.errors() else exc,
        )
        return None


def _needs_figure_data(result: DocumentResult) -> bool:
    """Whether the result's answer carries its figures' PNGs (json), which the stream
    processor stores apart; markdown and text link them by name (a ZIP fetches them)."""
    return result.output_format == "json" and any(f.data is None for f in result.figures)


def _content_type(head: bytes) -> str | None:
    try:
        return MIME_TYPES[sniff(head)]
    except OcrfluxError:
        return None
