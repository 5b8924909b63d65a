"""The engine interface: the three OCRFlux tasks, whatever does them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ocrflux.page_parse import page_elements
from ocrflux.pages import RenderedPage
from ocrflux.tasks import TaskOutcome
from schemas.results import ErrorInfo, PageResult

Pair = tuple[int, int]


class Engine(Protocol):
    """One recognizer. Bad answers come back as data (a fallback page, a failed outcome); the
    one exception is `ModelUnavailable`: no model server answered within the bounded wait, which
    says nothing about the page and is left to the driver (fail clearly, or wait and retry)."""

    name: str
    model: str | None

    async def wait_until_available(self, poll_s: float) -> None:
        """Return once the engine's model answers again (at once for engines without one)."""
        ...

    async def recognize_page(self, page: RenderedPage, *, max_attempts: int) -> PageResult: ...

    async def detect_merges(
        self, previous: Sequence[str], following: Sequence[str], *, max_attempts: int
    ) -> TaskOutcome[list[Pair]]: ...

    async def merge_tables(
        self, table1: str, table2: str, *, max_attempts: int
    ) -> TaskOutcome[str]: ...


def fallback_page(page: RenderedPage, outcome: TaskOutcome[Any]) -> PageResult:
    """A page the model failed: its text layer when it has one (**Ours**), else no text.

    A page rendered without its text layer (`RenderedPage.text_layer_deferred`) comes back
    without text; the driver, which still has the document, takes the page's text layer and
    fills the result with `with_text_layer`."""
    result = PageResult(
        index=page.index,
        source="none",
        fallback=True,
        attempts=outcome.attempts,
        usage=outcome.usage,
        latency_s=outcome.latency_s,
        error=outcome.error or ErrorInfo(code="task_failed", message="page not recognized"),
    )
    return with_text_layer(result, page.text_layer)


def with_text_layer(result: PageResult, text_layer: str | None) -> PageResult:
    """A fallback page's result with `text_layer` as its elements (`source="text_layer"`), its
    error and usage kept; as it is when the text layer is empty or None."""
    elements = page_elements(text_layer) if text_layer else []
    if not elements:
        return result
    return result.model_copy(update={"elements": elements, "source": "text_layer"})
