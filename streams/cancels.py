"""Cancelled documents, as every role sees them: the compacted `<prefix>.cancels` topic read
whole by each worker (outside any consumer group), so that split stops emitting a document's
pages and recognize skips its queued pages as soon as the cancel is on Kafka.

A cancel covers the submissions made before it (`CancelRequest.requested_at` against the
request's `submitted_at`): a document submitted again after its cancel is converted again. The
stage that stops sends a `DocumentCancelled` record to page-results; the assembler answers the
first one of a submission with its `cancelled` result and ignores the rest.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from schemas.records import CancelRequest, DocumentCancelled, DocumentInfo, DocumentRequest, decode
from streams.runtime.topic_view import TopicView

__all__ = ["Cancels", "cancelled_from_info", "cancelled_from_request", "covers"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


class Cancels:
    """doc_id -> when it was cancelled, kept current by `follow()` (run it in the background)."""

    def __init__(self, topic: str, options: dict[str, Any]) -> None:
        self._requested: dict[str, float] = {}
        # One event per document that work is waiting on; gone once nobody waits.
        self._arrived: weakref.WeakValueDictionary[str, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        self._view = TopicView(topic, options, self._apply)

    def _apply(self, message: ConsumerRecord[bytes, bytes]) -> None:
        key, value = message.key, message.value
        if key is None:
            return
        if value is None:  # a tombstone withdraws the cancel
            self._requested.pop(key.decode(errors="replace"), None)
            return
        try:
            record = decode(value)
        except (ValidationError, ValueError):
            _log.warning("ignoring a record on the cancels topic that is not a cancel_request")
            return
        if isinstance(record, CancelRequest):
            self._requested[record.doc_id] = record.requested_at
            arrived = self._arrived.pop(record.doc_id, None)
            if arrived is not None:
                arrived.set()

    def covers(self, doc_id: str, submitted_at: float | None) -> bool:
        """Whether the submission of `doc_id` made at `submitted_at` is cancelled."""
        return covers(self._requested.get(doc_id), submitted_at)

    async def unless_cancelled(
        self, doc_id: str, submitted_at: float | None, work: Awaitable[T]
    ) -> T | None:
        """`work`'s outcome, or None once a cancel covers the submission first (the work is
        then cancelled: a model request in flight is abandoned, one still waiting for a slot is
        never sent)."""
        task = asyncio.ensure_future(work)
        try:
            while not self.covers(doc_id, submitted_at):
                arrived = self._arrived.setdefault(doc_id, asyncio.Event())
                waiting = asyncio.ensure_future(arrived.wait())
                try:
                    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiting.cancel()
                if task.done():
                    return task.result()
            return None
        finally:
            if not task.done():  # cancelled, or the caller itself was
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def follow(self) -> None:
        await self._view.follow()

    async def close(self) -> None:
        await self._view.close()


def covers(requested_at: float | None, submitted_at: float | None) -> bool:
    """Whether a cancel requested at `requested_at` (None: none) covers a submission made at
    `submitted_at` (None: unknown, taken as earlier)."""
    if requested_at is None:
        return False
    return submitted_at is None or submitted_at <= requested_at


def cancelled_from_request(
    doc_id: str, request: DocumentRequest, submission: str | None
) -> DocumentCancelled:
    """Split stopped before the document was opened."""
    return DocumentCancelled(
        doc_id=doc_id,
        submission=submission,
        stage="split",
        output_format=request.options.output_format,
        source=request.filename or request.content_ref,
        metadata=request.metadata,
        reply_to=request.reply_to,
    )


def cancelled_from_info(
    doc_id: str, info: DocumentInfo, stage: Literal["split", "recognize"]
) -> DocumentCancelled:
    """A stage stopped with the document's pages in hand."""
    return DocumentCancelled(
        doc_id=doc_id,
        submission=info.submission,
        stage=stage,
        num_pages=info.num_pages,
        output_format=info.options.output_format,
        source=info.source,
        metadata=info.metadata,
        reply_to=info.reply_to,
    )
