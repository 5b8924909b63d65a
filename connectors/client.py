"""The client SDK: submit documents to the stream processor and read its results and progress.

    with OcrfluxClient(KafkaSettings()) as client:
        doc_id = client.submit("report.pdf", ConversionOptions(output_format="text"))
        for result in client.results([doc_id], timeout_s=600):
            print(result.status, result.content)

Synchronous, on confluent-kafka. Documents up to `inline_limit` bytes travel inside the record;
larger ones go to the blob store and the record carries a reference (claim check). Results too
large for Kafka carry a `result_ref`, which `results()` resolves transparently.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import BaseModel, ValidationError

from connectors._loop import LoopThread
from connectors._tail import CAUGHT_UP, Mark, end_offsets, latest_then_live, read_topics
from ocrflux.errors import EmptyInput, FetchFailed, UnsupportedType
from ocrflux.figures import FIGURE_MAX_BYTES, figure_pngs
from ocrflux.filenames import text_name
from ocrflux.identity import content_digest, doc_id_for
from ocrflux.sniff import MIME_TYPES, sniff
from schemas.options import ConversionOptions
from schemas.records import CancelRequest, DocumentRequest, ProgressEvent, ResultRecord, encode
from schemas.results import DocumentResult, ErrorInfo
from streams.blobstore import BlobFetcher, BlobSettings, BlobStore, open_blob_store
from streams.kafka import (
    LIBRDKAFKA_LOGGER,
    KafkaClientError,
    KafkaSettings,
    TopicNames,
    ensure_topics,
)

__all__ = ["DEFAULT_INLINE_LIMIT", "FIGURE_MAX_BYTES", "RESULT_MAX_BYTES", "OcrfluxClient"]

log = logging.getLogger(__name__)

#: Documents up to this size travel inside the record (base64 makes them a third larger).
DEFAULT_INLINE_LIMIT = 1024 * 1024
#: The largest full result fetched from a `result_ref` (a few hundred pages of text).
RESULT_MAX_BYTES = 512 * 1024 * 1024
#: Room in a record for everything but the inline document: JSON fields, options, metadata.
_RECORD_OVERHEAD_BYTES = 64 * 1024
#: How long the first request to Kafka may take before the client gives up on the broker.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: Stages after which a document's progress ends.
TERMINAL_STAGES = frozenset({"completed", "partial", "failed", "cancelled"})


def _inline_size(limit: int) -> int:
    return (limit + 2) // 3 * 4 + _RECORD_OVERHEAD_BYTES


class OcrfluxClient:
    """Producer of document requests and reader of results and progress (one per thread).

    `blob_base_url` is where claim-checked documents go (`file:///folder`, `s3://bucket/prefix`;
    default: `blob_settings.base_url`). Blocking calls raise `KafkaClientError` when Kafka does
    not accept a record within `delivery_timeout_s`, or no broker answers within
    `connect_timeout_s`. Before its first record the client creates the prefix's topics that
    are missing (`ensure_topics`), unless `create_topics` is off.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        blob_base_url: str | None = None,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        blob_settings: BlobSettings | None = None,
        delivery_timeout_s: float = 60.0,
        create_topics: bool = True,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        if inline_limit < 0:
            raise ValueError("inline_limit must be >= 0")
        if _inline_size(inline_limit) > settings.kafka_message_max_bytes:
            raise ValueError(
                f"inline_limit {inline_limit} does not fit a record of "
                f"{settings.kafka_message_max_bytes} bytes once base64-encoded"
            )
        self.settings = settings
        self.topics: TopicNames = settings.topics
        self.inline_limit = inline_limit
        self._blob_base_url = blob_base_url
        self._blob_settings = blob_settings
        self._delivery_timeout_s = delivery_timeout_s
        self._create_topics = create_topics
        self._connect_timeout_s = connect_timeout_s
        self._producer: Producer | None = None
        self._io = LoopThread()
        self._store: BlobStore | None = None
        self._fetcher: BlobFetcher | None = None
        self._readers: set[Generator[Any, None, None]] = set()

    # --- producing -----------------------------------------------------------------------

    def submit(
        self,
        path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
        options: ConversionOptions | None = None,
        *,
        doc_id: str | None = None,
        filename: str | None = None,
        metadata: Mapping[str, str] | None = None,
        reply_to: str | None = None,
    ) -> str:
        """Send one document to the documents topic and return its `doc_id`.

        The default `doc_id` is a hash of the bytes and the options, so resubmitting is
        idempotent. The content type is sniffed but nothing is rejected here: the worker
        validates and answers a bad document with a failed result. A file name whose bytes are
        not valid UTF-8 travels with those bytes as `\\xNN` escapes (`ocrflux.filenames`).
        `OSError` when a path cannot be read; `BlobStoreError` when a large document cannot be
        stored.
        """
        options = options or ConversionOptions()
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            data = bytes(path_or_bytes)
        else:
            path = Path(path_or_bytes)
            data = path.read_bytes()
            filename = filename or path.name
        if filename is not None:  # a name that is not valid UTF-8 could not be serialized
            filename = text_name(filename)
        digest = content_digest(data)
        doc_id = doc_id or doc_id_for(digest, options)
        source: dict[str, Any]
        if len(data) <= self.inline_limit:
            source = {"content": data}
        else:
            url = self._io.run(self._blob_store().put(data, filename or f"{doc_id}.bin"))
            source = {"content_ref": url}
        request = DocumentRequest(
            doc_id=doc_id,
            content_sha256=digest,
            content_length=len(data),
            filename=filename,
            content_type=_content_type(data),
            options=options,
            metadata=dict(metadata or {}),
            reply_to=reply_to,
            **source,
        )
        self._produce(self.topics.documents, doc_id, encode(request))
        return doc_id

    def cancel(self, doc_id: str, *, reason: str | None = None) -> None:
        """Cancel the conversion of `doc_id` (every submission made so far): split stops
        emitting its pages, recognize skips the pages queued, and one `cancelled` result
        follows. A document already finished keeps its result; one submitted after the cancel
        is converted again."""
        request = CancelRequest(doc_id=doc_id, reason=reason)
        self._produce(self.topics.cancels, doc_id, encode(request))

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        producer = self._producer_or_new()
        failures: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        try:
            producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise KafkaClientError(f"cannot send to {topic}: {exc}") from exc
        remaining = producer.flush(self._delivery_timeout_s + 5)
        if failures:
            raise KafkaClientError(f"Kafka did not accept the record for {topic}: {failures[0]}")
        if remaining:
            raise KafkaClientError(
                f"Kafka at {self.settings.kafka_bootstrap_servers} did not acknowledge the "
                f"record for {topic} within {self._delivery_timeout_s:.0f}s"
            )

    def _producer_or_new(self) -> Producer:
        if self._producer is None:
            timeout_ms = int(self._delivery_timeout_s * 1000)
            producer = Producer(
                self.settings.producer_config(
                    **{
                        "linger.ms": 5,
                        "message.timeout.ms": timeout_ms,
                        "logger": LIBRDKAFKA_LOGGER,
                    }
                )
            )
            # Fail in seconds, not after the delivery timeout, when no broker answers; and let
            # no topic be auto-created by the broker with its default partition count.
            if self._create_topics:
                ensure_topics(self.settings, timeout_s=self._connect_timeout_s)
            else:
                try:
                    producer.list_topics(timeout=self._connect_timeout_s)
                except KafkaException as exc:
                    raise KafkaClientError(
                        f"no answer from Kafka at {self.settings.kafka_bootstrap_servers}: {exc}"
                    ) from exc
            self._producer = producer
        return self._producer

    # --- reading ---------------------------------------------------------------------------

    def results(
        self,
        doc_ids: Iterable[str] | None = None,
        *,
        follow: bool = False,
        wait: bool = True,
        timeout_s: float | None = None,
        resolve_refs: bool = True,
    ) -> Iterator[ResultRecord]:
        """Results from the results topic, read from its beginning: first the latest one per
        `doc_id` already there, then new ones as they arrive.

        Without `follow` it ends at the end of the topic when no `doc_ids` are given, and
        otherwise once every requested `doc_id` has a result (with `wait=False`: at the end of
        the topic, whether or not all were seen). With `follow` it goes on until `timeout_s`.
        Reading always ends at `timeout_s`. A `result_ref` is fetched from the blob store and
        the full result yielded (`FetchFailed` when it cannot be), unless `resolve_refs` is off.
        """
        wanted = _id_set(doc_ids) if doc_ids is not None else None
        unseen = set(wanted or ())
        for item in self._latest([self.topics.results], ResultRecord, wanted, timeout_s):
            if item is CAUGHT_UP:
                if not follow and (wanted is None or not wait or not unseen):
                    return
                continue
            doc_id, result = item
            yield self._resolved(doc_id, result) if resolve_refs else _with_id(doc_id, result)
            unseen.discard(doc_id)
            if not follow and wanted is not None and not unseen:
                return

    def progress(
        self, doc_id: str | None = None, *, follow: bool = True, timeout_s: float | None = None
    ) -> Iterator[ProgressEvent]:
        """Progress events from the progress topic's beginning: the latest one per document
        first, then each new one as it arrives.

        Without `follow` it ends at the end of the topic. Following one `doc_id`, it ends after
        that document's final event (stage completed, partial or failed); otherwise at
        `timeout_s`.
        """
        wanted = {doc_id} if doc_id is not None else None
        for item in self._latest([self.topics.progress], ProgressEvent, wanted, timeout_s):
            if item is CAUGHT_UP:
                if not follow:
                    return
                continue
            _, event = item
            yield event
            if doc_id is not None and event.stage in TERMINAL_STAGES:
                return

    def mark(self) -> Mark:
        """Where the progress and results topics end now, per partition: take it before
        submitting and pass it to `watch(after=...)`, which then reads only what comes after."""
        return end_offsets(
            self.settings,
            [self.topics.progress, self.topics.results],
            metadata_timeout_s=self._connect_timeout_s,
        )

    def watch(
        self,
        doc_ids: Iterable[str],
        *,
        timeout_s: float | None = None,
        after: Mark | None = None,
    ) -> Iterator[ProgressEvent | ResultRecord]:
        """Progress events and results of `doc_ids` in one stream (the latest of each kind per
        document first), ending once every one of them has a result, or at `timeout_s`.

        With `after` (a `mark()` taken before the documents were submitted) only what was
        written since is read, so waiting costs the same however much history the topics hold,
        and an old result is not taken for the new answer. A document whose earlier result was
        `completed` still gets it at once: split answers the new submission with it."""
        wanted = _id_set(doc_ids)
        unseen = set(wanted)
        if not unseen:
            return
        topics = [self.topics.progress, self.topics.results]
        caught_up = False
        for item in self._latest(topics, ProgressEvent | ResultRecord, wanted, timeout_s, after):
            if item is CAUGHT_UP:
                caught_up = True
            else:
                doc_id, record = item
                if isinstance(record, ResultRecord):
                    yield self._resolved(doc_id, record)
                    unseen.discard(doc_id)
                elif isinstance(record, ProgressEvent):
                    yield record
            if caught_up and not unseen:
                return

    def _latest(
        self,
        topics: list[str],
        kind: Any,
        wanted: set[str] | None,
        timeout_s: float | None,
        start: Mark | None = None,
    ) -> Iterator[Any]:
        def key_of(message: Any, record: BaseModel | None) -> str | None:
            if record is not None and not isinstance(record, kind):
                return None
            doc_id = getattr(record, "doc_id", None) or _key(message)
            if not doc_id or (wanted is not None and doc_id not in wanted):
                return None
            return doc_id

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        messages = read_topics(
            self.settings,
            topics,
            deadline=deadline,
            start=start,
            metadata_timeout_s=self._connect_timeout_s,
        )
        self._readers.add(messages)
        try:
            yield from latest_then_live(messages, key_of)
        finally:
            self._readers.discard(messages)
            messages.close()

    def _resolved(self, doc_id: str, record: ResultRecord) -> ResultRecord:
        record = _with_id(doc_id, record)
        if record.result_ref is None:
            return record
        data = self._io.run(
            self._blob_fetcher().fetch(record.result_ref, max_bytes=RESULT_MAX_BYTES)
        )
        try:
            full = ResultRecord.model_validate_json(data)
        except ValidationError as exc:
            raise FetchFailed(f"{record.result_ref} does not hold a document result") from exc
        return full.model_copy(
            update={
                "doc_id": full.doc_id or record.doc_id,
                "result_ref": record.result_ref,
                "metadata": full.metadata or record.metadata,
                "reply_to": full.reply_to or record.reply_to,
            }
        )

    def figure_pngs(self, result: DocumentResult) -> tuple[dict[int, bytes], list[ErrorInfo]]:
        """Each figure's PNG by figure number (option `figures=crop`): the stream processor's
        results list where each is stored (`Figure.ref`), read here with the client's blob
        fetcher; a figure carried inline is decoded. A figure that cannot be had is a
        `figure_unavailable` warning, not an error. With `ocrflux.figures.figure_files` the
        PNGs become the files to write beside a result saved as `<stem>.md`."""

        async def fetch(url: str) -> bytes:
            return await self._blob_fetcher().fetch(url, max_bytes=FIGURE_MAX_BYTES)

        return self._io.run(figure_pngs(result, fetch))

    # --- blobs and lifetime ----------------------------------------------------------------

    def _blob_store(self) -> BlobStore:
        if self._store is None:
            self._store = open_blob_store(self._blob_base_url, settings=self._blob_settings)
        return self._store

    def _blob_fetcher(self) -> BlobFetcher:
        if self._fetcher is None:
            self._fetcher = BlobFetcher(self._blob_settings, stores=(self._blob_store(),))
        return self._fetcher

    def close(self) -> None:
        """Flush and close the producer, end open readers, close blob connections."""
        for reader in list(self._readers):
            reader.close()
        self._readers.clear()
        if self._producer is not None:
            self._producer.flush(self._delivery_timeout_s)
            self._producer = None
        for closeable in (self._fetcher, self._store):
            if closeable is not None:
                self._io.run(closeable.close())
        self._fetcher = self._store = None
        self._io.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _content_type(data: bytes) -> str | None:
    try:
        return MIME_TYPES[sniff(data)]
    except (EmptyInput, UnsupportedType):
        return None


def _id_set(doc_ids: Iterable[str]) -> set[str]:
    """The doc_ids asked for; a lone string is one doc_id, not a set of characters."""
    return {doc_ids} if isinstance(doc_ids, str) else set(doc_ids)


def _key(message: Any) -> str | None:
    key = message.key()
    return key.decode(errors="replace") if key is not None else None


def _with_id(doc_id: str, result: ResultRecord) -> ResultRecord:
    """A result whose producer left `doc_id` empty takes it from the record's key."""
    return result if result.doc_id else result.model_copy(update={"doc_id": doc_id})
