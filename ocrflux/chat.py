"""The seam between the core and a model server: one chat-completion request and its answer.

The core drives OCRFlux-3B through `ChatCompleter.complete`; `vllm_client.VllmClient` is the
production implementation, and unit tests may pass any object with that method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One user message: the prompt text first, then one PNG image (section 4 of the protocol)."""

    prompt: str
    image_png: bytes
    temperature: float = 0.0
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ChatResponse:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class ChatCompleter(Protocol):
    """Anything that answers one chat-completion request.

    Implementations deal with transport failures and back-pressure ("not now" answers such as
    429 and 503) themselves (back-off without using an attempt) and raise `ModelUnavailable` when
    the bounded wait is over. Any other answer from the server that is not a usable completion,
    including a non-200 status, comes back as `ChatAnswerError` so the caller can count it as a
    used attempt.
    """

    async def complete(self, request: ChatRequest) -> ChatResponse: ...


class ChatAnswerError(Exception):
    """The server answered, but not with a usable completion (non-200 status, bad body)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
