"""Prometheus endpoints (the API's `/metrics`, its key-free `OCRFLUX_METRICS_PORT`, the worker's
and the S3 connector's) answer in the exposition format's content type; the API names every
request with an id and logs JSON lines with it and with each job's id."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from connectors.s3.metrics import SourceMetrics
from deploy.kafka_broker import free_port
from streams.metrics import WorkerMetrics
from tests.api.fixtures import ApiProcess
from tests.scenarios import pdf_with_lines

#: The Prometheus text format's content type (what prometheus_client's own endpoint answers).
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
KEY = "scrape-test-key"
DEADLINE_S = 60.0


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def api(api_servers: Callable[..., ApiProcess]) -> tuple[ApiProcess, int]:
    port = free_port()
    server = api_servers(
        "api",
        API_KEYS=KEY,
        OCRFLUX_ENGINE="local",
        OCRFLUX_METRICS_PORT=str(port),
        OCRFLUX_LOG_FORMAT="json",
    )
    return server, port


def test_metrics_on_their_own_port_need_no_key(api: tuple[ApiProcess, int]) -> None:
    server, port = api
    status, headers, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert headers["Content-Type"] == TEXT_FORMAT
    assert b"# TYPE ocrflux_api_requests_total counter" in body
    assert _get(f"http://127.0.0.1:{port}/health")[0] == 404  # that port serves /metrics only

    assert _get(server.url + "/metrics")[0] == 401  # the main port keeps needing the key
    status, headers, body = _get(server.url + "/metrics", {"X-API-Key": KEY})
    assert status == 200 and headers["Content-Type"] == TEXT_FORMAT
    asked = {"Accept": "application/openmetrics-text; version=1.0.0"}
    _, headers, body = _get(f"http://127.0.0.1:{port}/metrics", asked)
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")


def test_the_metrics_port_is_loopback_by_default(api: tuple[ApiProcess, int]) -> None:
    server, port = api
    assert f"metrics on http://127.0.0.1:{port}/metrics" in server.log()


async def test_request_ids_and_json_log_lines(api: tuple[ApiProcess, int]) -> None:
    server, _ = api
    headers = {"X-API-Key": KEY}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/health") as response:
            generated = response.headers["X-Request-Id"]
        async with http.get(
            server.url + "/metrics", headers={"X-Request-Id": "caller-id-1"}
        ) as response:
            assert response.status == 401  # errors carry the id too
            assert response.headers["X-Request-Id"] == "caller-id-1"
        async with http.get(server.url + "/health", headers={"X-Request-Id": "bad id\t!"}) as r:
            assert r.headers["X-Request-Id"] != "bad id\t!"  # not taken as it is
        form = aiohttp.FormData()
        document = pdf_with_lines([["A page for the job log."]])
        form.add_field("file", document, filename="letter.pdf")
        async with http.post(server.url + "/v1/jobs", data=form, headers=headers) as response:
            assert response.status == 202
            job_id = (await response.json())["job_id"]
    lines = _wait_lines(server, lambda ls: any(_finished(line, job_id) for line in ls))
    assert len(generated) == 32 and int(generated, 16) >= 0
    access = [line for line in lines if line["logger"] == "ocrflux.api.access"]
    by_id = {line.get("request_id"): line for line in access}
    assert '"GET /health" 200' in str(by_id[generated]["message"])
    assert '"GET /metrics" 401' in str(by_id["caller-id-1"]["message"])
    started = [line for line in lines if line.get("job_id") == job_id]
    assert any("started" in str(line["message"]) for line in started), started
    assert all(line["level"] in ("debug", "info", "warning", "error") for line in lines)


def _finished(line: dict[str, Any], job_id: str) -> bool:
    return line.get("job_id") == job_id and "completed" in str(line["message"])


def _wait_lines(
    server: ApiProcess, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The server's log as JSON objects (every line must be one), once `done(lines)` holds."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
        if done(lines):
            return lines
        assert time.monotonic() < deadline, lines[-20:]
        time.sleep(0.1)  # poll interval on the server's log


@pytest.mark.parametrize("metrics", [WorkerMetrics, SourceMetrics])
def test_worker_and_connector_endpoints_answer_the_text_format(metrics: Any) -> None:
    served = metrics(CollectorRegistry())
    port = served.serve("127.0.0.1", 0)
    status, headers, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and headers["Content-Type"] == TEXT_FORMAT
    assert b"# TYPE ocrflux_" in body
