"""The text layers of pages split rendered without them (`PageTask.text_layer_deferred`), read
from the documents as they were submitted (`streams.submitted`): what a page the model failed
falls back to in the recognize stage."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from ocrflux.errors import OcrfluxError
from ocrflux.pages import TableMode
from ocrflux.render import Document, open_document
from schemas.records import PageTask
from streams.outbox import Blobs
from streams.result_reader import DocumentReader
from streams.submitted import submitted_bytes

__all__ = ["KEEP_DOCUMENTS", "TextLayers"]

#: Documents kept for the text layers of failed pages (the most recent): a model answering
#: badly can fail many pages of one document, which then read the request back once.
KEEP_DOCUMENTS = 2


class TextLayers:
    """Text layers of pages split rendered without them, from the documents as submitted
    (`streams.submitted`). The last `keep` documents stay read (their bytes) and open; every
    PyMuPDF call (opening, taking a text layer, closing an older document) runs on the one
    thread this owns, so no document is closed while a page of it is read."""

    def __init__(
        self, documents: DocumentReader, blobs: Blobs, max_bytes: int, keep: int = KEEP_DOCUMENTS
    ) -> None:
        self._documents = documents
        self._blobs = blobs
        self._max_bytes = max_bytes
        self._keep = keep
        self._bytes: OrderedDict[str, asyncio.Future[bytes]] = OrderedDict()
        self._open: OrderedDict[tuple[str, TableMode], Document] = OrderedDict()  # its thread's
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="text-layers")

    async def take(self, task: PageTask, tables: TableMode) -> str | None:
        """`task`'s page's text layer (None: the page has none); raises `OcrfluxError` when the
        request cannot be read back or the page's text cannot be read."""
        submission = task.info.submission
        if submission is None:
            raise OcrfluxError("the page task names no request to read its document from")
        data = await self._data(submission)
        job = partial(self._text_layer, (submission, tables), data, task.info.num_pages, task.page)
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_all)
        self._executor.shutdown()
        self._bytes.clear()

    async def _data(self, submission: str) -> bytes:
        reading = self._bytes.get(submission)
        if reading is None:  # pages failing at once share one read
            reading = asyncio.ensure_future(
                submitted_bytes(self._documents, self._blobs, submission, max_bytes=self._max_bytes)
            )
            self._bytes[submission] = reading
            while len(self._bytes) > self._keep:
                self._bytes.popitem(last=False)
        else:
            self._bytes.move_to_end(submission)
        try:
            return await asyncio.shield(reading)  # a cancelled page leaves the read to others
        except Exception:
            if self._bytes.get(submission) is reading:
                del self._bytes[submission]  # not kept: the next failed page tries again
            raise

    def _text_layer(
        self, key: tuple[str, TableMode], data: bytes, page_count: int, index: int
    ) -> str | None:
        document = self._open.get(key)
        if document is None:
            document = open_document(
                data, max_bytes=len(data), max_pages=page_count, text_layer_tables=key[1]
            )
            self._open[key] = document
            while len(self._open) > self._keep:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(key)
        return document.text_layer(index)

    def _close_all(self) -> None:
        while self._open:
            self._open.popitem()[1].close()
