"""Asynchronous jobs in direct mode: status, server-sent events, callbacks, saturation, metrics,
and the result cache (in-process LRU, and Redis shared by two instances)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.api.fixtures import ApiProcess, Site
from tests.scenarios import REPORT_TEXT, pdf_with_lines, register, twelve_page_report

DEADLINE_S = 60.0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _form(data: bytes, name: str = "report.pdf", **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name)
    for key, value in fields.items():
        form.add_field(key, value)
    return form


async def _submit(http: aiohttp.ClientSession, api: ApiProcess, form: Any) -> dict[str, Any]:
    async with http.post(f"{api.url}/v1/jobs", data=form) as response:
        body = await response.json()
        assert response.status == 202, body
        assert response.headers["Location"] == body["status_url"]
        return body


async def _until_done(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """Poll a job until it is terminal; every distinct state seen, in order."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + DEADLINE_S
    while True:
        async with http.get(url) as response:
            assert response.status == 200
            status = await response.json()
        if not seen or status["status"] != seen[-1]["status"]:
            seen.append(status)
        if status["status"] in ("completed", "failed"):
            return seen
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.05)  # poll interval on the job's status


async def test_job_runs_to_completion_with_progress_events(
    ocrflux_server_factory: Callable[..., Any],
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
) -> None:
    server = ocrflux_server_factory(capacity=2, service_time=0.05)
    case = twelve_page_report()
    register(server, case)
    api = api_servers(VLLM_URL=server.url)
    accepted = await _submit(http, api, _form(case.data, figures="none"))  # as REPORT_TEXT
    assert accepted["status"] in ("queued", "running")
    events: list[tuple[str, dict[str, Any]]] = []
    async with http.get(api.url + accepted["events_url"]) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
    assert events[-1][0] == "completed"
    final = events[-1][1]
    assert final["result"]["content"] == REPORT_TEXT
    assert final["pages_done"] == final["pages_total"] == 12
    progress = [data for name, data in events if name == "progress"]
    assert progress, events
    done = [data["pages_done"] for data in progress]
    assert done == sorted(done)
    assert any(0 < data["pages_done"] < 12 and data["pages_total"] == 12 for data in progress)

    async with http.get(api.url + accepted["status_url"]) as response:
        status = await response.json()
    assert status["status"] == "completed" and status["job_id"] == accepted["job_id"]
    assert status["result"]["metadata"]["filename"] == "report.pdf"
    async with http.get(f"{api.url}/v1/jobs/{'0' * 32}") as response:
        assert response.status == 404
        assert (await response.json())["error_code"] == "not_found"


async def test_failed_job_carries_its_error_code(
    ocrflux_server: Any, api_servers: Callable[..., ApiProcess], http: aiohttp.ClientSession
) -> None:
    api = api_servers(VLLM_URL=ocrflux_server.url)
    broken = b"%PDF-1.7\n" + b"\x00garbage" * 100
    accepted = await _submit(http, api, _form(broken))
    seen = await _until_done(http, api.url + accepted["status_url"])
    final = seen[-1]
    assert final["status"] == "failed" and final["result"] is None
    assert final["error"]["code"] == "corrupt"


async def test_callback_is_retried_with_backoff_until_delivered(
    ocrflux_server: Any,
    api_servers: Callable[..., ApiProcess],
    web_site: Callable[[str], Site],
    http: aiohttp.ClientSession,
) -> None:
    site = web_site("127.0.0.2")
    site.callback_statuses = [500, 503]
    api = api_servers(
        VLLM_URL=ocrflux_server.url,
        OCRFLUX_FETCH_ALLOW="127.0.0.2/32",
        OCRFLUX_CALLBACK_BACKOFF_S="0.2",
    )
    data = pdf_with_lines([["callback me"]])
    accepted = await _submit(http, api, _form(data, callback_url=f"{site.url}/callback"))
    # Two back-offs with full jitter, under ceilings of 0.2 s then 0.4 s: no lower bound on the
    # wait (`ocrflux.backoff` is tested on its own), only that the attempts go on.
    calls = await asyncio.to_thread(site.wait_callbacks, 3)
    assert len(calls) == 3
    assert all(call == calls[0] for call in calls)  # the same final status every attempt
    assert calls[0]["job_id"] == accepted["job_id"]
    assert calls[0]["status"] == "completed"
    assert calls[0]["result"]["status"] == "success"


