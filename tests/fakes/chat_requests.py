"""Hand-built chat requests to the OCRFlux-3B test double, for tests that talk to it without the
production client (the double's own tests, protocol checks)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import aiohttp
from PIL import Image

from tests.fakes.ocrflux_server import DEFAULT_MODEL
from tests.fakes.truth import PAGE_PROMPT


def sample_png(
    color: tuple[int, int, int] = (200, 30, 30),
    size: tuple[int, int] = (120, 170),
    compress_level: int = 6,
) -> bytes:
    """A white page with one coloured block; different colours are different pages."""
    image = Image.new("RGB", size, (255, 255, 255))
    image.paste(color, (10, 10, size[0] // 2, size[1] // 2))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def blank_png() -> bytes:
    """The 28x28 black image that tasks B and C attach."""
    buffer = io.BytesIO()
    Image.new("RGB", (28, 28), (0, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def chat_body(
    prompt: str, image: bytes | None = None, *, model: str = DEFAULT_MODEL, **extra: Any
) -> dict[str, Any]:
    """The protocol's request body (section 4); `extra` adds or overrides top-level fields."""
    data = base64.b64encode(image if image is not None else blank_png()).decode()
    return {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
                ],
            }
        ],
        "temperature": 0.0,
        **extra,
    }


def page_body(image: bytes | None = None, **extra: Any) -> dict[str, Any]:
    """A page request (prompt A) for `image`, by default `sample_png()`."""
    return chat_body(PAGE_PROMPT, image if image is not None else sample_png(), **extra)


async def post_chat(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    """POST `body` to `{url}/v1/chat/completions`; (status, decoded JSON or None)."""
    async with session.post(f"{url}/v1/chat/completions", json=body) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None
