"""Degraded answers are never final: a `partial` document (pages the model failed, filled from
the text layer) is converted again on the next request, whether the job store or the result
cache still has it; and a model outage is a 503 with Retry-After, not a 200."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageDraw

from tests.api.fixtures import ApiProcess
from tests.fakes.control import image_key
from tests.scenarios import page_images, pdf_with_lines

DEADLINE_S = 60.0
PAGES = [["first page of the degraded report"], ["second page of the degraded report"]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _form(data: bytes, name: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name)
    return form


async def _convert(
    http: aiohttp.ClientSession, api: ApiProcess, data: bytes, name: str = "report.pdf"
) -> dict[str, Any]:
    async with http.post(f"{api.url}/convert/file", data=_form(data, name)) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
    return answer


def _page_requests(server: Any, key: str) -> int:
    return sum(1 for record in server.requests() if record["page"] == key)


@pytest.mark.parametrize("retained", ["1000", "1"], ids=["from_the_job_store", "from_the_cache"])
async def test_a_partial_result_is_converted_again_once_the_model_is_back(
    ocrflux_server: Any,
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
    retained: str,
) -> None:
    api = api_servers(VLLM_URL=ocrflux_server.url, OCRFLUX_JOBS_RETAINED=retained)
    data = pdf_with_lines(PAGES)
    first_page = page_images(data)[0]
    ocrflux_server.add_fault("invalid_json", task="page", pages=[first_page])

    first = await _convert(http, api, data)
    assert first["metadata"]["fallback_pages"] == [0]  # partial: page 0 from its text layer
    if retained == "1":  # the next job pushes the first out: only the cache could answer it
        await _convert(http, api, pdf_with_lines([["another document"]]), "other.pdf")
    ocrflux_server.clear_faults()
    asked = _page_requests(ocrflux_server, image_key(first_page))

    second = await _convert(http, api, data)
    assert second["status"] == "success"
    assert second["metadata"]["fallback_pages"] == []
    assert _page_requests(ocrflux_server, image_key(first_page)) > asked  # the model again
    # a completed document is final: answered again without the model
    requests = ocrflux_server.stats()["requests_total"]
    assert await _convert(http, api, data) == second
    assert ocrflux_server.stats()["requests_total"] == requests


def _scan_png() -> bytes:
    image = Image.new("RGB", (850, 1100), "white")
    ImageDraw.Draw(image).text((100, 100), "a scanned page without a text layer", fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


DOCUMENTS: dict[str, Callable[[], tuple[str, bytes]]] = {
    # The core change this needs: an unreachable model fails the document instead of filling
    # its pages from the text layer (a `partial` 200 before).
    "pdf_with_text_layer": lambda: ("report.pdf", pdf_with_lines(PAGES)),
    "scan": lambda: ("scan.png", _scan_png()),
}


@pytest.mark.parametrize("document", list(DOCUMENTS))
async def test_a_model_outage_is_503_with_retry_after(
    ocrflux_subprocess_factory: Callable[..., Any],
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
    document: str,
) -> None:
    double = ocrflux_subprocess_factory()
    api = api_servers(
        VLLM_URL=double.url,
        OCRFLUX_ENGINE="vllm",
        VLLM_RETRY_BUDGET_S="1",
        VLLM_HEALTH_INTERVAL_S="3600",  # the API keeps believing its last probe: vLLM is up
        OCRFLUX_RETRY_AFTER_S="11",
    )
    name, data = DOCUMENTS[document]()
    double.stop()

    async with http.post(f"{api.url}/convert/file", data=_form(data, name)) as response:
        answer = await response.json()
        assert response.status == 503, answer
        assert response.headers["Retry-After"] == "11"
    assert answer["status"] == "error" and answer["error_code"] == "vllm_unavailable"
    assert answer["detail"]

    form = _form(data, name)
    form.add_field("output_format", "text")  # another job id than the conversion above
    async with http.post(f"{api.url}/v1/jobs", data=form) as response:
        accepted = await response.json()
        assert response.status == 202, accepted
    deadline = time.monotonic() + DEADLINE_S
    while True:
        async with http.get(api.url + accepted["status_url"]) as response:
            status = await response.json()
        if status["status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)  # poll interval on the job's status
    assert status["status"] == "failed", status
    assert status["error"]["code"] == "vllm_unavailable"
