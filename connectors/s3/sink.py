"""The S3 sink: results from the results topic, written to a bucket next to their source key.

    <out-prefix>/<key>.md             the document (completed and partial results), in the
                                      sink's format: .md, .txt, or .chunks.json (chunks for
                                      retrieval); none with format json
    <out-prefix>/<key>.json           the full result record (the json format)
    <out-prefix>/<key>_figures/<name> the result's figures (`figures=crop`), linked from both
                                      (`connectors.s3.figures`)

`<key>` is the source object's key (the `s3.key` metadata the source adds), or the doc_id for
results that did not come from a bucket. Writes are idempotent: an object that already holds
the same bytes is left alone. Figures are written first, so a reader that sees the document
finds its figures; the `.json` is written last and tells which version of the source
object the outputs belong to (`s3.revision`, `s3.submitted_at` in its metadata); a result of an
older version than the one already written is skipped, so results arriving out of order never
roll an output back. A failed or cancelled result writes its `.json` and removes the document
output of an older version; figures an older version linked and the new one does not are
removed after the `.json`.

A consumer group reads the results topic; offsets are committed only after the writes of every
result up to them, so a crash repeats writes (which then change nothing) and loses none. The
consumer is aiokafka's, on the sink's event loop, and reads committed records only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError

from connectors.client import RESULT_MAX_BYTES
from connectors.s3.errors import TransientError
from connectors.s3.figures import MEDIA_TYPE as FIGURE_MEDIA_TYPE
from connectors.s3.figures import figure_objects, written_figure_keys
from connectors.s3.metrics import SinkMetrics
from connectors.s3.objects import ObjectStore
from connectors.s3.retry import Backoff, back_off
from connectors.s3.settings import S3SinkSettings
from connectors.s3.source import META_BUCKET, META_KEY, META_REVISION, META_SUBMITTED_AT
from ocrflux.errors import FetchFailed
from ocrflux.result_formats import MEDIA_TYPES, SUFFIXES, render_output
from schemas.options import OutputFormat
from schemas.records import ResultRecord
from streams.blobstore import BlobFetcher
from streams.kafka import KafkaClientError, ensure_topics

log = logging.getLogger(__name__)

#: A record read from the results topic.
Message: TypeAlias = "ConsumerRecord[bytes, bytes]"

#: Results read from Kafka per poll; all are written before their offsets are committed.
_BATCH = 64
_POLL_MS = 500
#: Attempts to fetch a result's full JSON (`result_ref`) before the sink skips that result.
_REF_ATTEMPTS = 5


@dataclass(frozen=True)
class Output:
    """The objects one result becomes."""

    base: str  # <out-prefix>/<key>, without suffix
    document: bytes | None  # None for failed and cancelled results, and with format json
    document_key: str | None  # None with format json: the `.json` is the document
    json: bytes
    json_key: str
    version: tuple[int, float] | None  # (revision, submitted_at) of the source object


def render(
    result: ResultRecord, out_prefix: str, fmt: OutputFormat, chunk_tokens: int | None = None
) -> Output:
    """The output objects of one (fully resolved) result; pure, for any caller."""
    meta = result.metadata
    base = output_base(result, out_prefix)
    document = None
    if result.status in ("completed", "partial") and fmt != "json":
        document = render_output(result, fmt, chunk_tokens=chunk_tokens).body.encode()
    body = render_output(result, "json").body
    return Output(
        base=base,
        document=document,
        document_key=None if fmt == "json" else base + SUFFIXES[fmt],
        json=body.encode(),
        json_key=base + ".json",
        version=_version(meta),
    )


def output_base(result: ResultRecord, out_prefix: str) -> str:
    """`<out-prefix>/<key>`: where a result's outputs go, before their suffixes."""
    name = result.metadata.get(META_KEY) or result.doc_id
    return f"{out_prefix}/{name}" if out_prefix else name


def _version(meta: dict[str, str]) -> tuple[int, float] | None:
    try:
        return int(meta[META_REVISION]), float(meta.get(META_SUBMITTED_AT) or 0.0)
    except (KeyError, ValueError):
        return None


def is_stale(new: tuple[int, float] | None, existing_json: bytes | None) -> bool:
    """Whether the outputs already written belong to a newer version of the source object
    (a higher revision submitted later: a reset ledger starts revisions at 1 again, later)."""
    if new is None or existing_json is None:
        return False
    try:
        meta = json.loads(existing_json).get("metadata") or {}
    except (json.JSONDecodeError, AttributeError):
        return False
    old = _version(meta)
    return old is not None and old[0] > new[0] and old[1] > new[1]


