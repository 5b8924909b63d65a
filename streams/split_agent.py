"""The split agent's handler: a document request in, page tasks out; bad input answered with a
failed result and a dlq record."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import ValidationError

from ocrflux.errors import InputError, OcrfluxError
from ocrflux.pages import defer_text_layer, text_layer_tables
from ocrflux.render_pool import shared_pool
from schemas.options import ConversionOptions
from schemas.records import (
    DocumentRequest,
    PageTask,
    ProgressEvent,
    ResultRecord,
    decode,
)
from schemas.results import ErrorInfo
from streams.metrics import WorkerMetrics
from streams.outbox import Blobs, Outbox
from streams.settings import WorkerSettings
from streams.split import request_doc_id, split_document
from streams.split_control import SplitControl
from streams.submitted import blob_fetch

_log = logging.getLogger(__name__)


def _key_text(key: bytes | None) -> str | None:
    return key.decode(errors="replace") if key else None


def _request_or_none(value: bytes) -> DocumentRequest | None:
    try:
        request = decode(value)
    except (ValidationError, ValueError):
        return None
    return request if isinstance(request, DocumentRequest) else None


class SplitHandler:
    def __init__(
        self,
        settings: WorkerSettings,
        outbox: Outbox,
        blobs: Blobs,
        metrics: WorkerMetrics,
        control: SplitControl | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.blobs = blobs
        self.metrics = metrics
        self.control = control  # cancels and finished documents (streams/split_control.py)

    async def handle(
        self, key: bytes | None, value: bytes, where: str = "", submission: str | None = None
    ) -> None:
        """Split one request; `submission` is its documents-topic position (`DocumentInfo`)."""
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
        _log.info(
            "splitting %s (%s) from %s",
            doc_id,
            request.filename or request.content_ref,
            where,
            extra={"doc_id": doc_id},
        )
        # Whether the request is cancelled or its document finished is looked up while the
        # document opens and its first pages render (the lookup reads the results topic up to
        # its end: tens of ms); nothing of the document is sent before the answer.
        answering = (
            asyncio.ensure_future(self.control.answered(request, doc_id, submission))
            if self.control
            else None
        )
        pending: list[asyncio.Future[Any]] = []
        sent = 0
        engine = request.options.engine or self.settings.ocrflux_engine
        vllm_configured = bool(self.settings.vllm_url)
        try:
            async for item in split_document(
                request,
                doc_id,
                fetch=blob_fetch(self.blobs),
                tables=text_layer_tables(engine, vllm_configured=vllm_configured),
                defer_text_layer=defer_text_layer(engine, vllm_configured=vllm_configured),
                max_bytes=self.settings.max_file_bytes,
                max_pages=self.settings.max_pages,
                renders=shared_pool(self.settings.render_processes),
                submission=submission,
            ):
                if answering is not None:
                    if await answering:
                        return
                    answering = None
                if self.control and await self.control.stopped(request, doc_id, item):
                    break
                if isinstance(item, ProgressEvent):
                    await self.outbox.progress(item)
                    continue
                topic = names.pages if isinstance(item, PageTask) else names.page_results
                routing = f"{doc_id}/{item.page}" if isinstance(item, PageTask) else doc_id
                pending.append(await self.outbox.send(topic, routing, item))
                sent += 1
                self.metrics.pages_split.inc()
                if len(pending) >= self.settings.ocrflux_split_outstanding:
                    # Bound the rendered pages waiting for delivery. A failed one holds its
                    # record until it is sent again: settle before rendering more, or an
                    # outage would keep the whole document's pages in memory.
                    oldest = pending.pop(0)
                    await asyncio.wait([oldest])
                    if oldest.cancelled() or oldest.exception() is not None:
                        await self.outbox.settle()
        except OcrfluxError as exc:
            if answering is None or not await answering:
                await self._fail(doc_id, key, value, exc, request.options, exc, request)
            return
        finally:
            if answering is not None and not answering.done():
                answering.cancel()  # the split itself raised: the lookup has no one to answer
        self.metrics.documents_split.inc()
        _log.info(
            "split %s: %d page records handed to Kafka", doc_id, sent, extra={"doc_id": doc_id}
        )

    async def answer_crash(self, key: bytes | None, value: bytes, exc: Exception) -> None:
        """A request whose split raised (a bug): a failed result and a dlq record, as for bad
        input, so the caller hears of it and the record is kept."""
        request = _request_or_none(value)
        doc_id = request_doc_id(request) if request is not None else _key_text(key)
        _log.error(
            "splitting the request keyed %r raised",
            _key_text(key),
            exc_info=exc,
            extra={"doc_id": doc_id},
        )
        options = request.options if request is not None else ConversionOptions()
        error = OcrfluxError(f"splitting failed: {exc!r}"[:500])
        await self._fail(doc_id, key, value, error, options, exc, request)

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
        _log.warning(
            "document %s rejected: %s: %s",
            doc_id,
            error.code,
            error.message,
            extra={"doc_id": doc_id},
        )
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
