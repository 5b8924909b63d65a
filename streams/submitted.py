"""A document as it was submitted, read back from the documents topic after it was split.

No role keeps document bytes once split has rendered them. A role that needs them later reads
the request again at the position its pages name (`DocumentInfo.submission`, "partition@offset"
of the documents topic) and takes its bytes inline, or from the blob store when the request only
referred to them (claim check). The assembler crops figures from them (streams/figure_store.py);
recognize takes the text layer of a page the model failed when split left it out
(streams/recognize.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ocrflux.errors import OcrfluxError
from schemas.records import DocumentRequest
from streams.outbox import Blobs
from streams.result_reader import DocumentReader

__all__ = ["Fetch", "blob_fetch", "document_bytes", "submitted_bytes"]

#: Reads a reference: (url, max_bytes, expected sha256 or None) -> bytes, raising FetchFailed.
Fetch = Callable[[str, int, str | None], Awaitable[bytes]]


def blob_fetch(blobs: Blobs) -> Fetch:
    """`Fetch` from the blob store."""

    async def fetch(url: str, max_bytes: int, sha256: str | None) -> bytes:
        return await blobs.fetch(url, max_bytes=max_bytes, expected_sha256=sha256)

    return fetch


async def document_bytes(request: DocumentRequest, fetch: Fetch, max_bytes: int) -> bytes:
    """A request's document: inline, or fetched from where it refers (claim check)."""
    if request.content is not None:
        return request.content
    assert request.content_ref is not None  # the record's validator guarantees one of the two
    return await fetch(request.content_ref, max_bytes, request.content_sha256)


async def submitted_bytes(
    documents: DocumentReader, blobs: Blobs, submission: str | None, *, max_bytes: int
) -> bytes:
    """The bytes of the document requested at `submission`; raises `OcrfluxError` when the
    request is no longer on the topic (retention, deleted records, no position known) and
    `FetchFailed` when its referenced bytes cannot be fetched (over `max_bytes`, gone, changed).
    """
    request = await documents.request_at(submission) if submission else None
    if request is None:
        raise OcrfluxError(f"the request at documents {submission} is no longer there")
    return await document_bytes(request, blob_fetch(blobs), max_bytes)
