"""The deployment guide's curl commands, run verbatim (host and port aside) with `curl` against
`python -m ocrflux.document_api_server_remote` in direct mode, with the OCRFlux-3B test double."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocrflux.plaintext import markdown_to_text
from tests.api.fixtures import ApiProcess, Site
from tests.scenarios import REPORT_TEXT, register, twelve_page_report

GUIDE_COMMANDS = {
    "file_markdown": 'curl -X POST "{base}/convert/file" -F "file=@document.pdf" '
    '-F "output_format=markdown"',
    "file_text": 'curl -X POST "{base}/convert/file" -F "file=@document.pdf" '
    '-F "output_format=text"',
    "url": 'curl -X POST "{base}/convert/url" -H "Content-Type: application/json" '
    '-d \'{{"url": "{document_url}", "output_format": "markdown"}}\'',
    "health": 'curl "{base}/health"',
    "models": 'curl "{base}/models"',
}


def curl(command: str, cwd: Path) -> Any:
    assert shutil.which("curl"), "curl is not installed (Debian: apt-get install -y curl)"
    done = subprocess.run(
        shlex.split(command), cwd=cwd, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.fixture
def guide_server(
    ocrflux_server: Any,
    api_servers: Callable[..., ApiProcess],
    web_site: Callable[[str], Site],
    tmp_path: Path,
) -> tuple[ApiProcess, Site]:
    case = twelve_page_report()
    register(ocrflux_server, case)
    (tmp_path / "document.pdf").write_bytes(case.data)
    site = web_site("127.0.0.1")
    site.files["document.pdf"] = case.data
    vllm_host, vllm_port = ocrflux_server.url.rsplit(":", 1)
    api = api_servers(
        VLLM_URL=vllm_host,  # the guide's split: URL without the port, and VLLM_PORT
        VLLM_PORT=vllm_port,
        OCRFLUX_FETCH_ALLOW="127.0.0.1/32",  # the document site is on loopback
    )
    return api, site


def test_convert_file_markdown_and_text(
    guide_server: tuple[ApiProcess, Site], ocrflux_server: Any, tmp_path: Path
) -> None:
    api, _ = guide_server
    markdown = curl(GUIDE_COMMANDS["file_markdown"].format(base=api.url), tmp_path)
    assert markdown == {
        "status": "success",
        "format": "markdown",
        "content": REPORT_TEXT,
        "error": None,
        "error_code": None,
        "error_detail": None,
        "warnings": [],
        "metadata": {
            "filename": "document.pdf",
            "file_size": (tmp_path / "document.pdf").stat().st_size,
            "pages_processed": 12,
            "fallback_pages": [],
        },
    }
    text = curl(GUIDE_COMMANDS["file_text"].format(base=api.url), tmp_path)
    assert text["status"] == "success" and text["format"] == "text"
    assert text["content"] == markdown_to_text(REPORT_TEXT)
    assert "<table" not in text["content"] and "# " not in text["content"]
    assert "Name\tScore" in text["content"]  # tables as tab-separated rows
    assert ocrflux_server.stats()["by_task"]["page"]["200"] >= 24  # both really converted


def test_convert_url(guide_server: tuple[ApiProcess, Site], tmp_path: Path) -> None:
    api, site = guide_server
    document_url = f"{site.url}/files/document.pdf"
    command = GUIDE_COMMANDS["url"].format(base=api.url, document_url=document_url)
    answer = curl(command, tmp_path)
    assert answer["status"] == "success"
    assert answer["content"] == REPORT_TEXT
    assert answer["metadata"] == {
        "url": document_url,
        "file_size": len(site.files["document.pdf"]),
        "pages_processed": 12,
        "fallback_pages": [],
    }


def test_health_and_models(
    guide_server: tuple[ApiProcess, Site], ocrflux_server: Any, tmp_path: Path
) -> None:
    api, _ = guide_server
    health = curl(GUIDE_COMMANDS["health"].format(base=api.url), tmp_path)
    assert {"status", "vllm_configured", "vllm_healthy", "timestamp"} <= set(health)
    assert health["status"] == "healthy"
    assert health["vllm_configured"] is True and health["vllm_healthy"] is True
    assert health["engine"] == "vllm" and health["mode"] == "direct"
    models = curl(GUIDE_COMMANDS["models"].format(base=api.url), tmp_path)
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [ocrflux_server.model]


def test_health_reports_the_local_fallback_when_vllm_does_not_answer(
    api_servers: Callable[..., ApiProcess], tmp_path: Path
) -> None:
    from deploy.kafka_broker import free_port

    api = api_servers(VLLM_URL="http://127.0.0.1", VLLM_PORT=str(free_port()))
    health = curl(GUIDE_COMMANDS["health"].format(base=api.url), tmp_path)
    assert health["vllm_configured"] is True and health["vllm_healthy"] is False
    assert health["engine"] == "local" and health["status"] == "healthy"
    status, body = api.get_json("/models")
    assert status == 503 and body["status"] == "error"


def test_vllm_engine_without_vllm_answers_503(
    api_servers: Callable[..., ApiProcess], tmp_path: Path
) -> None:
    from deploy.kafka_broker import free_port

    api = api_servers(
        VLLM_URL="http://127.0.0.1", VLLM_PORT=str(free_port()), OCRFLUX_ENGINE="vllm"
    )
    (tmp_path / "document.pdf").write_bytes(twelve_page_report().data)
    done = subprocess.run(
        ["curl", "-s", "-i", "-X", "POST", f"{api.url}/convert/file", "-F", "file=@document.pdf"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=True,
    )
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 503"), head
    assert "retry-after:" in head.lower()
    assert json.loads(body)["error_code"] == "vllm_unavailable"


def test_ocrflux_api_command_serves_the_same_api(
    api_servers: Callable[..., ApiProcess], ocrflux_server: Any, tmp_path: Path
) -> None:
    api = api_servers("cli-api", module="cli", VLLM_URL=ocrflux_server.url)
    health = curl(GUIDE_COMMANDS["health"].format(base=api.url), tmp_path)
    assert health["vllm_healthy"] is True
