"""Uploads under load and abuse: large uploads go to spool files on disk (the server's memory
stays flat however many arrive), a server with too many upload bytes in flight refuses the next
upload from its headers alone, a body that stalls is answered 408, and a form with two files is
refused. Raw sockets send what well-behaved clients would not."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.api.documents import (
    multipart_head,
    multipart_tail,
    padded_pdf,
    request_head,
)
from tests.api.fixtures import ApiProcess
from tests.scenarios import page_images, pdf_with_lines

DEADLINE_S = 60.0
UPLOADS = 6
UPLOAD_BYTES = 40 * 1024 * 1024
#: Growth of the server's peak RSS allowed while the uploads arrive and wait: holding them in
#: memory takes at least UPLOADS x UPLOAD_BYTES (240 MiB); spooled, they cost a few buffers.
PEAK_GROWTH_LIMIT_MIB = 100


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def spool_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.upload"))


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)  # poll interval on the server's files


async def _job_done(http: aiohttp.ClientSession, api: ApiProcess, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        async with http.get(f"{api.url}/v1/jobs/{job_id}") as response:
            status: dict[str, Any] = await response.json()
        if status["status"] in ("completed", "failed"):
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)  # poll interval on the job's status


async def _submit_file(http: aiohttp.ClientSession, api: ApiProcess, path: Path) -> str:
    with path.open("rb") as file:  # streamed from disk by the client
        form = aiohttp.FormData()
        form.add_field("file", file, filename=path.name)
        async with http.post(f"{api.url}/v1/jobs", data=form) as response:
            body = await response.json()
            assert response.status == 202, body
    return str(body["job_id"])


def _form(data: bytes, name: str = "doc.pdf") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name)
    return form


async def _http_response(
    reader: asyncio.StreamReader, timeout_s: float
) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 response read from a raw connection, within `timeout_s`."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout_s)
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def _address(api: ApiProcess) -> tuple[str, int]:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def test_concurrent_large_uploads_are_spooled_not_held_in_memory(
    ocrflux_server_factory: Callable[..., Any],
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    server = ocrflux_server_factory(capacity=4)
    spool = tmp_path / "spool"
    # One conversion at a time: the other uploads wait, as they would behind a busy server.
    api = api_servers(
        VLLM_URL=server.url, OCRFLUX_MAX_CONVERSIONS="1", OCRFLUX_SPOOL_DIR=str(spool)
    )
    files = [
        padded_pdf(tmp_path / f"large-{n}.pdf", UPLOAD_BYTES, f"large upload {n}")
        for n in range(UPLOADS)
    ]
    async with http.post(f"{api.url}/convert/file", data=_form(pdf_with_lines([["warm"]]))) as r:
        assert r.status == 200  # imports and the first conversion are behind us
    before_kib = api.peak_rss_kib()

    job_ids = await asyncio.gather(*(_submit_file(http, api, path) for path in files))
    finals = [await _job_done(http, api, job_id) for job_id in job_ids]

    assert len(set(job_ids)) == UPLOADS
    assert [final["status"] for final in finals] == ["completed"] * UPLOADS, finals
    for n, final in enumerate(finals):
        assert final["result"]["metadata"]["file_size"] == UPLOAD_BYTES
        assert final["result"]["metadata"]["pages_processed"] == 1, n
    growth_mib = (api.peak_rss_kib() - before_kib) / 1024
    assert growth_mib < PEAK_GROWTH_LIMIT_MIB, f"peak RSS grew by {growth_mib:.0f} MiB"
    assert spool_files(spool) == []  # each file removed once its job was done


async def test_an_upload_beyond_the_bytes_in_flight_is_refused_before_its_body(
    ocrflux_server: Any, api_servers: Callable[..., ApiProcess], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    api = api_servers(
        VLLM_URL=ocrflux_server.url,
        OCRFLUX_MAX_UPLOAD_BYTES_IN_FLIGHT="2000000",
        OCRFLUX_RETRY_AFTER_S="9",
        OCRFLUX_SPOOL_DIR=str(spool),
    )
    data = padded_pdf(tmp_path / "first.pdf", 1_500_000, "first upload").read_bytes()
    body = multipart_head("first.pdf") + data + multipart_tail()
    host, port = _address(api)
    first_reader, first = await asyncio.open_connection(host, port)
    second_reader, second = await asyncio.open_connection(host, port)
    try:
        first.write(request_head("/v1/jobs", len(body)) + body[:1_200_000])
        await first.drain()
        # What has arrived is on disk already (but for the last chunk or two, which the
        # multipart reader holds to look for the boundary), not in memory for the rest.
        await _until(
            lambda: any(p.stat().st_size >= 600_000 for p in spool_files(spool)),
            "the first upload is not being written to a spool file",
        )
        # 1.5 MB more would pass the budget: refused from the headers, no body sent at all
        second.write(request_head("/v1/jobs", len(body)))
        await second.drain()
        status, headers, answer = await _http_response(second_reader, 10)
        assert status == 503, answer
        assert headers["retry-after"] == "9"
        assert answer["status"] == "error" and answer["error_code"] == "saturated"
        assert "in flight" in answer["detail"]
        # the first upload was not disturbed
        first.write(body[1_200_000:])
        await first.drain()
        status, _, answer = await _http_response(first_reader, 30)
        assert status == 202, answer
    finally:
        first.close()
        second.close()


async def test_a_stalled_body_is_answered_408_and_frees_its_place(
    ocrflux_server: Any,
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    api = api_servers(
        VLLM_URL=ocrflux_server.url,
        OCRFLUX_BODY_READ_TIMEOUT_S="3",
        OCRFLUX_MAX_CONVERSIONS="1",
        OCRFLUX_MAX_QUEUED="0",
        OCRFLUX_SPOOL_DIR=str(spool),
    )
    data = padded_pdf(tmp_path / "stalled.pdf", 500_000, "stalled upload").read_bytes()
    body = multipart_head("stalled.pdf") + data + multipart_tail()
    reader, writer = await asyncio.open_connection(*_address(api))
    try:
        started = time.monotonic()
        writer.write(request_head("/convert/file", len(body)) + body[:200_000])
        await writer.drain()
        # While the upload hangs, it holds the only conversion slot...
        async with http.post(f"{api.url}/v1/jobs", data=_form(pdf_with_lines([["b"]]))) as r:
            assert r.status == 503
        # ...until nothing has arrived for the body read timeout.
        status, headers, answer = await _http_response(reader, 30)
        assert time.monotonic() - started >= 3
        assert status == 408, answer
        assert answer["status"] == "error" and answer["error_code"] == "body_timeout"
        assert headers.get("connection", "").lower() == "close"  # not kept for another request
    finally:
        writer.close()
    assert spool_files(spool) == []
    async with http.post(f"{api.url}/v1/jobs", data=_form(pdf_with_lines([["c"]]))) as r:
        assert r.status == 202, await r.text()


async def test_a_client_that_goes_away_mid_upload_leaves_nothing_behind(
    ocrflux_server: Any,
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    api = api_servers(
        VLLM_URL=ocrflux_server.url,
        OCRFLUX_MAX_CONVERSIONS="1",
        OCRFLUX_MAX_QUEUED="0",
        OCRFLUX_SPOOL_DIR=str(spool),
    )
    data = padded_pdf(tmp_path / "gone.pdf", 2_000_000, "abandoned upload").read_bytes()
    body = multipart_head("gone.pdf") + data + multipart_tail()
    _, writer = await asyncio.open_connection(*_address(api))
    writer.write(request_head("/convert/file", len(body)) + body[:1_500_000])
    await writer.drain()
    await _until(lambda: bool(spool_files(spool)), "the upload did not reach a spool file")
    writer.close()
    await writer.wait_closed()
    await _until(lambda: not spool_files(spool), "the spool file of a lost upload was kept")
    # and its place was given back: the only conversion slot takes the next upload
    async with http.post(f"{api.url}/v1/jobs", data=_form(pdf_with_lines([["next"]]))) as r:
        assert r.status == 202, await r.text()
    assert "unhandled error" not in api.log()


async def test_a_form_with_two_files_is_refused(
    ocrflux_server: Any,
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    api = api_servers(VLLM_URL=ocrflux_server.url, OCRFLUX_SPOOL_DIR=str(spool))
    for endpoint in ("/convert/file",):  # /v1/jobs takes several (tests/api/test_job_control.py)
        form = aiohttp.FormData()
        form.add_field("file", pdf_with_lines([["first file"]]), filename="first.pdf")
        form.add_field("file", pdf_with_lines([["second file"]]), filename="second.pdf")
        async with http.post(api.url + endpoint, data=form) as response:
            answer = await response.json()
            assert response.status == 422, answer
        assert answer["status"] == "error" and answer["error_code"] == "invalid_request"
        assert "more than one 'file'" in answer["detail"]
    assert ocrflux_server.stats()["requests_total"] == 0
    assert spool_files(spool) == []


async def test_odd_uploads_answer_like_the_other_drivers(
    ocrflux_server: Any,
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
) -> None:
    """A file name that is not UTF-8 converts; an unaccepted extension is `unsupported_type`
    (as `ocrflux convert` says); a repaired PDF's answer carries the `repaired` warning."""
    intact = pdf_with_lines([["a page that survives the cut"]])
    repaired = intact[: intact.rindex(b"xref")]
    for png in page_images(repaired):
        ocrflux_server.register_page(png, "a page that survives the cut")
    api = api_servers(VLLM_URL=ocrflux_server.url)

    boundary = "odd-upload-boundary"
    raw_name_body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="caf\xe9.pdf"\r\n'
        + b"Content-Type: application/pdf\r\n\r\n"
        + intact
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with http.post(f"{api.url}/convert/file", data=raw_name_body, headers=headers) as r:
        answer = await r.json()
        assert r.status == 200, answer
    assert answer["status"] == "success" and answer["metadata"]["filename"] == "caf\\xe9.pdf"
    assert "a page that survives the cut" in answer["content"]

    async with http.post(f"{api.url}/convert/file", data=_form(intact, "photo.heic")) as r:
        answer = await r.json()
        assert (r.status, answer["error_code"]) == (400, "unsupported_type"), answer

    async with http.post(f"{api.url}/convert/file", data=_form(repaired, "cut.pdf")) as r:
        answer = await r.json()
        assert r.status == 200, answer
    assert [warning["code"] for warning in answer["warnings"]] == ["repaired"]
    assert "a page that survives the cut" in answer["content"]
    assert "unhandled error" not in api.log()
