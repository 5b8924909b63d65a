"""Direct mode's conversion processes: `/health` stays responsive while a CPU-heavy document
converts (PyMuPDF holds the GIL for the whole rasterisation of a page, so conversions never run
in threads of the API process; the bound here is generous, the precise p99 is measured by
`python -m bench.bench_api --health`), and a conversion process that dies fails only its own
job and is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.api.documents import slow_pdf
from tests.api.fixtures import ApiProcess
from tests.scenarios import pdf_with_lines

#: Each page takes 1-2 s to rasterise on our CI machine (1-2 ms a curve), all of it with the
#: GIL held: an API process that renders in its own threads stalls that long.
PAGES, CURVES = 3, 1000
MAX_HEALTH_LATENCY_S = 0.5
DEADLINE_S = 120.0


async def test_health_answers_quickly_while_a_heavy_document_converts(
    ocrflux_subprocess_factory: Callable[..., Any], api_servers: Callable[..., ApiProcess]
) -> None:
    double = ocrflux_subprocess_factory(capacity=8)
    api = api_servers(VLLM_URL=double.url)
    data = slow_pdf(PAGES, CURVES)
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("file", data, filename="heavy.pdf")
        async with http.post(f"{api.url}/v1/jobs", data=form) as response:
            accepted = await response.json()
            assert response.status == 202, accepted
        deadline = time.monotonic() + DEADLINE_S
        status: dict[str, Any] = {"status": "queued"}
        while status["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, status
            started = time.monotonic()
            async with http.get(f"{api.url}/health") as response:
                assert response.status == 200
                await response.read()
            latencies.append(time.monotonic() - started)
            async with http.get(api.url + accepted["status_url"]) as response:
                status = await response.json()
            await asyncio.sleep(0.02)  # probe interval
    assert status["status"] == "completed", status
    assert status["pages_done"] == PAGES
    assert len(latencies) >= 5  # the probes did overlap the conversion
    assert max(latencies) < MAX_HEALTH_LATENCY_S, sorted(latencies)[-5:]


def _children(pid: int) -> list[int]:
    """Children of every thread of `pid` (/proc lists them by the thread that started them)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread has just ended
            continue
    return found


def _conversion_processes(api: ApiProcess) -> list[int]:
    """The API's conversion processes: the children of its multiprocessing fork server."""
    found = []
    for pid in _children(api.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"multiprocessing.forkserver" in command:
            found += _children(pid)
    return found


async def _job(http: aiohttp.ClientSession, api: ApiProcess, data: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="doc.pdf")
    async with http.post(f"{api.url}/v1/jobs", data=form) as response:
        accepted = await response.json()
        assert response.status == 202, accepted
    return str(accepted["status_url"])


async def _final(http: aiohttp.ClientSession, api: ApiProcess, status_url: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        async with http.get(api.url + status_url) as response:
            status = await response.json()
        if status["status"] in ("completed", "failed"):
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)  # poll interval on the job's status


async def test_a_conversion_process_that_dies_fails_only_its_job(
    ocrflux_server: Any, api_servers: Callable[..., ApiProcess]
) -> None:
    api = api_servers(VLLM_URL=ocrflux_server.url, OCRFLUX_MAX_CONVERSIONS="1")
    async with aiohttp.ClientSession() as http:
        heavy = await _job(http, api, slow_pdf(PAGES, CURVES))
        deadline = time.monotonic() + DEADLINE_S
        while not (workers := _conversion_processes(api)):
            assert time.monotonic() < deadline, "no conversion process started"
            await asyncio.sleep(0.05)  # poll interval on the API's children
        os.kill(workers[0], signal.SIGKILL)  # as the OOM killer would
        final = await _final(http, api, heavy)
        assert final["status"] == "failed", final
        assert final["error"]["code"] == "internal"
        assert "conversion process" in final["error"]["message"]
        # the next document is converted by a new process
        after = await _final(http, api, await _job(http, api, pdf_with_lines([["next"]])))
        assert after["status"] == "completed", after
    assert _conversion_processes(api) not in ([], workers)
