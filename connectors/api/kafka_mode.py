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

The submitting and reading clients are confluent-kafka's, as in the SDK: the producer is polled
by a thread of its own and the reader runs in another, handing decoded records to the event loop
in batches.
Records are encoded and decoded by `schemas.records` only.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from connectors._tail import decode_value
from connectors.api.callback_relay import CALLBACK_METADATA_KEY, CallbackRelay
from connectors.api.callbacks import CallbackSender
from connectors.api.errors import Unavailable
from connectors.api.jobs import Job, JobStore
from connectors.api.service import Submission
from connectors.api.settings import ApiSettings
from connectors.blobstore import BlobFetcher, open_blob_store
from connectors.client import DEFAULT_INLINE_LIMIT, RESULT_MAX_BYTES
from connectors.kafka_config import LIBRDKAFKA_LOGGER, KafkaClientError, ensure_topics
from ocrflux.errors import OcrfluxError
from ocrflux.sniff import MIME_TYPES, sniff
from schemas.records import DocumentRequest, ProgressEvent, ResultRecord, encode
from schemas.results import DocumentResult, ErrorInfo

__all__ = ["KafkaMode"]

_log = logging.getLogger(__name__)

_BATCH = 500
_POLL_S = 0.1
_DELIVERY_TIMEOUT_S = 30.0
_METADATA_TIMEOUT_S = 10.0
#: How long the reader waits for freshly created topics to get their partition leaders.
_START_TIMEOUT_S = 60.0


