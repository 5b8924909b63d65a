"""What split asks before and while it emits a document's pages: is the submission cancelled
(stop, and tell the assembler), or is the document finished already (answer the new submission
with its `completed` result, read back from the results topic, without rendering a page)."""

from __future__ import annotations

import logging

from schemas.records import (
    DocumentRequest,
    PageDone,
    PageTask,
    ProgressEvent,
)
from streams.cancels import Cancels, cancelled_from_info, cancelled_from_request
from streams.finished import FinishedDocuments
from streams.outbox import Outbox
from streams.result_reader import ResultReader

__all__ = ["SplitControl"]

_log = logging.getLogger(__name__)


class SplitControl:
    def __init__(
        self,
        outbox: Outbox,
        cancels: Cancels,
        finished: FinishedDocuments,
        results: ResultReader,
    ) -> None:
        self.outbox = outbox
        self.cancels = cancels
        self.finished = finished
        self.results = results

    async def answered(self, request: DocumentRequest, doc_id: str, submission: str | None) -> bool:
        """True when the request needs no split: it is cancelled (the assembler is told), or its
        document's `completed` result was sent again with this request's metadata."""
        names = self.outbox.names
        # The cancels are followed in the background (a catch-up here would hold each request
        # for a fetch's wait); the finished documents are caught up with now.
        if self.cancels.covers(doc_id, request.submitted_at):
            _log.info("%s is cancelled; not splitting it", doc_id, extra={"doc_id": doc_id})
            cancelled = cancelled_from_request(doc_id, request, submission)
            await self.outbox.send(names.page_results, doc_id, cancelled)
            return True
        await self.finished.catch_up()
        where = self.finished.where(doc_id)
        if where is None:
            return False
        old = await self.results.read(doc_id, *where)
        if old is None or old.status != "completed":
            return False  # compacted away meanwhile: convert it again
        update = {"metadata": request.metadata, "reply_to": request.reply_to}
        await self.outbox.send(names.results, doc_id, old.model_copy(update=update))
        total = old.num_pages
        await self.outbox.progress(
            ProgressEvent(doc_id=doc_id, stage="completed", pages_done=total, pages_total=total)
        )
        _log.info(
            "answered a new submission of %s with its result", doc_id, extra={"doc_id": doc_id}
        )
        return True

    async def stopped(
        self, request: DocumentRequest, doc_id: str, item: PageTask | PageDone | ProgressEvent
    ) -> bool:
        """Before emitting `item`: True (and the assembler told) when the document was cancelled
        meanwhile, so split emits no more of its pages."""
        if isinstance(item, ProgressEvent) or not self.cancels.covers(doc_id, request.submitted_at):
            return False
        _log.info(
            "%s cancelled: split stops before page %d",
            doc_id,
            _page_of(item),
            extra={"doc_id": doc_id},
        )
        cancelled = cancelled_from_info(doc_id, item.info, "split")
        await self.outbox.send(self.outbox.names.page_results, doc_id, cancelled)
        return True

    async def close(self) -> None:
        """Closes what it reads the results with (the cancels are shared with recognize)."""
        await self.finished.close()
        await self.results.close()


def _page_of(item: PageTask | PageDone) -> int:
    return item.page if isinstance(item, PageTask) else item.result.index
