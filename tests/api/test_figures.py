"""Figures on the HTTP API (issue 14) through the OCRFlux-3B test double: json carries the
cropped PNGs inline, zip holds `<stem>.md` and `<stem>_figures/`, the guide's endpoints keep
their answer unless asked, `/v1/jobs` crops by default; in kafka mode the figures the stream
processor stored are fetched from the blob store."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from connectors.api.figure_answers import zip_response, zip_stem
from connectors.api.openapi import build_openapi
from tests.api.fixtures import ApiProcess, Site
from tests.formats import check_result_json
from tests.scenarios import (
    FIGURE_NAME,
    FIGURE_TEXT,
    FIGURE_TEXT_WITHOUT,
    assert_is_the_drawn_figure,
    figure_document,
    register,
)
from tests.streams.fixtures import Pipeline

#: The guide's answer (`ConvertResponse`) has exactly these keys, with or without figures.
GUIDE_KEYS = {"status", "format", "content", "error", "error_code", "error_detail", "warnings",
              "metadata"}  # fmt: skip


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def document(ocrflux_server: Any) -> bytes:
    case = figure_document()
    register(ocrflux_server, case)
    return case.data


@pytest.fixture
def api(ocrflux_server: Any, api_servers: Callable[..., ApiProcess]) -> ApiProcess:
    return api_servers(VLLM_URL=ocrflux_server.url, OCRFLUX_FETCH_ALLOW="127.0.0.1/32")


def _form(data: bytes, name: str = "figures.pdf", **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name)
    for key, value in fields.items():
        form.add_field(key, value)
    return form


def _check_figure_json(body: dict[str, Any], scale: float = 2.0) -> dict[str, Any]:
    """A json result: valid against the schema, linked by name, the PNG inline and right."""
    result = check_result_json(body)
    assert result["document_text"] == FIGURE_TEXT.format(link=FIGURE_NAME)
    [figure] = result["figures"]
    assert (figure["number"], figure["page"], figure["name"]) == (1, 1, FIGURE_NAME)
    assert_is_the_drawn_figure(base64.b64decode(figure["data"]), scale=scale)
    return figure


def _check_zip(response: aiohttp.ClientResponse, body: bytes, stem: str) -> None:
    assert response.content_type == "application/zip"
    assert response.headers["Content-Disposition"].startswith(f'attachment; filename="{stem}.zip"')
    folder = f"{stem}_figures"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert sorted(archive.namelist()) == [f"{stem}.md", f"{folder}/{FIGURE_NAME}"]
        markdown = archive.read(f"{stem}.md").decode("utf-8")
        assert markdown == FIGURE_TEXT.format(link=f"{folder}/{FIGURE_NAME}") + "\n"
        assert_is_the_drawn_figure(archive.read(f"{folder}/{FIGURE_NAME}"))


async def _completed(http: aiohttp.ClientSession, api: ApiProcess, **request: Any) -> Any:
    """Submit a job (`data=` a form or `json=` a body), follow its events to the end; the
    completed job's status."""
    async with http.post(f"{api.url}/v1/jobs", **request) as response:
        assert response.status == 202, await response.text()
        accepted = await response.json()
    last = None
    async with http.get(f"{api.url}{accepted['events_url']}") as events:
        async for line in events.content:
            if line.startswith(b"event: "):
                last = line[7:].strip().decode()
            elif line.startswith(b"data: ") and last in ("completed", "failed", "cancelled"):
                status = json.loads(line[6:])
                assert status["status"] == "completed", status
                return status
    raise AssertionError(f"the event stream ended after {last!r}")


async def _zip_of(http: aiohttp.ClientSession, api: ApiProcess, job_id: str, stem: str) -> None:
    url = f"{api.url}/v1/jobs/{job_id}/result?output_format=zip"
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        _check_zip(response, await response.read(), stem)


# --- the guide's endpoints ---------------------------------------------------------------------


