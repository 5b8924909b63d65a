"""Kafka mode: a job submitted to one API instance is followed to completion on another, and its
callback is sent even when the instance that accepted it is gone; a worker of the stream
processor does the work (the session's real Kafka broker)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.api.fixtures import ApiProcess, Site
from tests.scenarios import REPORT_TEXT, generated_cases, register, twelve_page_report
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka

DEADLINE_S = 180.0


async def test_job_submitted_to_one_instance_completes_on_another(
    pipeline: Pipeline, api_servers: Callable[..., ApiProcess]
) -> None:
    case = twelve_page_report()
    register(pipeline.server, case)
    env = pipeline.env(OCRFLUX_MODE="kafka")
    first = api_servers("api-a", **env)
    second = api_servers("api-b", **env)
    pipeline.start_worker("worker")
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("file", case.data, filename=case.name)
        form.add_field("figures", "none")  # REPORT_TEXT: the figure on page 3 left out
        async with http.post(f"{first.url}/v1/jobs", data=form) as response:
            accepted = await response.json()
            assert response.status == 202, accepted
        job_id = accepted["job_id"]
        # The other instance knows the job at once (it catches up with the topics first).
        async with http.get(f"{second.url}/v1/jobs/{job_id}") as response:
            assert response.status == 200
            assert (await response.json())["status"] in ("queued", "running", "completed")
        events: list[tuple[str, dict[str, Any]]] = []
        async with http.get(f"{second.url}/v1/jobs/{job_id}/events") as response:
            name = ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[len("data: ") :])))
        assert events[-1][0] == "completed", events
        status = await _until_done(http, f"{second.url}/v1/jobs/{job_id}")
        assert status["status"] == "completed"
        assert status["pages_done"] == status["pages_total"] == 12
        assert status["result"]["content"] == REPORT_TEXT
        assert status["result"]["metadata"] == {
            "filename": case.name,
            "file_size": len(case.data),
            "pages_processed": 12,
            "fallback_pages": [],
        }
        # The guide's synchronous endpoint works in kafka mode too, on either instance.
        form = aiohttp.FormData()
        form.add_field("file", case.data, filename="again.pdf")
        form.add_field("output_format", "text")
        async with http.post(f"{second.url}/convert/file", data=form) as response:
            answer = await response.json()
        assert answer["status"] == "success" and answer["format"] == "text"
        assert "Annual Report" in answer["content"] and "<table" not in answer["content"]
        async with http.get(f"{first.url}/health") as response:
            health = await response.json()
        assert health["mode"] == "kafka" and health["engine"] == "workers"
    submitted = {record.doc_id for record in pipeline.records("documents")}
    assert job_id in submitted and len(submitted) == 2  # the job, and the text conversion


async def test_callback_is_sent_when_the_accepting_instance_died(
    pipeline: Pipeline, api_servers: Callable[..., ApiProcess], web_site: Callable[[str], Site]
) -> None:
    case = twelve_page_report()
    register(pipeline.server, case)
    site = web_site("127.0.0.2")
    env = pipeline.env(OCRFLUX_MODE="kafka", OCRFLUX_FETCH_ALLOW="127.0.0.2/32")
    accepting = api_servers("api-a", **env)
    other = api_servers("api-b", **env)
    hook = f"{site.url}/callback"
    async with aiohttp.ClientSession() as http:
        first = await _submit(http, accepting, case.data, callback_url=hook)
        # Gone before its document is even split: no instance has the job's result yet.
        accepting.processes.kill(accepting.process)
        pipeline.start_worker("worker")
        calls = await asyncio.to_thread(site.wait_callbacks, 1, DEADLINE_S)
        assert calls[0]["job_id"] == first["job_id"]
        assert calls[0]["status"] == "completed"
        assert calls[0]["result"]["content"] == REPORT_TEXT
        assert calls[0]["result"]["metadata"]["pages_processed"] == 12
        # The surviving instance's own submission is called back once, like the first.
        second = await _submit(http, other, case.data, callback_url=hook, output_format="text")
        calls = await asyncio.to_thread(site.wait_callbacks, 2, DEADLINE_S)
    assert [call["job_id"] for call in calls] == [first["job_id"], second["job_id"]]
    assert calls[1]["result"]["format"] == "text"


async def test_a_document_this_instance_forgot_is_answered_again(
    pipeline: Pipeline, api_servers: Callable[..., ApiProcess]
) -> None:
    report, other = twelve_page_report(), generated_cases(1, seed=11)[0]
    register(pipeline.server, report)
    register(pipeline.server, other)
    # One finished job kept, no result cache: the report is forgotten once the other finishes.
    env = pipeline.env(
        OCRFLUX_MODE="kafka",
        OCRFLUX_JOBS_RETAINED="1",
        OCRFLUX_CACHE_ENTRIES="0",
        OCRFLUX_SYNC_TIMEOUT_S="120",  # a lost answer fails the test instead of hanging it
    )
    api = api_servers("api", **env)
    pipeline.start_worker("worker")
    async with aiohttp.ClientSession() as http:
        for case in (report, other, report):
            form = aiohttp.FormData()
            form.add_field("file", case.data, filename=case.name)
            async with http.post(f"{api.url}/convert/file", data=form) as response:
                answer = await response.json()
            assert response.status == 200 and answer["status"] == "success", answer
        assert answer["content"] == REPORT_TEXT
    # The worker logs its answer after its own table write, so the API may have read the answer
    # back and replied before the line is written: wait for it (bounded) instead of racing it.
    await _until_logged(pipeline, "worker", "answered a new submission")
    assert "answered a new submission" in pipeline.processes.log("worker")


async def _submit(
    http: aiohttp.ClientSession, api: ApiProcess, data: bytes, **fields: str
) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="report.pdf")
    fields = {"figures": "none", **fields}  # REPORT_TEXT: the figure on page 3 left out
    for name, value in fields.items():
        form.add_field(name, value)
    async with http.post(f"{api.url}/v1/jobs", data=form) as response:
        accepted = await response.json()
        assert response.status == 202, accepted
    return dict(accepted)


async def _until_done(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        async with http.get(url) as response:
            status = await response.json()
        if status["status"] in ("completed", "failed"):
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)  # poll interval on the job's status


async def _until_logged(pipeline: Pipeline, name: str, text: str) -> None:
    """Until `text` is in process `name`'s log, or the deadline passed (the caller asserts)."""
    deadline = time.monotonic() + DEADLINE_S
    while text not in pipeline.processes.log(name) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # poll interval on the log file
