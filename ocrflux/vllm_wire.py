"""The wire format of one chat completion (protocol section 4): request body and answer parsing.

Pure functions, no I/O; `ocrflux.vllm_client` sends what `encode_request_body` builds and hands
each HTTP answer to `parse_completion`, or, for a status that means "not now", raises
`ServerBusy` with the wait that `parse_retry_after` reads from the answer.
"""

from __future__ import annotations

import json
import math
from datetime import UTC
from email.utils import parsedate_to_datetime

import pybase64

from ocrflux.chat import ChatAnswerError, ChatRequest, ChatResponse

__all__ = [
    "RETRY_AFTER_CAP_S",
    "ServerBusy",
    "encode_request_body",
    "error_snippet",
    "parse_completion",
    "parse_retry_after",
]

# How much of an error body goes into a ChatAnswerError message.
_ERROR_SNIPPET_CHARS = 300
# A server may ask for any wait; more than this would hold a page (and its Kafka partition)
# for minutes on a single header, so longer asks are cut to it.
RETRY_AFTER_CAP_S = 30.0


class ServerBusy(Exception):
    """The server answered "not now" (429, 503, a proxy's 502/504): back-pressure, not an answer.

    `retry_after_s` is the wait the server asked for (already capped), or None when it named none.
    """

    def __init__(self, message: str, status: int, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


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
    return b"".join((head.encode(), pybase64.b64encode(request.image_png), tail.encode()))


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


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date), capped at
    `RETRY_AFTER_CAP_S`; None when the header is absent or unreadable. A date in the past is 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # HTTP dates are always GMT (RFC 9110 section 5.6.7)
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now_epoch_s
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def error_snippet(raw: bytes) -> str:
    """The start of an answer body, as text for an error message."""
    text = raw[: _ERROR_SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    return text[:_ERROR_SNIPPET_CHARS]
