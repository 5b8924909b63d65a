"""The OpenAPI document and `/docs`: rendered by headless Chromium with no network, and checked
by a schemathesis run against the live server (no 5xx, no schema violation)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from connectors.api.openapi import DOCS_HTML, build_openapi
from tests.api.fixtures import ApiProcess

ENDPOINTS = ["/convert/file", "/convert/url", "/health", "/models", "/v1/jobs", "/v1/jobs/{job_id}"]
KEY = "docs-key"


def chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed (Debian: apt-get install -y chromium)"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_data}",
        # No network but this loopback server: every other host name fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=20000",
    ]
    return subprocess.run([binary, *flags, *args], capture_output=True, timeout=120, check=False)


def test_docs_render_offline_in_headless_chromium(
    api_servers: Callable[..., ApiProcess], ocrflux_server: Any, tmp_path: Path
) -> None:
    api = api_servers(VLLM_URL=ocrflux_server.url, API_KEYS=KEY)
    url = f"{api.url}/docs"
    dom = chromium("--dump-dom", url, user_data=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    html = dom.stdout.decode()
    for endpoint in ENDPOINTS:
        assert endpoint in html, endpoint
    assert "OCRFlux Stream API" in html
    shot = tmp_path / "docs.png"
    done = chromium(
        f"--screenshot={shot}", "--window-size=1280,2000", url, user_data=tmp_path / "profile-png"
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 20, "the screenshot is (nearly) blank"
    log = api.log()
    assert "GET /docs/static/swagger-ui-bundle.js" in log and "GET /openapi.json" in log


def test_docs_page_loads_nothing_from_elsewhere() -> None:
    assert not re.search(r"(src|href|url)\s*[=:]\s*[\"']?(https?:)?//", DOCS_HTML)


def test_openapi_document_covers_the_api() -> None:
    document = build_openapi(version="1", auth=True)
    assert document["openapi"].startswith("3.1")
    assert set(ENDPOINTS) <= set(document["paths"])
    schemas = document["components"]["schemas"]
    assert {"ConvertResponse", "ErrorResponse", "JobStatus", "HealthResponse"} <= set(schemas)
    convert = schemas["ConvertResponse"]
    assert {"status", "format", "content", "error", "metadata"} <= set(convert["required"])
    assert document["paths"]["/health"]["get"]["security"] == []
    open_doc = build_openapi(version="1", auth=False)
    assert "security" not in open_doc and "securitySchemes" not in open_doc["components"]


def test_schemathesis_finds_no_server_error_or_schema_violation(
    api_servers: Callable[..., ApiProcess], ocrflux_server: Any, tmp_path: Path
) -> None:
    api = api_servers(VLLM_URL=ocrflux_server.url, API_KEYS=KEY)
    cli = Path(sys.executable).parent / "schemathesis"
    if not cli.exists():
        pytest.fail("schemathesis is not installed (pip install -e '.[dev]')")
    checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
    done = subprocess.run(
        [
            str(cli),
            "run",
            f"{api.url}/openapi.json",
            "--checks",
            ",".join(checks),
            "--max-examples",
            "15",
            "--header",
            f"X-API-Key: {KEY}",
            "--seed",
            "1",
            "--request-timeout",
            "60",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
        check=False,
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output[-6000:]
    assert re.search(r"\d+ generated, \d+ passed", output), output[-3000:]
    assert "unhandled error" not in api.log()  # the 500 handler's log line
