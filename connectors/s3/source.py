"""The S3 source: discover object versions, read each new one once to hash it, and submit it as a
claim-check document request together with its ledger entry.

    discovery (listing | SQS events) -> rules -> ledger check -> read + SHA-256 (N at once)
        -> one Kafka transaction per chunk: requests + ledger entries -> ack (SQS delete)

The bytes stay in the bucket: a request carries `content_ref=s3://bucket/key` with the SHA-256
and length of the version we read, and the worker's split agent refuses bytes that no longer
match (the object was overwritten meanwhile; the new version is discovered and submitted on its
own). Errors of the store or of Kafka end the current attempt: one log line, then exponential
backoff, and the attempt is repeated; nothing is lost, since only committed submissions reach
the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import TypeVar

from connectors.s3.discovery import Batch, Discovery
from connectors.s3.discovery_list import ListingDiscovery
from connectors.s3.discovery_sqs import SqsDiscovery
from connectors.s3.errors import FatalError, ObjectChanged, TransientError
from connectors.s3.filters import ObjectFilter
from connectors.s3.ledger import (
    Ledger,
    LedgerEntry,
    ensure_ledger_topic,
    ledger_topic,
    load_ledger,
    object_doc_id,
)
from connectors.s3.metrics import SourceMetrics
from connectors.s3.objects import Digest, ObjectInfo, ObjectStore
from connectors.s3.retry import Backoff, back_off
from connectors.s3.settings import S3SourceSettings
from connectors.s3.submitter import Submitter
from ocrflux.errors import EmptyInput, UnsupportedType
from ocrflux.sniff import MIME_TYPES, sniff
from schemas.options import ConversionOptions
from schemas.records import DocumentRequest
from streams.kafka import KafkaClientError, ensure_topics

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Metadata keys that every request of the source carries (the sink reads them back).
META_BUCKET, META_KEY, META_ETAG = "s3.bucket", "s3.key", "s3.etag"
META_REVISION, META_SUBMITTED_AT = "s3.revision", "s3.submitted_at"


@dataclass
class _Prepared:
    """The outcome for the versions of one key in a batch: a submission, or nothing to do."""

    indices: list[int]
    request: DocumentRequest | None = None
    entry: LedgerEntry | None = None


@dataclass
class _PassCounts:
    seen: int = 0
    submitted: int = 0
    known: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


class S3Source:
    def __init__(
        self,
        settings: S3SourceSettings,
        *,
        stop: asyncio.Event,
        metrics: SourceMetrics | None = None,
        options: ConversionOptions | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.metrics = metrics or SourceMetrics()
        self.options = options or settings.conversion_options
        self.bucket = settings.ocrflux_s3_bucket
        self.prefix = settings.ocrflux_s3_prefix
        self.rules = ObjectFilter.from_settings(settings)
        self.store = ObjectStore(settings.client_args())
        self.submitter = Submitter(settings, settings.transactional_id)
        self.backoff = Backoff(settings.ocrflux_s3_retry_initial_s, settings.ocrflux_s3_retry_max_s)
        self.ledger = Ledger(self.bucket, self.prefix)
        self.discovery = self._discovery()
        self._initial_scan_done = not (
            settings.ocrflux_s3_discovery == "sqs" and settings.ocrflux_s3_initial_scan
        )
        self._counts = _PassCounts()
        self._passes = 0
        self._ready = False

    def _discovery(self) -> Discovery:
        s = self.settings
        if s.ocrflux_s3_discovery == "list":
            return ListingDiscovery(
                self.store,
                self.bucket,
                self.prefix,
                interval_s=s.ocrflux_s3_poll_interval_s,
                stop=self.stop,
            )
        if not s.ocrflux_s3_queue_url:
            raise ValueError("SQS discovery needs a queue URL (--queue-url)")
        return SqsDiscovery(
            s.client_args(s.sqs_endpoint_url),
            s.ocrflux_s3_queue_url,
            self.bucket,
            wait_s=s.ocrflux_s3_poll_interval_s,
            visibility_timeout_s=s.ocrflux_s3_visibility_timeout_s,
            stop=self.stop,
            metrics=self.metrics,
        )

    # --- the run loop ------------------------------------------------------------------------

    async def run(self) -> int:
        """Until the stop event is set: 0 then; 1 after a fatal error."""
        try:
            while not self.stop.is_set():
                try:
                    await self._start()
                    await self._initial_scan()
                    async with aclosing(self.discovery.batches()) as batches:
                        await self._consume(batches)
                except (TransientError, KafkaClientError) as exc:
                    if await self._back_off(exc):
                        break
                except FatalError as exc:
                    log.error("%s", exc)
                    return 1
        finally:
            await self._close()
        log.info("s3-source stopped")
        return 0

    async def _consume(self, batches: AsyncIterator[Batch]) -> None:
        async for batch in batches:
            await self.handle(batch)
            self.backoff.reset()
            self.metrics.last_success.set_to_current_time()
            if self.stop.is_set():
                return

    async def _initial_scan(self) -> None:
        if self._initial_scan_done:
            return
        scan = ListingDiscovery(
            self.store, self.bucket, self.prefix, interval_s=0, stop=self.stop, once=True
        )
        async with aclosing(scan.batches()) as batches:
            await self._consume(batches)
        self._initial_scan_done = True

    async def _back_off(self, exc: Exception) -> bool:
        return await back_off(exc, self.backoff, self.metrics.errors, self.stop, log)

    async def _start(self) -> None:
        """Topics, transactions, then the ledger (after the predecessor's open transaction, if
        any, was aborted when the submitter started)."""
        if self._ready and self.submitter.started:
            return
        self._ready = False
        await asyncio.to_thread(ensure_topics, self.settings)
        if await asyncio.to_thread(ensure_ledger_topic, self.settings):
            log.info("created the ledger topic %s", ledger_topic(self.settings))
        if not self.submitter.started:
            await self.submitter.start()
        self.ledger = await load_ledger(self.settings, self.bucket, self.prefix)
        self.metrics.ledger_entries.set(len(self.ledger))
        s = self.settings
        how = (
            f"listing every {s.ocrflux_s3_poll_interval_s:g}s"
            if s.ocrflux_s3_discovery == "list"
            else f"SQS events from {s.ocrflux_s3_queue_url}"
        )
        log.info(
            "s3-source ready: watching s3://%s/%s by %s; the ledger holds %d object(s); "
            "submitting to %s",
            self.bucket,
            self.prefix,
            how,
            len(self.ledger),
            s.topics.documents,
        )
        self._ready = True

    async def _close(self) -> None:
        await self.discovery.close()
        await self.store.close()
        await self.submitter.close()

    # --- one batch ---------------------------------------------------------------------------

    async def handle(self, batch: Batch) -> None:
        """Submit what is new in `batch`, a chunk of keys at a time; ack what was handled."""
        handled: set[int] = set()
        try:
            by_key: dict[str, list[int]] = {}
            for index, obj in enumerate(batch.objects):
                self.metrics.objects_seen.inc()
                self._counts.seen += 1
                reason = self.rules.reason(obj)
                if reason is None and self.ledger.submitted(obj.key, obj.etag):
                    reason = "submitted"
                if reason is not None:
                    self._skip(reason)
                    handled.add(index)
                else:
                    by_key.setdefault(obj.key, []).append(index)
            groups = list(by_key.values())
            size = self.settings.ocrflux_s3_concurrency
            for start in range(0, len(groups), size):
                if self.stop.is_set():
                    break
                chunk = groups[start : start + size]
                prepared = await _all([self._prepare(batch.objects, group) for group in chunk])
                await self._submit([p for p in prepared if p.request is not None])
                for p in prepared:
                    handled.update(p.indices)
        finally:
            await batch.ack(handled)
        if batch.end_of_pass:
            self._end_of_pass()

    async def _prepare(self, objects: Sequence[ObjectInfo], indices: list[int]) -> _Prepared:
        """Read the announced versions of one key (in order, distinct ETags) until one is still
        there; only the current version can be, so at most one is submitted."""
        seen: set[str] = set()
        for index in indices:
            obj = objects[index]
            if obj.etag in seen or self.ledger.submitted(obj.key, obj.etag):
                continue
            seen.add(obj.etag)
            try:
                accept = self.rules.accepts_type if self.rules.checks_type else None
                digest = await self.store.digest(obj, accept_type=accept)
            except ObjectChanged as exc:
                log.info("skipping %s: %s", obj.url, exc)
                self._skip("changed")
                continue
            if digest is None:
                self._skip("content_type")
                return _Prepared(indices)
            self.metrics.bytes_read.inc(digest.size)
            if digest.etag != obj.etag:  # the event named no version: the one we read
                obj = replace(obj, etag=digest.etag)
            request, entry = self._request(obj, digest)
            return _Prepared(indices, request, entry)
        return _Prepared(indices)

    def _request(self, obj: ObjectInfo, digest: Digest) -> tuple[DocumentRequest, LedgerEntry]:
        revision = self.ledger.next_revision(obj.key)
        doc_id = object_doc_id(digest.sha256, obj.bucket, obj.key, revision, self.options)
        submitted_at = time.time()
        entry = LedgerEntry(
            bucket=obj.bucket,
            key=obj.key,
            etag=obj.etag,
            doc_id=doc_id,
            content_sha256=digest.sha256,
            size=digest.size,
            revision=revision,
            submitted_at=submitted_at,
        )
        request = DocumentRequest(
            doc_id=doc_id,
            content_ref=obj.url,
            content_sha256=digest.sha256,
            content_length=digest.size,
            filename=posixpath.basename(obj.key) or obj.key,
            content_type=_sniffed_type(digest.head) or digest.content_type,
            options=self.options,
            metadata={
                META_BUCKET: obj.bucket,
                META_KEY: obj.key,
                META_ETAG: obj.etag,
                META_REVISION: str(revision),
                META_SUBMITTED_AT: f"{submitted_at:.6f}",
            },
            submitted_at=submitted_at,
        )
        return request, entry

    async def _submit(self, prepared: list[_Prepared]) -> None:
        if not prepared:
            return
        pairs = [(p.request, p.entry) for p in prepared if p.request and p.entry]
        await self.submitter.submit(pairs)
        for request, entry in pairs:
            self.ledger.record(entry)
            self.metrics.submitted.inc()
            self._counts.submitted += 1
            log.info(
                "submitted s3://%s/%s (etag %s, %d bytes, revision %d) as %s",
                entry.bucket,
                entry.key,
                entry.etag,
                entry.size,
                entry.revision,
                request.doc_id,
            )
        self.metrics.ledger_entries.set(len(self.ledger))

    def _skip(self, reason: str) -> None:
        self.metrics.skipped.labels(reason).inc()
        if reason == "submitted":
            self._counts.known += 1
        else:
            self._counts.skipped[reason] = self._counts.skipped.get(reason, 0) + 1

    def _end_of_pass(self) -> None:
        counts, self._counts = self._counts, _PassCounts()
        self._passes += 1
        level = logging.INFO if counts.submitted or self._passes == 1 else logging.DEBUG
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(counts.skipped.items())) or "none"
        log.log(
            level,
            "listing pass %d: %d object(s) under s3://%s/%s, %d submitted, %d already "
            "submitted, skipped: %s",
            self._passes,
            counts.seen,
            self.bucket,
            self.prefix,
            counts.submitted,
            counts.known,
            skipped,
        )


def _sniffed_type(head: bytes) -> str | None:
    try:
        return MIME_TYPES[sniff(head)]
    except (EmptyInput, UnsupportedType):
        return None


async def _all(awaitables: list[Awaitable[T]]) -> list[T]:
    """Await all at once; on the first error cancel the rest and raise that error."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
