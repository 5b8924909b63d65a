"""The direct driver: one document in, its result out, in-process (no Kafka).

Pages are rendered in page order, a few at once (in `renders`, a `RenderPool`, or in an
executor), and recognized concurrently, at most `page_concurrency` at once (rendering waits for
a free slot, so memory stays bounded whatever the page count). Merge detection for a page pair
starts as soon as both pages are done; table merges and the assembly follow the last page.

A caller is waiting, so a model outage longer than the client's bounded wait ends the
conversion at once with a `failed` result (`vllm_unavailable`): the caller can retry later.
Pages are never filled from text layers because the model was unreachable; only a page the
model answered badly, after its attempts, becomes a fallback page. For the `vllm` engine pages
render without their text layer (`ocrflux.pages.defer_text_layer`); a fallback page
takes its text layer then, from the still open document, in the executor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import TypedDict

from ocrflux.document import (
    build_result,
    detect,
    detection_warning,
    failed_result,
    merge_tables,
    pairs_to_detect,
)
from ocrflux.engines.base import Engine, Pair, with_text_layer
from ocrflux.errors import InputError, OcrfluxError
from ocrflux.figures import Crop, crop_figures, document_figures, with_crops
from ocrflux.head_start import HeadStart
from ocrflux.pages import OpenedDocument, OpenOptions, RenderedPage, open_options
from ocrflux.render_pool import PageRenderer, RenderPool
from schemas.options import ConversionOptions
from schemas.results import DocumentResult, ErrorInfo, PageResult, TokenUsage

ProgressCallback = Callable[[int, int], None]


async def convert_document(
    data: bytes,
    *,
    engine: Engine,
    options: ConversionOptions | None = None,
    source: str | None = None,
    doc_id: str = "",
    page_concurrency: int = 64,
    max_bytes: int | None = None,
    max_pages: int | None = None,
    executor: Executor | None = None,
    renders: RenderPool | None = None,
    progress: ProgressCallback | None = None,
    head_start: HeadStart | None = None,
) -> DocumentResult:
    """Convert one document. Bad input and backend failures come back as a `failed` result.
    `head_start`: its pages were forked off to render while the caller started up
    (`ocrflux convert`); it is used if it renders the way this conversion needs, and closed."""
    options = options or ConversionOptions()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    identity = _Identity(doc_id=doc_id, source=source, engine=engine.name, model=engine.model)
    how = open_options(engine.name, max_bytes=max_bytes, max_pages=max_pages)
    try:
        document = await loop.run_in_executor(executor, _open, data, how, head_start)
    except InputError as exc:
        return failed_result(exc, options=options, timings=_since(started), **identity)
    try:
        indices = document.page_indices(options.pages)
        renderer = await (renders or RenderPool(0)).open_renderer(
            document, data, pages=len(indices), executor=executor
        )
        run = _Run(engine, options, renderer, page_concurrency, progress, len(indices))
        try:
            await run.recognize_all(indices)
            render_done = time.monotonic()
            pairs = await run.pairs()
            merged = (
                {}
                if options.skip_cross_page_merge
                else await merge_tables(
                    engine,
                    run.done,
                    document.page_count,
                    pairs,
                    options.max_page_retries,
                    run.usage,
                )
            )
        finally:
            await run.cancel_detections()  # still running only when something failed
            renderer.close()
        crops, crop_warnings = await _crop(document, run.done, options, executor)
    except OcrfluxError as exc:
        return failed_result(exc, options=options, timings=_since(started), **identity)
    finally:
        await loop.run_in_executor(executor, document.close)
    timings = {
        "render_s": round(run.render_s, 4),
        "pages_s": round(render_done - started, 4),
        "merge_s": round(time.monotonic() - render_done, 4),
        "total_s": round(time.monotonic() - started, 4),
    }
    result = build_result(
        done=run.done,
        num_pages=document.page_count,
        pairs=pairs,
        merged_tables=merged,
        options=options,
        usage=run.usage,
        timings=timings,
        warnings=[*document.warnings, *run.warnings, *crop_warnings],
        **identity,
    )
    return with_crops(result, crops) if result.figures else result


def _open(data: bytes, how: OpenOptions, head_start: HeadStart | None) -> OpenedDocument:
    """The document from the head start if it opened it this way, else opened here."""
    if head_start is not None:
        document = head_start.open(data, how)
        if document is not None:
            return document
    return how.open(data)


async def _crop(
    document: OpenedDocument,
    done: dict[int, PageResult],
    options: ConversionOptions,
    executor: Executor | None,
) -> tuple[dict[int, Crop], list[ErrorInfo]]:
    """The figures of the recognized pages cropped from the open document (`figures=crop`)."""
    figures = [figure for on_page in document_figures(done).values() for _, figure in on_page]
    if not options.crop_figures or not figures:
        return {}, []
    job = partial(crop_figures, document, figures, options.figure_zoom)
    return await asyncio.get_running_loop().run_in_executor(executor, job)


class _Identity(TypedDict):
    doc_id: str
    source: str | None
    engine: str
    model: str | None


def _since(started: float) -> dict[str, float]:
    return {"total_s": round(time.monotonic() - started, 4)}


class _Run:
    """The state of one conversion: finished pages and the detections under way."""

    def __init__(
        self,
        engine: Engine,
        options: ConversionOptions,
        renderer: PageRenderer,
        concurrency: int,
        progress: ProgressCallback | None,
        total: int,
    ) -> None:
        self.engine = engine
        self.options = options
        self.renderer = renderer
        self.slots = asyncio.Semaphore(concurrency)
        self.progress = progress
        self.total = total
        self.done: dict[int, PageResult] = {}
        self.detections: dict[int, asyncio.Task[tuple[list[Pair], ErrorInfo | None]]] = {}
        self.warnings: list[ErrorInfo] = []
        self.usage = TokenUsage()
        self.render_s = 0.0

    async def recognize_all(self, indices: Sequence[int]) -> None:
        """Every page; the first `OcrfluxError` (the model unreachable) stops the others."""
        try:
            await self._recognize_all(indices)
        except* OcrfluxError as errors:
            raise errors.exceptions[0] from None

    async def _recognize_all(self, indices: Sequence[int]) -> None:
        rendering = asyncio.Semaphore(self.renderer.ahead)  # renders start in page order
        async with asyncio.TaskGroup() as group:
            for index in indices:
                await self.slots.acquire()
                await rendering.acquire()
                group.create_task(self._render_and_recognize(index, rendering))

    async def _render_and_recognize(self, index: int, rendering: asyncio.Semaphore) -> None:
        began = time.monotonic()
        try:
            page = await self.renderer.render(index)
        except InputError as exc:
            self.slots.release()
            self._finish(_unrenderable(index, exc))
            return
        finally:
            rendering.release()
        self.render_s += time.monotonic() - began
        await self._recognize(page)

    async def _recognize(self, page: RenderedPage) -> None:
        try:
            result = await self.engine.recognize_page(
                page, max_attempts=self.options.max_page_retries
            )
            if result.fallback and page.text_layer_deferred:
                result = with_text_layer(result, await self._text_layer(page.index))
        finally:
            self.slots.release()
        self._finish(result)

    async def _text_layer(self, index: int) -> str | None:
        """A failed page's text layer, taken now; None (no text) when it cannot be read."""
        try:
            return await self.renderer.text_layer(index)
        except InputError:
            return None

    def _finish(self, result: PageResult) -> None:
        self.done[result.index] = result
        if self.progress is not None:
            self.progress(len(self.done), self.total)
        if self.options.skip_cross_page_merge:
            return
        for first in pairs_to_detect(self.done, result.index):
            self.detections[first] = asyncio.create_task(
                detect(self.engine, self.done, first, self.options.max_page_retries, self.usage)
            )

    async def cancel_detections(self) -> None:
        running = [task for task in self.detections.values() if not task.done()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def pairs(self) -> dict[int, list[Pair]]:
        """Every page pair's detected pairs; a failed detection is also a warning."""
        found: dict[int, list[Pair]] = {}
        for first, task in sorted(self.detections.items()):
            pairs, error = await task
            if error is not None:
                self.warnings.append(detection_warning(first, error))
            if pairs:
                found[first] = pairs
        return found


def _unrenderable(index: int, exc: OcrfluxError) -> PageResult:
    return PageResult(
        index=index,
        source="none",
        fallback=True,
        error=ErrorInfo(code=exc.code, message=exc.message),
    )
