"""The `vllm` engine: OCRFlux-3B over an OpenAI-compatible server, as the protocol prescribes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ocrflux import prompts
from ocrflux.chat import ChatCompleter
from ocrflux.engines.base import Pair, fallback_page
from ocrflux.figures import page_figures
from ocrflux.merge import accept_merged_table, merge_tables_without_model, parse_merge_pairs
from ocrflux.page_parse import AnswerRejected, page_elements, parse_page_answer
from ocrflux.pages import RenderedPage
from ocrflux.tasks import TaskOutcome, run_task
from schemas.results import ErrorInfo, PageResult

#: Tokens the prompt text, the blank image and chat template take besides the two tables.
_MERGE_OVERHEAD_TOKENS = 400
#: A conservative characters-per-token figure for HTML tables (markup tokenizes densely).
_CHARS_PER_TOKEN = 2.5


def _accept_table(content: str) -> str:
    merged = accept_merged_table(content)
    if merged is None:
        raise AnswerRejected("not_table", content[:80])
    return merged


class VllmEngine:
    name = "vllm"

    def __init__(
        self, completer: ChatCompleter, *, model: str, max_tokens: int | None, model_max_len: int
    ) -> None:
        self.model: str | None = model
        self._completer = completer
        self._max_tokens = max_tokens
        self._model_max_len = model_max_len

    def inflight(self) -> dict[str, int]:
        """Requests in flight per server, when the completer keeps count (VllmClient does)."""
        stats = getattr(self._completer, "stats", None)
        return dict(stats.inflight) if stats is not None else {}

    async def wait_until_available(self, poll_s: float) -> None:
        """Until a server answers `/health` (the client probes every `poll_s`)."""
        wait = getattr(self._completer, "wait_until_healthy", None)
        if wait is None:  # a completer without health checks: try it again after a pause
            await asyncio.sleep(poll_s)
            return
        await wait(poll_s)

    async def recognize_page(self, page: RenderedPage, *, max_attempts: int) -> PageResult:
        outcome = await run_task(
            self._completer,
            prompts.page_prompt(),
            page.png,
            parse_page_answer,
            max_attempts=max_attempts,
            max_tokens=self._max_tokens,
        )
        if outcome.value is None:
            return fallback_page(page, outcome)
        natural_text = outcome.value.natural_text
        figures, warnings = page_figures(natural_text, page.index, page.width, page.height)
        return PageResult(
            index=page.index,
            elements=page_elements(natural_text),
            figures=figures,
            warnings=warnings,
            source="model",
            attempts=outcome.attempts,
            usage=outcome.usage,
            latency_s=outcome.latency_s,
        )

    async def detect_merges(
        self, previous: Sequence[str], following: Sequence[str], *, max_attempts: int
    ) -> TaskOutcome[list[Pair]]:
        prompt = prompts.merge_detection_prompt(previous, following)
        return await run_task(
            self._completer,
            prompt,
            prompts.blank_image_png(),
            lambda content: parse_merge_pairs(content, len(previous), len(following)),
            max_attempts=max_attempts,
            max_tokens=self._max_tokens,
        )

    async def merge_tables(
        self, table1: str, table2: str, *, max_attempts: int
    ) -> TaskOutcome[str]:
        if not self._fits_model(table1, table2):
            # **Ours**: the reference sends these anyway and silently loses the merge.
            merged = merge_tables_without_model(table1, table2)
            if merged is None:
                return TaskOutcome(
                    error=ErrorInfo(
                        code="task_failed",
                        message="tables too large for the model and their columns differ",
                    )
                )
            return TaskOutcome(value=merged)
        prompt = prompts.table_merge_prompt(table1, table2)
        return await run_task(
            self._completer,
            prompt,
            prompts.blank_image_png(),
            _accept_table,
            max_attempts=max_attempts,
            max_tokens=self._max_tokens,
        )

    def _fits_model(self, table1: str, table2: str) -> bool:
        """The prompt holds both tables and the answer repeats them: about twice their size."""
        table_tokens = (len(table1) + len(table2)) / _CHARS_PER_TOKEN
        if self._max_tokens is not None and table_tokens > self._max_tokens:
            return False
        return 2 * table_tokens + _MERGE_OVERHEAD_TOKENS <= self._model_max_len