class KafkaMode:
    name = "kafka"
    relays_callbacks = True

    def __init__(self, settings: ApiSettings, store: JobStore, callbacks: CallbackSender) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._producer: Producer | None = None
        self._threads: list[threading.Thread] = []
        self._barriers: queue.SimpleQueue[asyncio.Future[None]] = queue.SimpleQueue()
        self._mine: set[str] = set()
        self._blobs = open_blob_store(settings=settings)
        self._fetcher = BlobFetcher(settings, stores=(self._blobs,))
        self._resolving: set[asyncio.Task[None]] = set()
        self._relay = CallbackRelay(settings, callbacks, self, store)
        self._relaying: asyncio.Task[None] | None = None
        self.caught_up = False
        store.on_finished(lambda job: self._mine.discard(job.job_id))

    # --- lifetime -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await asyncio.to_thread(ensure_topics, self._settings, timeout_s=_METADATA_TIMEOUT_S)
        except KafkaClientError as exc:
            raise Unavailable(str(exc), code="kafka_unavailable") from exc
        self._producer = Producer(
            self._settings.producer_config(
                **{
                    "linger.ms": 5,
                    "message.timeout.ms": int(_DELIVERY_TIMEOUT_S * 1000),
                    "logger": LIBRDKAFKA_LOGGER,
                }
            )
        )
        for target, name in ((self._poll_producer, "producer"), (self._read, "reader")):
            thread = threading.Thread(target=target, name=f"ocrflux-api-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.caught_up = await self.catch_up(timeout_s=_START_TIMEOUT_S + 30)
        if not self._threads[1].is_alive():
            raise Unavailable("the Kafka reader stopped at start", code="kafka_unavailable")
        self._relaying = asyncio.create_task(self._relay.run(), name="ocrflux-api-callbacks")
        self._relaying.add_done_callback(_log_end)

    async def close(self) -> None:
        if self._relaying is not None:
            self._relay.stop()
            await asyncio.gather(self._relaying, return_exceptions=True)
        self._stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 10)
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, 10)
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
        if self._producer is None:
            raise KafkaClientError("the producer is not open")
        delivered: asyncio.Future[None] = self._loop.create_future()

        def on_delivery(error: KafkaError | None, _message: Any) -> None:
            self._loop.call_soon_threadsafe(_settle, delivered, error)

        try:
            self._producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise KafkaClientError(f"cannot send to {topic}: {exc}") from exc
        await asyncio.wait_for(delivered, _DELIVERY_TIMEOUT_S + 5)

    async def find(self, job_id: str) -> Job | None:
        job = self._store.get(job_id)
        if job is None:
            await self.catch_up(self._settings.ocrflux_catch_up_timeout_s)
            job = self._store.get(job_id)
        return job

    async def ready(self) -> dict[str, bool]:
        alive = all(thread.is_alive() for thread in self._threads) and bool(self._threads)
        alive = alive and self._relaying is not None and not self._relaying.done()
        return {"kafka": alive, "caught_up": self.caught_up, "capacity": not self.saturated()}

    async def catch_up(self, timeout_s: float) -> bool:
        """Until the reader has applied every record that was on the topics when called."""
        barrier: asyncio.Future[None] = self._loop.create_future()
        self._barriers.put(barrier)
        try:
            await asyncio.wait_for(barrier, timeout_s)
        except TimeoutError:
            return False
        return True

    # --- producer thread ----------------------------------------------------------------------

    def _poll_producer(self) -> None:
        producer = self._producer
        assert producer is not None
        while not self._stop.is_set():
            producer.poll(_POLL_S)

    # --- reader thread ------------------------------------------------------------------------

    def _read(self) -> None:
        consumer = Consumer(
            self._settings.consumer_config(
                f"ocrflux-api-{uuid.uuid4().hex}",
                **{
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 100,
                    "logger": LIBRDKAFKA_LOGGER,
                },
            )
        )
        try:
            partitions = self._start_positions(consumer)
            consumer.assign(partitions)
            positions: dict[tuple[str, int], int] = {}
            waiting: list[tuple[asyncio.Future[None], dict[tuple[str, int], int]]] = []
            while not self._stop.is_set():
                while not self._barriers.empty():
                    waiting.append((self._barriers.get(), _ends(consumer, partitions)))
                batch: list[Any] = []
                for message in consumer.consume(_BATCH, _POLL_S):
                    error = message.error()
                    where = (message.topic() or "", message.partition() or 0)
                    offset = message.offset() or 0
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            positions[where] = max(positions.get(where, 0), offset)
                        else:
                            _log.warning("Kafka reader: %s", error.str())
                        continue
                    positions[where] = offset + 1
                    record = decode_value(message)
                    if record is not None:
                        batch.append(record)
                if batch:
                    self._loop.call_soon_threadsafe(self._apply, batch)
                still = []
                for barrier, ends in waiting:
                    if all(positions.get(tp, -1) >= end for tp, end in ends.items()):
                        self._loop.call_soon_threadsafe(_settle, barrier, None)
                    else:
                        still.append((barrier, ends))
                waiting = still
        except Exception:
            _log.exception("the Kafka reader stopped")
            raise
        finally:
            consumer.close()

    def _start_positions(self, consumer: Consumer) -> list[TopicPartition]:
        """Where reading starts: the first offsets at or after the history window."""
        since_ms = int((time.time() - self._settings.ocrflux_job_history_s) * 1000)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                wanted = []
                for topic in (self._topics.progress, self._topics.results):
                    topics = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S).topics
                    partitions = sorted(topics[topic].partitions)
                    wanted += [TopicPartition(topic, p, since_ms) for p in partitions]
                found = consumer.offsets_for_times(wanted, timeout=_METADATA_TIMEOUT_S)
                break
            except KafkaException as exc:
                # New topics have no leader for a moment; anything else lasting is fatal.
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                _log.info("Kafka reader waiting for the topics: %s", exc)
                self._stop.wait(0.5)
        return [
            TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
            for tp in found
        ]

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
            if event.stage in ("completed", "partial", "failed"):
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
        if record.result_ref is None:
            self._store.finish(job, record)
            return
        task = self._loop.create_task(self._resolve(job, record))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, job: Job, record: ResultRecord) -> None:
        """A result too large for Kafka: fetch the full one from the blob store."""
        assert record.result_ref is not None
        try:
            data = await self._fetcher.fetch(record.result_ref, max_bytes=RESULT_MAX_BYTES)
            result = DocumentResult.model_validate_json(data)
        except (OcrfluxError, ValueError) as exc:
            self._store.fail(job, ErrorInfo(code="fetch_failed", message=str(exc)))
            return
        self._store.finish(job, result)


def _log_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("the callback relay stopped", exc_info=task.exception())


def _settle(future: asyncio.Future[None], error: object) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaClientError(f"Kafka did not accept the record: {error}"))


def _ends(consumer: Consumer, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
    ends = {}
    for tp in partitions:
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=_METADATA_TIMEOUT_S, cached=False
            )
        except KafkaException as exc:
            _log.warning("no watermark for %s[%d]: %s", tp.topic, tp.partition, exc)
            continue
        ends[(tp.topic, tp.partition)] = high
    return ends


def _content_type(head: bytes) -> str | None:
    try:
        return MIME_TYPES[sniff(head)]
    except OcrfluxError:
        return None
