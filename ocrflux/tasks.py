"""The attempt loop shared by the three model tasks (protocol sections 4 and 5).

`max_attempts` counts answers, not connections: each attempt raises the temperature by 0.1
(capped at 0.8) to break repetition loops. Transport errors and backpressure never reach this
loop: the completer backs off and retries them itself, and raises `ModelUnavailable` once its
bounded wait is over. That is not an answer, so it is not turned into a failed task here: it
propagates, and each driver decides (the direct driver fails the document clearly, the stream
processor waits for the model and tries again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ocrflux.chat import ChatAnswerError, ChatCompleter, ChatRequest
from ocrflux.errors import TaskFailed
from ocrflux.page_parse import AnswerRejected
from schemas.results import ErrorInfo, TokenUsage

T = TypeVar("T")

TEMPERATURE_STEP = 0.1
TEMPERATURE_CAP = 0.8


def temperature_for(attempt: int) -> float:
    """0.0 for the first attempt (0-based), then 0.1, 0.2, ... capped at 0.8."""
    return round(min(attempt * TEMPERATURE_STEP, TEMPERATURE_CAP), 1)


@dataclass
class TaskOutcome(Generic[T]):
    value: T | None = None
    attempts: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    latency_s: float = 0.0
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def run_task(
    completer: ChatCompleter,
    prompt: str,
    image_png: bytes,
    accept: Callable[[str], T],
    *,
    max_attempts: int,
    max_tokens: int | None = None,
) -> TaskOutcome[T]:
    """Ask until `accept` takes an answer or the attempts run out.

    `accept` turns the answer's content into the task's value or raises `AnswerRejected`.
    Bad answers end in an outcome with an error; `ModelUnavailable` (no answer at all)
    propagates.
    """
    outcome: TaskOutcome[T] = TaskOutcome()
    last_problem = "no attempt made"
    for attempt in range(max_attempts):
        outcome.attempts = attempt + 1
        request = ChatRequest(prompt, image_png, temperature_for(attempt), max_tokens)
        try:
            response = await completer.complete(request)
        except ChatAnswerError as exc:
            last_problem = f"server answered {exc.status}: {exc}"
            continue
        outcome.usage.add(response.prompt_tokens, response.completion_tokens)
        outcome.latency_s += response.latency_s
        if response.finish_reason != "stop":
            last_problem = f"generation ended with finish_reason={response.finish_reason!r}"
            continue
        try:
            outcome.value = accept(response.content)
        except AnswerRejected as exc:
            last_problem = f"answer rejected ({exc.reason})"
            continue
        return outcome
    outcome.error = ErrorInfo(
        code=TaskFailed.code,
        message=f"no valid answer in {max_attempts} attempt(s): {last_problem}",
    )
    return outcome
