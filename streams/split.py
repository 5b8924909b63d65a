"""The split stage: one document request in, one page task per page out, in page order.

Only the page being handed out and the few pages being rendered (`PageRenderer.ahead`: in the
render pool's processes, or in an executor) are held in memory; the agent bounds how many
rendered pages wait for delivery. Input problems raise `InputError` (the
agent answers them with a failed result and a dlq record); a single page that cannot be
rendered becomes a failed page, not a failed document. Pages rendered without their text layer
(`defer_text_layer`, for the `vllm` engine) say so (`PageTask.text_layer_deferred`): recognize
takes it from the request only for a page the model fails.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from functools import partial
from itertools import islice

from ocrflux.errors import InputError
from ocrflux.identity import content_digest, doc_id_for
from ocrflux.pages import RenderedPage, TableMode
from ocrflux.render import open_document
from ocrflux.render_pool import PageRenderer, RenderPool
from schemas.records import DocumentInfo, DocumentRequest, PageDone, PageTask, ProgressEvent
from schemas.results import ErrorInfo, PageResult
from streams.submitted import Fetch, document_bytes


def request_doc_id(request: DocumentRequest) -> str:
    """The producer's doc_id, else the content hash + options (the default of every client)."""
    if request.doc_id:
        return request.doc_id
    if request.content is not None:
        return doc_id_for(content_digest(request.content), request.options)
    if request.content_sha256:
        return doc_id_for(request.content_sha256, request.options)
    # A reference without a digest: its address stands in for the content.
    ref = hashlib.sha256(str(request.content_ref).encode()).hexdigest()
    return doc_id_for(ref, request.options)


async def split_document(
    request: DocumentRequest,
    doc_id: str,
    *,
    fetch: Fetch,
    max_bytes: int,
    max_pages: int,
    tables: TableMode = "ruled",
    defer_text_layer: bool = False,
    executor: Executor | None = None,
    renders: RenderPool | None = None,
    submission: str | None = None,
) -> AsyncIterator[PageTask | PageDone | ProgressEvent]:
    """Page tasks (and failed pages) of one document, in page order, after a progress event.

    `tables` is the text layers' table mode (`ocrflux.pages.text_layer_tables`);
    `defer_text_layer` leaves them out of the page tasks (`ocrflux.engines.factory`);
    `submission` names the request's position on the documents topic (`DocumentInfo`)."""
    loop = asyncio.get_running_loop()
    data = await document_bytes(request, fetch, max_bytes)
    document = await loop.run_in_executor(
        executor,
        partial(
            open_document,
            data,
            max_bytes=max_bytes,
            max_pages=max_pages,
            text_layer_tables=tables,
            defer_text_layer=defer_text_layer,
        ),
    )
    ahead: deque[tuple[int, asyncio.Future[RenderedPage]]] = deque()
    renderer: PageRenderer | None = None
    try:
        indices = document.page_indices(request.options.pages)
        renderer = await (renders or RenderPool(0)).open_renderer(
            document, data, pages=len(indices), executor=executor
        )
        del data  # the parser (and the render pool's spooled copy) hold what they need
        info = DocumentInfo(
            first_page=indices[0],
            stop_page=indices[-1] + 1,
            num_pages=document.page_count,
            options=request.options,
            source=request.filename or request.content_ref,
            metadata=request.metadata,
            reply_to=request.reply_to,
            submitted_at=request.submitted_at,
            submission=submission,
            warnings=document.warnings,
        )
        waiting = iter(indices)
        pages = renderer

        def render_ahead() -> None:
            for following in islice(waiting, pages.ahead - len(ahead)):
                ahead.append((following, asyncio.ensure_future(pages.render(following))))

        # The first pages render while the progress event is handled: split looks up whether
        # the document is cancelled or finished before sending anything of it (tens of ms).
        render_ahead()
        yield ProgressEvent(doc_id=doc_id, stage="split", pages_total=len(indices))
        while True:
            render_ahead()
            if not ahead:
                break
            index, rendering = ahead.popleft()
            try:
                page = await rendering
            except InputError as exc:
                yield PageDone(
                    doc_id=doc_id,
                    info=info,
                    result=PageResult(
                        index=index,
                        source="none",
                        fallback=True,
                        error=ErrorInfo(code=exc.code, message=exc.message),
                    ),
                )
                continue
            yield PageTask(
                doc_id=doc_id,
                page=index,
                info=info,
                png=page.png,
                width=page.width,
                height=page.height,
                text_layer=page.text_layer,
                text_layer_deferred=page.text_layer_deferred,
            )
    finally:
        # Renders still running (the consumer stopped early) finish before the document closes.
        await asyncio.gather(*(rendering for _, rendering in ahead), return_exceptions=True)
        if renderer is not None:
            renderer.close()
        await loop.run_in_executor(executor, document.close)