async def test_guide_json_and_zip_carry_the_cropped_figure(
    api: ApiProcess, document: bytes, http: aiohttp.ClientSession
) -> None:
    form = _form(document, output_format="json", figures="crop")
    async with http.post(f"{api.url}/convert/file", data=form) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/json"
        _check_figure_json(await response.json())
    async with http.post(f"{api.url}/convert/file", data=_form(document, output_format="zip")) as r:
        assert r.status == 200, await r.text()
        _check_zip(r, await r.read(), "figures")


async def test_guide_url_json_follows_the_figure_scale_and_zip_is_a_document(
    api: ApiProcess,
    document: bytes,
    http: aiohttp.ClientSession,
    web_site: Callable[[str], Site],
) -> None:
    site = web_site("127.0.0.1")
    site.files["figures.pdf"] = document
    url = f"{site.url}/files/figures.pdf"
    body = {"url": url, "output_format": "json", "figures": "crop", "figure_scale": 3}
    async with http.post(f"{api.url}/convert/url", json=body) as response:
        assert response.status == 200, await response.text()
        figure = _check_figure_json(await response.json(), scale=3.0)
    assert_is_the_drawn_figure(base64.b64decode(figure["data"]), scale=3.0)
    async with http.post(f"{api.url}/convert/url", json={"url": url, "output_format": "zip"}) as r:
        assert r.status == 200, await r.text()
        _check_zip(r, await r.read(), "document")


