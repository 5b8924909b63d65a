"""`ocrflux convert` as users run it: a subprocess against the OCRFlux-3B test double."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.scenarios import REPORT_TEXT, register, twelve_page_report


def _convert(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", "convert", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_markdown_to_a_file_with_vllm_url(ocrflux_server: Any, tmp_path: Path) -> None:
    case = twelve_page_report()
    register(ocrflux_server, case)
    source = tmp_path / "report.pdf"
    source.write_bytes(case.data)
    out = tmp_path / "report.md"
    done = _convert(
        str(source), "-o", str(out), "--vllm-url", ocrflux_server.url, "--engine", "vllm"
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == REPORT_TEXT + "\n"
    assert "page 12/12" in done.stderr


def test_text_format_and_json_result(ocrflux_server: Any, tmp_path: Path) -> None:
    case = twelve_page_report()
    register(ocrflux_server, case)
    source = tmp_path / "report.pdf"
    source.write_bytes(case.data)
    text = _convert(
        str(source),
        "--format",
        "text",
        env={"VLLM_URL": ocrflux_server.url, "OCRFLUX_ENGINE": "vllm"},
    )
    assert text.returncode == 0, text.stderr
    assert "<table>" not in text.stdout and "Name\tScore" in text.stdout
    full = _convert(
        str(source),
        "--json",
        "--pages",
        "1-3",
        env={"VLLM_URL": ocrflux_server.url, "OCRFLUX_ENGINE": "vllm"},
    )
    result = json.loads(full.stdout)
    assert result["status"] == "completed" and sorted(result["page_texts"]) == ["0", "1", "2"]


def test_bad_input_exits_non_zero_with_the_error_code(tmp_path: Path) -> None:
    source = tmp_path / "archive.pdf"
    source.write_bytes(b"PK\x03\x04" + bytes(100))
    done = _convert(str(source), "--engine", "local")
    assert done.returncode == 1
    assert "unsupported_type" in done.stderr and "ZIP archive" in done.stderr
    missing = _convert(str(tmp_path / "nope.pdf"), "--engine", "local")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
