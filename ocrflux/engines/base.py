"""The engine interface: the three OCRFlux tasks, whatever does them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ocrflux.page_parse import page_elements
from ocrflux.render import RenderedPage
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
    """A page the model failed: its text layer when it has one (**Ours**), else no text."""
    elements = page_elements(page.text_layer) if page.text_layer else []
    return PageResult(
        index=page.index,
        elements=elements,
        source="text_layer" if elements else "none",
        fallback=True,
        attempts=outcome.attempts,
        usage=outcome.usage,
        latency_s=outcome.latency_s,
        error=outcome.error or ErrorInfo(code="task_failed", message="page not recognized"),
    )
