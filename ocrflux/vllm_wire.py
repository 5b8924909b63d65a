"""The wire format of one chat completion (protocol section 4): request body and answer parsing.

Pure functions, no I/O; `ocrflux.vllm_client` sends what `encode_request_body` builds and hands
each HTTP answer to `parse_completion`.
"""

from __future__ import annotations

import base64
import json

from ocrflux.chat import ChatAnswerError, ChatRequest, ChatResponse

__all__ = ["encode_request_body", "error_snippet", "parse_completion"]

# How much of an error body goes into a ChatAnswerError message.
_ERROR_SNIPPET_CHARS = 300


def encode_request_body(model: str, request: ChatRequest, max_tokens: int | None) -> bytes:
    """The JSON body of section 4, built around the base64 image without re-copying it.

    Base64 needs no JSON escaping, so the image goes between two small JSON fragments and the
    whole body is one `join` (json.dumps over the full string would scan and copy it again).
    """
    temperature = json.dumps(float(request.temperature), allow_nan=False)
    head = (
        '{"model": '
        + json.dumps(model)
        + ', "messages": [{"role": "user", "content": [{"type": "text", "text": '
        + json.dumps(request.prompt)
        + '}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,'
    )
    tail = '"}}]}], "temperature": ' + temperature
    if max_tokens is not None:
        tail += ', "max_tokens": ' + json.dumps(int(max_tokens))
    tail += "}"
    return b"".join((head.encode(), base64.b64encode(request.image_png), tail.encode()))


def parse_completion(status: int, raw: bytes, latency_s: float) -> ChatResponse:
    """A `ChatResponse` from one HTTP answer, or `ChatAnswerError(message, status)`."""
    if status != 200:
        raise ChatAnswerError(f"HTTP {status}: {error_snippet(raw)}", status)
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise ChatAnswerError(f"completion body is not JSON: {error_snippet(raw)}", status) from exc
    try:
        choice = payload["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ChatAnswerError("completion has no choices[0].message.content", status) from exc
    if not isinstance(content, str):
        raise ChatAnswerError("choices[0].message.content is not a string", status)
    finish_reason = choice.get("finish_reason")
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return ChatResponse(
        content=content,
        finish_reason=finish_reason if isinstance(finish_reason, str) else "",
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        latency_s=latency_s,
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def error_snippet(raw: bytes) -> str:
    """The start of an answer body, as text for an error message."""
    text = raw[: _ERROR_SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    return text[:_ERROR_SNIPPET_CHARS]