async def test_saturation_answers_503_with_retry_after(
    ocrflux_server_factory: Callable[..., Any],
    api_servers: Callable[..., ApiProcess],
    http: aiohttp.ClientSession,
) -> None:
    server = ocrflux_server_factory(capacity=1, service_time=2.0)
    api = api_servers(
        VLLM_URL=server.url,
        OCRFLUX_MAX_CONVERSIONS="1",
        OCRFLUX_MAX_QUEUED="0",
        OCRFLUX_RETRY_AFTER_S="7",
    )
    document = pdf_with_lines([["first"]])
    first = await _submit(http, api, _form(document))
    for endpoint in ("/v1/jobs", "/convert/file"):
        async with http.post(api.url + endpoint, data=_form(pdf_with_lines([["second"]]))) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "7"
            assert (await r.json())["error_code"] == "saturated"
    async with http.get(api.url + "/ready") as response:
        assert response.status == 503
        assert (await response.json())["checks"]["capacity"] is False
    # Refused before its body is read, the same document too: the caller follows its job.
    async with http.post(api.url + "/v1/jobs", data=_form(document)) as r:
        assert r.status == 503
    seen = await _until_done(http, api.url + first["status_url"])
    assert seen[-1]["status"] == "completed"
    # once there is room, the completed document is answered by its job
    again = await _submit(http, api, _form(document))
    assert again["job_id"] == first["job_id"] and again["status"] == "completed"
    async with http.get(api.url + "/metrics") as response:
        metrics = await response.text()
    assert 'ocrflux_api_requests_total{method="POST",route="/v1/jobs",status="503"} 2.0' in metrics
    assert 'ocrflux_api_requests_total{method="POST",route="/v1/jobs",status="202"} 2.0' in metrics
    assert 'ocrflux_api_jobs{state="completed"} 1.0' in metrics
    assert "ocrflux_api_saturated_total 3.0" in metrics
    assert 'ocrflux_api_request_duration_seconds_count{route="/v1/jobs"} 4.0' in metrics


async def test_lru_cache_answers_a_resubmission_without_vllm(
    ocrflux_server: Any, api_servers: Callable[..., ApiProcess], http: aiohttp.ClientSession
) -> None:
    # One finished job retained: the second document pushes the first out of the job store,
    # so only the cache can answer the first again.
    api = api_servers(VLLM_URL=ocrflux_server.url, OCRFLUX_JOBS_RETAINED="1")
    data = pdf_with_lines([["cached once"], ["page two"]])
    async with http.post(f"{api.url}/convert/file", data=_form(data)) as response:
        first = await response.json()
    async with http.post(f"{api.url}/convert/file", data=_form(pdf_with_lines([["other"]]))):
        pass
    requests = ocrflux_server.stats()["requests_total"]
    assert requests >= 3
    async with http.post(f"{api.url}/convert/file", data=_form(data, "renamed.pdf")) as response:
        second = await response.json()
    assert ocrflux_server.stats()["requests_total"] == requests
    assert second["content"] == first["content"]
    assert second["metadata"]["filename"] == "renamed.pdf"
    async with http.get(api.url + "/metrics") as response:
        assert 'ocrflux_api_cache_lookups_total{result="hit"} 1.0' in await response.text()


async def test_redis_cache_is_shared_by_instances(
    ocrflux_server: Any,
    api_servers: Callable[..., ApiProcess],
    redis_server: str,
    http: aiohttp.ClientSession,
) -> None:
    import redis

    first = api_servers("api-a", VLLM_URL=ocrflux_server.url, REDIS_URL=redis_server)
    second = api_servers("api-b", VLLM_URL=ocrflux_server.url, REDIS_URL=redis_server)
    data = pdf_with_lines([[f"redis shared {time.time_ns()}"]])
    async with http.post(f"{first.url}/convert/file", data=_form(data)) as response:
        one = await response.json()
    requests = ocrflux_server.stats()["requests_total"]
    client = redis.Redis.from_url(redis_server)
    try:
        deadline = time.monotonic() + 10
        while not client.keys("ocrflux:result:vllm:*"):
            assert time.monotonic() < deadline, "no result written to Redis"
            await asyncio.sleep(0.05)  # poll interval on Redis
        ttl = client.ttl(client.keys("ocrflux:result:vllm:*")[0])
        assert 0 < ttl <= 7 * 86400
    finally:
        client.close()
    async with http.post(f"{second.url}/convert/file", data=_form(data)) as response:
        two = await response.json()
    assert two == one
    assert ocrflux_server.stats()["requests_total"] == requests
