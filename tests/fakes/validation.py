"""Request validation and token accounting for the OCRFlux-3B test double, as vLLM would do them.

The double is stricter than vLLM on one point on purpose: the user message must be exactly the
protocol's shape (one text part, then one PNG data-URL image part), so that a client that drifts
from the protocol gets a 400 it can see in a test instead of a silently different prompt.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pybase64
from PIL import Image, UnidentifiedImageError

from tests.fakes.truth import pixel_key

PNG_DATA_URL = "data:image/png;base64,"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Qwen2.5-VL turns every 28x28 block of the (resized) image into one visual token: about 962
# tokens for a 723x1024 page, 1 for the 28x28 blank image of tasks B and C.
PATCH = 28
# Identities of recently seen images, by the digest of their bytes (small values only).
_CACHE_SIZE = 4096
_CACHE: OrderedDict[bytes, PageImage] = OrderedDict()
_CACHE_LOCK = threading.Lock()
ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    429: "TooManyRequestsError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


class ApiError(Exception):
    """An answer in vLLM's error shape."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message)


def error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "object": "error",
        "message": message,
        "type": ERROR_TYPES.get(status, "InternalServerError"),
        "param": None,
        "code": status,
    }


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A validated chat-completion request (its image is checked by `inspect_image`)."""

    text: str
    image: bytes
    temperature: float | None
    max_tokens: int | None


@dataclass(frozen=True, slots=True)
class PageImage:
    width: int
    height: int
    key: str  # truth.image_key: what the double "sees"


def prompt_tokens(call: ChatCall, image: PageImage) -> int:
    columns = max(1, round(image.width / PATCH))
    rows = max(1, round(image.height / PATCH))
    return columns * rows + len(call.text) // 4


def completion_tokens(content: str) -> int:
    return max(1, len(content) // 4)


def parse_chat(body: Any, model: str) -> ChatCall:
    """Validate a decoded JSON body; raise ApiError(400/404) the way vLLM answers."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    if body.get("model") != model:
        raise ApiError(404, f"The model `{body.get('model')}` does not exist.")
    if body.get("stream"):
        raise ApiError(400, "ocrflux-test-double: streaming responses are not implemented.")
    temperature = body.get("temperature")
    if temperature is not None and (
        not _is_number(temperature) or not 0.0 <= float(temperature) <= 2.0
    ):
        raise ApiError(400, "temperature must be a number between 0 and 2.")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ApiError(400, f"max_tokens must be at least 1, got {max_tokens!r}.")
    text, url = _user_parts(body.get("messages"))
    return ChatCall(
        text=text,
        image=_decode_data_url(url),
        temperature=None if temperature is None else float(temperature),
        max_tokens=max_tokens,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _user_parts(messages: Any) -> tuple[str, str]:
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        raise ApiError(400, "messages must be a list holding exactly one user message.")
    message = messages[0]
    if message.get("role") != "user":
        raise ApiError(400, "the only message must have role 'user'.")
    content = message.get("content")
    if (
        not isinstance(content, list)
        or len(content) != 2
        or not all(isinstance(part, dict) for part in content)
    ):
        raise ApiError(
            400,
            "the user message content must be a list of two parts: "
            "a text part, then an image_url part.",
        )
    text_part, image_part = content
    if text_part.get("type") != "text" or image_part.get("type") != "image_url":
        raise ApiError(400, "the text part must come first and the image_url part second.")
    text = text_part.get("text")
    if not isinstance(text, str) or not text:
        raise ApiError(400, "the text part needs a non-empty 'text' string.")
    image_url = image_part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else None
    if not isinstance(url, str):
        raise ApiError(400, "the image_url part needs {'image_url': {'url': ...}}.")
    return text, url


def _decode_data_url(url: str) -> bytes:
    if not url.startswith(PNG_DATA_URL):
        raise ApiError(400, "the image must be a data URL starting with 'data:image/png;base64,'.")
    try:  # as vLLM's image loader decodes it
        return pybase64.b64decode(url[len(PNG_DATA_URL) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"the image data URL is not valid base64: {exc}") from exc


def inspect_image(data: bytes) -> PageImage:
    """Decode the PNG (400 if it is not one) and identify its pixels. CPU-bound: run it in an
    executor. Retries send the same bytes again, so answers are cached by the bytes' digest."""
    digest = hashlib.sha256(data).digest()
    with _CACHE_LOCK:
        cached = _CACHE.get(digest)
        if cached is not None:
            _CACHE.move_to_end(digest)
            return cached
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            if opened.format != "PNG":
                raise ApiError(400, f"the data URL says PNG but the image is {opened.format}.")
            facts = PageImage(opened.width, opened.height, pixel_key(opened))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ApiError(400, f"the image could not be decoded: {exc}") from exc
    with _CACHE_LOCK:
        _CACHE[digest] = facts
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return facts


def inspect_png_header(data: bytes) -> PageImage:
    """The cheap identity (`--page-key bytes`): the size from the PNG's IHDR chunk and the
    SHA-256 of the bytes as the key, without decoding the image. For benchmarks, where decoding
    and hashing every page's pixels (about 8 CPU-ms a page) would take CPU from the pipeline
    under test; pages registered by pixels do not match these keys (register `payload_key`)."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ApiError(400, "the image could not be decoded: not a PNG")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not width or not height:
        raise ApiError(400, "the image could not be decoded: PNG without area")
    return PageImage(width, height, payload_key(data))


def payload_key(data: bytes) -> str:
    """A page's key under `--page-key bytes`: the hex SHA-256 of its PNG bytes."""
    return hashlib.sha256(data).hexdigest()
