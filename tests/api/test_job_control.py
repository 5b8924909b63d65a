"""Job control over HTTP: `GET /v1/jobs` (newest first, by status, in pages) and
`DELETE /v1/jobs/{id}`, in direct mode (a queued job leaves the queue, a running one's
conversion process is stopped) and in kafka mode (the workers answer `cancelled`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.api.fixtures import ApiProcess
from tests.scenarios import DocumentCase, generated_cases, register, twelve_page_report
from tests.streams.fixtures import Pipeline

DEADLINE_S = 120.0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _submit(http: aiohttp.ClientSession, api: ApiProcess, case: DocumentCase) -> str:
    form = aiohttp.FormData()
    form.add_field("file", case.data, filename=case.name)
    async with http.post(f"{api.url}/v1/jobs", data=form) as response:
        body = await response.json()
        assert response.status == 202, body
        return str(body["job_id"])


async def _call(http: aiohttp.ClientSession, method: str, url: str) -> tuple[int, dict[str, Any]]:
    async with http.request(method, url) as response:
        return response.status, await response.json()


async def _until(
    http: aiohttp.ClientSession, api: ApiProcess, job_id: str, *states: str
) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        status, body = await _call(http, "GET", f"{api.url}/v1/jobs/{job_id}")
        assert status == 200, body
        if body["status"] in states:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)  # poll interval on the job's status


async def test_direct_mode_lists_and_cancels_queued_and_running_jobs(
    ocrflux_server_factory: Callable[..., Any],
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
) -> None:
    server = ocrflux_server_factory(capacity=1, service_time=1.0)
    slow = twelve_page_report()
    other = generated_cases(1, seed=5, max_pages=2)[0]
    register(server, slow)
    register(server, other)
    api = api_servers(VLLM_URL=server.url, OCRFLUX_MAX_CONVERSIONS="1")
    running = await _submit(http, api, slow)
    await _until(http, api, running, "running")
    queued = await _submit(http, api, other)

    status, listed = await _call(http, "GET", f"{api.url}/v1/jobs?status=queued")
    assert status == 200 and [j["job_id"] for j in listed["jobs"]] == [queued]
    status, body = await _call(http, "DELETE", f"{api.url}/v1/jobs/{queued}")
    assert status == 200 and body["status"] == "cancelled", body
    assert body["error"]["code"] == "cancelled"
    status, body = await _call(http, "DELETE", f"{api.url}/v1/jobs/{running}")
    assert status == 200 and body["status"] == "cancelled", body
    asked = server.stats()["requests_total"]
    assert asked < 12  # the twelve pages were not all asked for

    status, page = await _call(http, "GET", f"{api.url}/v1/jobs?limit=1")
    assert status == 200 and [j["job_id"] for j in page["jobs"]] == [queued]  # newest first
    assert page["next_offset"] == 1
    status, page = await _call(http, "GET", f"{api.url}/v1/jobs?limit=1&offset=1")
    assert [j["job_id"] for j in page["jobs"]] == [running] and page["next_offset"] is None
    status, page = await _call(http, "GET", f"{api.url}/v1/jobs?status=cancelled")
    assert {j["job_id"] for j in page["jobs"]} == {queued, running}
    assert all(j["result"] is None for j in page["jobs"])
    status, body = await _call(http, "GET", f"{api.url}/v1/jobs?status=lost")
    assert status == 422 and body["error_code"] == "invalid_request"

    # A cancelled document submitted again is converted again, by a fresh conversion process.
    server.configure(service_time=0.01)
    assert await _submit(http, api, other) == queued
    done = await _until(http, api, queued, "completed", "failed")
    assert done["status"] == "completed", done
    status, body = await _call(http, "DELETE", f"{api.url}/v1/jobs/{queued}")
    assert status == 409 and body["error_code"] == "job_finished"
    status, body = await _call(http, "DELETE", f"{api.url}/v1/jobs/{running}")
    assert status == 200 and body["status"] == "cancelled"  # cancelling again changes nothing
    status, _ = await _call(http, "DELETE", f"{api.url}/v1/jobs/nosuchjob")
    assert status == 404


async def test_several_files_in_one_request_are_one_job_each(
    ocrflux_server_factory: Callable[..., Any],
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
) -> None:
    server = ocrflux_server_factory(capacity=4, service_time=0.01)
    cases = generated_cases(3, seed=11, max_pages=3)
    for case in cases:
        register(server, case)
    api = api_servers(VLLM_URL=server.url)
    form = aiohttp.FormData()
    for case in cases:
        form.add_field("file", case.data, filename=case.name)
    form.add_field("output_format", "text")
    async with http.post(f"{api.url}/v1/jobs", data=form) as response:
        body = await response.json()
        assert response.status == 202, body
    ids = [job["job_id"] for job in body["jobs"]]
    assert len(set(ids)) == 3
    for job_id, case in zip(ids, cases, strict=True):
        done = await _until(http, api, job_id, "completed", "failed")
        assert done["status"] == "completed", done
        assert done["result"]["format"] == "text"
        assert done["result"]["metadata"]["filename"] == case.name
    status, listed = await _call(http, "GET", f"{api.url}/v1/jobs?status=completed")
    assert status == 200 and {j["job_id"] for j in listed["jobs"]} == set(ids)


@pytest.mark.kafka
async def test_kafka_mode_cancel_reaches_the_workers(
    pipeline: Pipeline, api_servers: Callable[..., ApiProcess], http: aiohttp.ClientSession
) -> None:
    case = generated_cases(2, seed=300, max_pages=60)[1]
    pages = len(case.model_pages)
    assert pages >= 30
    register(pipeline.server, case)
    pipeline.server.configure(service_time=0.2, capacity=1)
    api = api_servers("api", **pipeline.env(OCRFLUX_MODE="kafka"))
    pipeline.start_worker("worker", OCRFLUX_RECOGNIZE_CONCURRENCY="2")
    job_id = await _submit(http, api, case)
    pipeline.server.wait_for(completed=3, timeout=120)
    status, body = await _call(http, "DELETE", f"{api.url}/v1/jobs/{job_id}")
    assert status == 202 and body["status"] in ("queued", "running"), body
    done = await _until(http, api, job_id, "completed", "failed", "cancelled")
    assert done["status"] == "cancelled" and done["error"]["code"] == "cancelled", done
    assert sum(pipeline.server.stats()["by_task"]["page"].values()) < pages
    status, listed = await _call(http, "GET", f"{api.url}/v1/jobs?status=cancelled")
    assert [j["job_id"] for j in listed["jobs"]] == [job_id]