async def test_guide_answer_is_unchanged_unless_figures_are_asked_for(
    api: ApiProcess, document: bytes, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{api.url}/convert/file", data=_form(document)) as response:
        assert response.status == 200
        plain = await response.json()
    assert set(plain) == GUIDE_KEYS
    assert plain["status"] == "success" and plain["content"] == FIGURE_TEXT_WITHOUT
    assert plain["metadata"] == {
        "filename": "figures.pdf",
        "file_size": len(document),
        "pages_processed": 3,
        "fallback_pages": [],
    }
    async with http.post(f"{api.url}/convert/file", data=_form(document, figures="crop")) as r:
        assert r.status == 200
        linked = await r.json()
    # Markdown with figures=crop links each figure by name; its bytes come with json or zip.
    assert set(linked) == GUIDE_KEYS and linked["content"] == FIGURE_TEXT.format(link=FIGURE_NAME)
    assert linked["metadata"] == plain["metadata"]


# --- jobs ----------------------------------------------------------------------------------------


async def test_jobs_crop_figures_by_default(
    api: ApiProcess, document: bytes, http: aiohttp.ClientSession
) -> None:
    status = await _completed(http, api, data=_form(document, "scan.pdf", output_format="json"))
    _check_figure_json(status["result"])
    await _zip_of(http, api, status["job_id"], "scan")
    # A markdown job links the figure by name; its result as a file, and as a zip.
    status = await _completed(http, api, data=_form(document, "scan.pdf"))
    assert status["result"]["content"] == FIGURE_TEXT.format(link=FIGURE_NAME)
    async with http.get(f"{api.url}/v1/jobs/{status['job_id']}/result") as response:
        assert response.status == 200
        assert response.content_type == "text/markdown"
        assert await response.text() == FIGURE_TEXT.format(link=FIGURE_NAME) + "\n"
    await _zip_of(http, api, status["job_id"], "scan")
    # figures=none leaves them out, as OCRFlux does.
    status = await _completed(http, api, data=_form(document, figures="none"))
    assert status["result"]["content"] == FIGURE_TEXT_WITHOUT


async def test_bad_figure_fields_are_refused_clearly(
    api: ApiProcess, document: bytes, http: aiohttp.ClientSession
) -> None:
    forms = [
        ("/convert/file", {"figures": "png"}, "figures: Input should be 'none' or 'crop'"),
        ("/convert/file", {"figures": "crop", "figure_scale": "9"}, "figure_scale: Input should"),
        ("/convert/file", {"figure_scale": "3"}, "figure_scale goes with figures=crop"),
        ("/v1/jobs", {"figures": "yes"}, "figures: Input should be 'none' or 'crop'"),
        ("/v1/jobs", {"output_format": "zip"}, "GET /v1/jobs/{job_id}/result?output_format=zip"),
    ]
    for path, fields, message in forms:
        async with http.post(f"{api.url}{path}", data=_form(document, **fields)) as response:
            body = await response.json()
        assert response.status == 422 and body["error_code"] == "invalid_request", body
        assert message in body["detail"], (fields, body)
    request = {"url": "http://127.0.0.1:9/a.pdf", "figures": "all"}
    async with http.post(f"{api.url}/convert/url", json=request) as response:
        body = await response.json()
    assert response.status == 422 and "figures: Input should be 'none' or 'crop'" in body["detail"]
    status = await _completed(http, api, data=_form(document, figures="none"))
    url = f"{api.url}/v1/jobs/{status['job_id']}/result?output_format=pdf"
    async with http.get(url) as response:
        body = await response.json()
    assert response.status == 422 and "output_format must be one of" in body["detail"]


def test_zip_names_come_from_the_upload() -> None:
    assert zip_stem("Report v2.pdf", True) == "Report v2"
    assert zip_stem("../../etc/scan.PNG", True) == "scan"
    assert zip_stem("C:\\Users\\me\\memo.final.pdf", True) == "memo.final"
    assert zip_stem('a"b:c.pdf', True) == "a_b_c"
    assert zip_stem("https://example.com/report.pdf", False) == "document"
    assert zip_stem(None, True) == zip_stem("..pdf", True) == "document"
    disposition = zip_response(b"", "Bericht-Übersicht").headers["Content-Disposition"]
    assert disposition == (
        'attachment; filename="Bericht-_bersicht.zip"; '
        "filename*=UTF-8''Bericht-%C3%9Cbersicht.zip"
    )


def test_openapi_documents_figures_and_zip() -> None:
    document = build_openapi(version="1", auth=False)
    paths, schemas = document["paths"], document["components"]["schemas"]
    guide = paths["/convert/file"]["post"]["requestBody"]["content"]["multipart/form-data"]
    jobs = paths["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    for form, default in ((guide, "none"), (jobs, "crop")):
        properties = form["schema"]["properties"]
        assert properties["figures"]["enum"] == ["none", "crop"]
        assert properties["figures"]["default"] == default
        assert properties["figure_scale"]["minimum"] == 1 and "figure_scale" in properties
    assert "zip" in guide["schema"]["properties"]["output_format"]["enum"]
    assert "zip" in schemas["ConvertUrlRequest"]["properties"]["output_format"]["enum"]
    assert {"figures", "figure_scale"} <= set(schemas["JobUrlRequest"]["properties"])
    assert "application/zip" in paths["/convert/url"]["post"]["responses"]["200"]["content"]
    result = paths["/v1/jobs/{job_id}/result"]["get"]
    assert "application/zip" in result["responses"]["200"]["content"]
    assert {"data", "ref", "name"} <= set(schemas["Figure"]["properties"])
    assert schemas["DocumentResult"]["properties"]["figures"]["items"]["$ref"].endswith("Figure")


# --- kafka mode ----------------------------------------------------------------------------------


@pytest.mark.kafka
async def test_kafka_mode_fetches_the_figures_the_stream_stored(
    pipeline: Pipeline, api_servers: Callable[..., ApiProcess], http: aiohttp.ClientSession
) -> None:
    case = figure_document()
    register(pipeline.server, case)
    api = api_servers(**pipeline.env(OCRFLUX_MODE="kafka"))
    pipeline.start_worker("worker")
    status = await _completed(http, api, data=_form(case.data, output_format="json"))
    figure = _check_figure_json(status["result"])
    assert "://" in figure["ref"]  # stored by the stream processor, inlined by the API
    # A markdown result lists only where its figure is: the zip fetches it.
    status = await _completed(http, api, data=_form(case.data))
    assert status["result"]["content"] == FIGURE_TEXT.format(link=FIGURE_NAME)
    await _zip_of(http, api, status["job_id"], "figures")
    form = _form(case.data, output_format="zip")
    async with http.post(f"{api.url}/convert/file", data=form) as response:
        assert response.status == 200, await response.text()
        _check_zip(response, await response.read(), "figures")