class S3Sink:
    def __init__(
        self,
        settings: S3SinkSettings,
        *,
        stop: asyncio.Event,
        metrics: SinkMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.metrics = metrics or SinkMetrics()
        self.bucket = settings.ocrflux_s3_bucket
        self.store = ObjectStore(settings.client_args())
        self.fetcher = BlobFetcher(settings)
        self.backoff = Backoff(settings.ocrflux_s3_retry_initial_s, settings.ocrflux_s3_retry_max_s)
        self._consumer: AIOKafkaConsumer | None = None
        self._ref_failures: dict[tuple[int, int], int] = {}

    async def run(self) -> int:
        try:
            while not self.stop.is_set():
                try:
                    await self._start()
                    messages = await self._poll()
                    if messages:
                        await self._handle(messages)
                    self.backoff.reset()
                except (TransientError, KafkaClientError) as exc:
                    if await self._back_off(exc):
                        break
        finally:
            await self._close()
        log.info("s3-sink stopped")
        return 0

    async def _back_off(self, exc: Exception) -> bool:
        return await back_off(exc, self.backoff, self.metrics.errors, self.stop, log)

    async def _start(self) -> None:
        if self._consumer is not None:
            return
        await asyncio.to_thread(ensure_topics, self.settings)
        most = self.settings.kafka_message_max_bytes
        consumer = AIOKafkaConsumer(
            **self.settings.aiokafka_options(),
            client_id="ocrflux-s3-sink",
            group_id=self.settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_bytes=most,
            max_partition_fetch_bytes=most,
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise KafkaClientError(f"cannot start the Kafka consumer: {exc}") from exc
        consumer.subscribe([self.settings.topics.results])
        self._consumer = consumer
        log.info(
            "s3-sink ready: results of %s to s3://%s/%s as %s (group %s)",
            self.settings.topics.results,
            self.bucket,
            self.settings.out_prefix,
            self.settings.ocrflux_s3_format,
            self.settings.group_id,
        )

    async def _poll(self) -> list[Message]:
        assert self._consumer is not None
        try:
            batches = await self._consumer.getmany(timeout_ms=_POLL_MS, max_records=_BATCH)
        except KafkaError as exc:
            raise KafkaClientError(f"Kafka consumer failed: {exc}") from exc
        return [message for messages in batches.values() for message in messages]

    async def _handle(self, messages: Sequence[Message]) -> None:
        """Write every result, then commit past them. On an error or a stop request, commit
        what was written and rewind to the rest (read again after the backoff)."""
        done: list[Message] = []
        try:
            for message in messages:
                if self.stop.is_set():
                    break
                await self._write(message)
                done.append(message)
        finally:
            if len(done) < len(messages):
                self._rewind(messages[len(done) :])
            await self._commit(done)
        self.metrics.last_success.set_to_current_time()

    async def _write(self, message: Message) -> None:
        value = message.value
        if value is None:
            return  # a tombstone
        try:
            result = ResultRecord.model_validate_json(value)
        except ValidationError as exc:
            log.warning(
                "skipping a record that is no result at %s[%d]@%d: %s",
                message.topic,
                message.partition,
                message.offset,
                exc.errors()[0]["msg"] if exc.errors() else exc,
            )
            return
        key = message.key
        if not result.doc_id and key:
            result = result.model_copy(update={"doc_id": key.decode(errors="replace")})
        wanted = self.settings.ocrflux_s3_source_bucket
        if wanted is not None and result.metadata.get(META_BUCKET) != wanted:
            return
        try:
            result = await self._resolved(result)
        except FetchFailed as exc:
            _, partition, offset = _position(message)
            slot = (partition, offset)
            self._ref_failures[slot] = self._ref_failures.get(slot, 0) + 1
            if self._ref_failures[slot] < _REF_ATTEMPTS:
                raise TransientError(str(exc)) from exc
            self._ref_failures.pop(slot, None)
            self.metrics.errors.labels("result_ref").inc()
            log.error(
                "giving up on result %s after %d attempts: %s", result.doc_id, _REF_ATTEMPTS, exc
            )
            return
        await self.write(result)

    async def write(self, result: ResultRecord) -> None:
        """Write the objects of one fully resolved result; writing it again changes nothing."""
        settings = self.settings
        base = output_base(result, settings.out_prefix)
        existing = await self.store.get_optional(self.bucket, base + ".json")
        if is_stale(_version(result.metadata), existing):
            self.metrics.writes.labels("stale").inc()
            log.info(
                "skipping %s: s3://%s/%s.json is of a newer version",
                result.doc_id,
                self.bucket,
                base,
            )
            return
        figures = await figure_objects(result, base, self.fetcher)
        for warning in figures.missing:
            self.metrics.writes.labels("unavailable").inc()
            log.warning("result %s: %s", result.doc_id, warning.message)
        output = await asyncio.to_thread(  # chunking a long document takes a while
            render,
            figures.result,
            settings.out_prefix,
            settings.ocrflux_s3_format,
            settings.ocrflux_s3_chunk_tokens,
        )
        written = []
        for key, png in figures.objects.items():
            if await self.store.put_if_changed(self.bucket, key, png, FIGURE_MEDIA_TYPE):
                written.append(key)
        if output.document is not None and output.document_key is not None:
            fmt = settings.ocrflux_s3_format
            if await self.store.put_if_changed(
                self.bucket, output.document_key, output.document, MEDIA_TYPES[fmt]
            ):
                written.append(output.document_key)
        elif output.document_key is not None and existing is not None and existing != output.json:
            await self.store.delete(self.bucket, output.document_key)
            self.metrics.writes.labels("deleted").inc()
        if await self.store.put_if_changed(
            self.bucket, output.json_key, output.json, MEDIA_TYPES["json"], existing=existing
        ):
            written.append(output.json_key)
        # Figures an older version linked and this one does not (its links, not what could be
        # fetched just now: a figure missing this time keeps the object written before).
        gone = written_figure_keys(existing, base) - written_figure_keys(output.json, base)
        for key in sorted(gone):
            await self.store.delete(self.bucket, key)
            self.metrics.writes.labels("deleted").inc()
        self._count(result, output, len(figures.objects), written)

    def _count(
        self, result: ResultRecord, output: Output, figures: int, written: list[str]
    ) -> None:
        self.metrics.writes.labels("written").inc(len(written))
        unchanged = figures + (2 if output.document is not None else 1) - len(written)
        if unchanged:
            self.metrics.writes.labels("unchanged").inc(unchanged)
        self.metrics.results.labels(result.status).inc()
        if written:
            log.info(
                "wrote %s result %s to s3://%s/%s{%s}",
                result.status,
                result.doc_id,
                self.bucket,
                output.base,
                ",".join(key[len(output.base) :] for key in written),
            )
        else:
            log.info(
                "result %s already at s3://%s/%s (unchanged)",
                result.doc_id,
                self.bucket,
                output.base,
            )

    async def _resolved(self, result: ResultRecord) -> ResultRecord:
        """The full result when the record only points at it (`result_ref`)."""
        if result.result_ref is None:
            return result
        data = await self.fetcher.fetch(result.result_ref, max_bytes=RESULT_MAX_BYTES)
        try:
            full = ResultRecord.model_validate_json(data)
        except ValidationError as exc:
            raise FetchFailed(f"{result.result_ref} does not hold a document result") from exc
        return full.model_copy(
            update={
                "doc_id": full.doc_id or result.doc_id,
                "result_ref": result.result_ref,
                "metadata": full.metadata or result.metadata,
                "reply_to": full.reply_to or result.reply_to,
            }
        )

    async def _commit(self, done: Sequence[Message]) -> None:
        if not done or self._consumer is None:
            return
        offsets: dict[tuple[str, int], int] = {}
        for message in done:
            topic, partition, offset = _position(message)
            slot = (topic, partition)
            offsets[slot] = max(offsets.get(slot, -1), offset + 1)
        try:
            await self._consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Typically a rebalance took the partition away: its new owner rewrites the same
            # bytes, which changes nothing.
            log.warning("cannot commit offsets (%s); those results will be read again", exc)

    def _rewind(self, undone: Sequence[Message]) -> None:
        """Read `undone` again next time: each partition back to its first unwritten result."""
        if self._consumer is None:
            return
        first: dict[tuple[str, int], int] = {}
        for message in undone:
            topic, partition, offset = _position(message)
            slot = (topic, partition)
            first[slot] = min(first.get(slot, offset), offset)
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition), offset)
            except IllegalStateError as exc:
                # Not assigned any more (a rebalance): the new owner reads from the commit.
                log.warning("cannot rewind %s[%d] to %d: %s", topic, partition, offset, exc)

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        await self.fetcher.close()
        await self.store.close()


def _position(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed (never a produced) message."""
    return message.topic, message.partition, message.offset
