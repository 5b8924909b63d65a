"""Page selections and the json and chunks output formats on the HTTP API (direct mode, the
OCRFlux-3B test double): the guide's endpoints keep their answer for markdown and text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from connectors.api.openapi import build_openapi
from tests.api.fixtures import ApiProcess, Site
from tests.formats import (
    SELECTED_TEXT,
    SELECTION,
    check_chunks_json,
    check_result_json,
    check_selected_chunks,
    check_selected_result,
    register_selected,
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def report(ocrflux_server: Any) -> bytes:
    return register_selected(ocrflux_server)


@pytest.fixture
def api(ocrflux_server: Any, api_servers: Callable[..., ApiProcess]) -> ApiProcess:
    return api_servers(VLLM_URL=ocrflux_server.url, OCRFLUX_FETCH_ALLOW="127.0.0.1/32")


def _form(data: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="report.pdf")
    for key, value in fields.items():
        form.add_field(key, value)
    return form


async def test_convert_file_json_of_a_selection(
    api: ApiProcess, report: bytes, http: aiohttp.ClientSession
) -> None:
    form = _form(report, output_format="json", pages=SELECTION)
    async with http.post(f"{api.url}/convert/file", data=form) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/json"
        body = await response.json()
    check_selected_result(check_result_json(body))


async def test_convert_url_chunks_of_a_selection(
    api: ApiProcess, report: bytes, http: aiohttp.ClientSession, web_site: Callable[[str], Site]
) -> None:
    site = web_site("127.0.0.1")
    site.files["report.pdf"] = report
    request = {
        "url": f"{site.url}/files/report.pdf",
        "output_format": "chunks",
        "pages": SELECTION,
        "chunk_tokens": 40,
    }
    async with http.post(f"{api.url}/convert/url", json=request) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    chunks = check_chunks_json(body)
    assert chunks["max_tokens"] == 40 and len(chunks["chunks"]) > 2
    check_selected_chunks(chunks)


async def test_markdown_of_a_selection_keeps_the_guide_answer(
    api: ApiProcess, report: bytes, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{api.url}/convert/file", data=_form(report, pages=SELECTION)) as r:
        assert r.status == 200
        body = await r.json()
    assert set(body) == {"status", "format", "content", "error", "error_code", "error_detail",
                         "warnings", "metadata"}  # fmt: skip
    assert body["content"] == SELECTED_TEXT and body["format"] == "markdown"
    assert body["metadata"]["pages_processed"] == 5


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pages": "3-1"}, "expected 1 <= first <= last"),
        ({"pages": "1-2,x"}, "pages must look like"),
        ({"output_format": "markdown", "chunk_tokens": "100"}, "chunk_tokens goes with"),
    ],
)
async def test_a_bad_selection_or_budget_is_refused(
    api: ApiProcess,
    report: bytes,
    http: aiohttp.ClientSession,
    fields: dict[str, str],
    message: str,
) -> None:
    async with http.post(f"{api.url}/convert/file", data=_form(report, **fields)) as response:
        body = await response.json()
    assert response.status == 422 and body["error_code"] == "invalid_request"
    assert message in body["detail"]


def test_openapi_documents_the_formats_and_the_selection() -> None:
    document = build_openapi(version="1", auth=False)
    schemas = document["components"]["schemas"]
    assert {"DocumentResult", "DocumentChunks", "Chunk"} <= set(schemas)
    form = document["paths"]["/convert/file"]["post"]["requestBody"]["content"]
    properties = form["multipart/form-data"]["schema"]["properties"]
    assert properties["output_format"]["enum"] == ["markdown", "text", "json", "chunks", "zip"]
    assert {"pages", "chunk_tokens"} <= set(properties)
    assert {"pages", "chunk_tokens"} <= set(schemas["ConvertUrlRequest"]["properties"])
    answer = document["paths"]["/convert/url"]["post"]["responses"]["200"]
    refs = answer["content"]["application/json"]["schema"]["oneOf"]
    assert [r["$ref"].rsplit("/", 1)[1] for r in refs] == [
        "ConvertResponse",
        "DocumentResult",
        "DocumentChunks",
    ]


async def _job_result(http: aiohttp.ClientSession, api: ApiProcess, form: Any) -> Any:
    """Submit a job and follow its event stream to the end; the completed job's result."""
    async with http.post(f"{api.url}/v1/jobs", data=form) as response:
        assert response.status == 202, await response.text()
        events_url = (await response.json())["events_url"]
    last = None
    async with http.get(f"{api.url}{events_url}") as events:
        async for line in events.content:
            if line.startswith(b"event: "):
                last = line[7:].strip().decode()
            elif line.startswith(b"data: ") and last in ("completed", "failed"):
                status = json.loads(line[6:])
                assert status["status"] == "completed", status
                return status["result"]
    raise AssertionError(f"the event stream ended after {last!r}")


async def test_jobs_answer_json_and_chunks_like_the_guide_endpoints(
    api: ApiProcess, report: bytes, http: aiohttp.ClientSession
) -> None:
    # `figures=none`: the selection's expected text leaves the report's figure out
    form = _form(report, output_format="json", pages=SELECTION, figures="none")
    result = await _job_result(http, api, form)
    check_selected_result(check_result_json(result))
    form = _form(report, output_format="chunks", pages=SELECTION, chunk_tokens="40", figures="none")
    chunks = check_chunks_json(await _job_result(http, api, form))
    assert chunks["max_tokens"] == 40
    check_selected_chunks(chunks)
