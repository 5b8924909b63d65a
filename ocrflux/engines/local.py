"""The `local` engine: real recognition on a CPU, no model server.

- Born-digital PDF pages are read from their text layer (`ocrflux.textlayer`, already on the
  `RenderedPage`): `source="text_layer"`, no OCR, a few milliseconds a page.
- Scanned pages, images, and pages whose text layer is unusable go through RapidOCR
  (`ocrflux.ocr`): `source="ocr"`. OCR runs in a thread pool the engine owns, one page per
  CPU at a time (each call uses one ONNX Runtime thread), never on the event loop.
- A page whose text layer is an invisible OCR layer over a scan (`TextLayer.origin ==
  "ocr_layer"`) is OCR'd too by default (`ocr_layer="ocr"`): the old layer's quality is unknown
  and its line structure is often poor, while ours is measured (BENCHMARKS.md). The layer is
  still used when our OCR finds no text or fails. `ocr_layer="use"` trusts the layer instead
  (fast, for archives known to be OCR'd well).

Cross-page merge uses a cheap rule instead of the model (`continuation_pairs`), and table
merges append rows (`merge_tables_without_model`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Literal

from ocrflux.engines.base import Pair
from ocrflux.errors import ModelUnavailable
from ocrflux.layout import ends_sentence, is_page_number
from ocrflux.merge import merge_tables_without_model
from ocrflux.ocr import MODEL_ID, OcrReader, ocr_elements
from ocrflux.page_parse import page_elements
from ocrflux.pages import RenderedPage
from ocrflux.settings import CoreSettings
from ocrflux.tables import column_count, is_table
from ocrflux.tasks import TaskOutcome
from schemas.results import ErrorInfo, PageResult

__all__ = ["LocalEngine", "OcrLayerPolicy", "continuation_pairs", "open_local_engine"]

OcrLayerPolicy = Literal["ocr", "use"]

_log = logging.getLogger(__name__)


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _edge(elements: Sequence[str], indices: range) -> int | None:
    """The first index in `indices` whose element is not a bare page number."""
    for index in indices:
        if not is_page_number(elements[index]):
            return index
    return None


def continuation_pairs(previous: Sequence[str], following: Sequence[str]) -> list[Pair]:
    """The cheap cross-page rule: which elements continue across the page boundary.

    The last element of `previous` and the first of `following` (page numbers skipped on
    both sides) pair when the first is a paragraph that does not end with terminal punctuation
    (`ocrflux.layout.ends_sentence`) and the second is a paragraph; a heading or a table on
    either side never pairs with text. Two tables pair when they have the same number of
    columns: a table cut by the page break (its rows are then appended, a repeated header
    dropped). Two different tables with equal widths back to back across a page break are
    joined too: the price of not having a model look at them.
    """
    i = _edge(previous, range(len(previous) - 1, -1, -1))
    j = _edge(following, range(len(following)))
    if i is None or j is None:
        return []
    last, first = previous[i], following[j]
    if is_table(last) and is_table(first):
        width = column_count(last)
        return [(i, j)] if width is not None and width == column_count(first) else []
    if is_table(last) or is_table(first) or last.startswith("# ") or first.startswith("# "):
        return []
    return [] if ends_sentence(last) else [(i, j)]


class LocalEngine:
    """Text layer where a PDF page has a usable one, RapidOCR everywhere else."""

    name = "local"

    def __init__(
        self,
        reader: OcrReader,
        executor: Executor,
        *,
        concurrency: int,
        ocr_layer: OcrLayerPolicy = "ocr",
    ) -> None:
        self.model: str | None = MODEL_ID
        self._reader = reader
        self._executor = executor
        self._slots = asyncio.Semaphore(concurrency)
        self._ocr_layer = ocr_layer

    def _ocr(self, png: bytes) -> list[str]:
        return ocr_elements(self._reader.read(png))

    async def wait_until_available(self, poll_s: float) -> None:
        return None  # no model server to wait for

    async def recognize_page(self, page: RenderedPage, *, max_attempts: int) -> PageResult:
        """Text layer or OCR; `max_attempts` is ignored (both are deterministic)."""
        layer = page.text_layer
        origin = getattr(layer, "origin", "born_digital")
        if layer and (origin == "born_digital" or self._ocr_layer == "use"):
            return PageResult(index=page.index, elements=page_elements(layer), source="text_layer")
        loop = asyncio.get_running_loop()
        async with self._slots:
            started = time.monotonic()
            try:
                elements = await loop.run_in_executor(self._executor, self._ocr, page.png)
            except Exception as exc:  # anything the OCR stack raises is this page's failure
                _log.exception("OCR failed on page %d", page.index)
                return self._failed(page, exc, time.monotonic() - started)
        latency = time.monotonic() - started
        if not elements and layer:
            elements = page_elements(layer)
            return PageResult(
                index=page.index, elements=elements, source="text_layer", latency_s=latency
            )
        return PageResult(
            index=page.index, elements=elements, source="ocr", attempts=1, latency_s=latency
        )

    def _failed(self, page: RenderedPage, exc: Exception, latency: float) -> PageResult:
        elements = page_elements(page.text_layer) if page.text_layer else []
        return PageResult(
            index=page.index,
            elements=elements,
            source="text_layer" if elements else "none",
            fallback=True,
            attempts=1,
            latency_s=latency,
            error=ErrorInfo(code="task_failed", message=f"OCR failed: {exc}"),
        )

    async def detect_merges(
        self, previous: Sequence[str], following: Sequence[str], *, max_attempts: int
    ) -> TaskOutcome[list[Pair]]:
        return TaskOutcome(value=continuation_pairs(previous, following), attempts=1)

    async def merge_tables(
        self, table1: str, table2: str, *, max_attempts: int
    ) -> TaskOutcome[str]:
        merged = merge_tables_without_model(table1, table2)
        if merged is None:
            return TaskOutcome(
                attempts=1,
                error=ErrorInfo(code="task_failed", message="the tables' column counts differ"),
            )
        return TaskOutcome(value=merged, attempts=1)


@asynccontextmanager
async def open_local_engine(
    settings: CoreSettings,
    *,
    workers: int | None = None,
    ocr_layer: OcrLayerPolicy = "ocr",
) -> AsyncIterator[LocalEngine]:
    """A `LocalEngine` with its OCR thread pool (`workers`, default: one per CPU); the pool is
    shut down on exit, after the pages it is working on."""
    del settings  # the local engine has no settings of its own yet; the signature is shared
    try:
        reader = OcrReader(threads=1)
    except (ImportError, FileNotFoundError) as exc:
        raise ModelUnavailable(f"the local engine's OCR (rapidocr) is unusable: {exc}") from exc
    workers = workers or cpu_count()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocrflux-ocr")
    try:
        yield LocalEngine(reader, executor, concurrency=workers, ocr_layer=ocr_layer)
    finally:
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
