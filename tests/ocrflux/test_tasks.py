"""The attempt loop: temperature ramp, what uses an attempt, and what ends a task."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from ocrflux.chat import ChatAnswerError, ChatRequest, ChatResponse
from ocrflux.errors import ModelUnavailable
from ocrflux.page_parse import parse_page_answer
from ocrflux.tasks import run_task, temperature_for

GOOD = json.dumps(
    {
        "primary_language": "en",
        "is_rotation_valid": True,
        "rotation_correction": 0,
        "is_table": False,
        "is_diagram": False,
        "natural_text": "Hello",
    }
)


class Scripted:
    """Answers from a script: a `ChatResponse` field tuple, or an exception to raise."""

    def __init__(self, script: Sequence[object]) -> None:
        self.script = list(script)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        content, finish = step  # type: ignore[misc]
        return ChatResponse(content, finish, 1000, 10, 0.5)


def test_temperature_ramp_is_capped() -> None:
    assert [temperature_for(a) for a in range(11)] == [
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.8,
        0.8,
    ]


async def test_each_failed_answer_uses_an_attempt_at_a_higher_temperature() -> None:
    completer = Scripted(
        [
            ChatAnswerError("boom", 500),
            ("not json", "stop"),
            (GOOD, "length"),
            (GOOD, "stop"),
        ]
    )
    outcome = await run_task(
        completer, "p", b"png", parse_page_answer, max_attempts=4, max_tokens=77
    )
    assert outcome.ok and outcome.value is not None
    assert outcome.value.natural_text == "Hello"
    assert outcome.attempts == 4
    assert [r.temperature for r in completer.requests] == [0.0, 0.1, 0.2, 0.3]
    assert {r.max_tokens for r in completer.requests} == {77}
    assert outcome.usage.prompt_tokens == 3000  # three answers carried usage


async def test_attempts_run_out_with_the_last_reason() -> None:
    completer = Scripted([("{}", "stop"), ("[]", "stop")])
    outcome = await run_task(completer, "p", b"png", parse_page_answer, max_attempts=2)
    assert not outcome.ok and outcome.value is None
    assert outcome.error is not None and outcome.error.code == "task_failed"
    assert "2 attempt" in outcome.error.message and "not_object" in outcome.error.message


async def test_unavailable_backend_is_not_an_answer_it_propagates() -> None:
    completer = Scripted([ModelUnavailable("no server answered")])
    with pytest.raises(ModelUnavailable):
        await run_task(completer, "p", b"png", parse_page_answer, max_attempts=5)
    assert len(completer.requests) == 1


@pytest.mark.parametrize("attempts", [1, 3])
async def test_never_more_requests_than_attempts(attempts: int) -> None:
    completer = Scripted([("nope", "stop")] * 10)
    await run_task(completer, "p", b"png", parse_page_answer, max_attempts=attempts)
    assert len(completer.requests) == attempts
