"""`ocrflux convert` as users run it: a subprocess against the OCRFlux-3B test double."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios import REPORT_TEXT, pdf_with_lines, register, twelve_page_report


def _convert(
    *args: str | bytes, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`ocrflux convert ARGS...`; bytes arguments reach the command as exactly those bytes."""
    return subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", "convert", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _report_pdf(server: Any, tmp_path: Path) -> tuple[Path, list[str]]:
    """The twelve-page report, its answers registered with the double, written to
    `report.pdf`; its page keys (to inject faults by page)."""
    case = twelve_page_report()
    keys = register(server, case)
    source = tmp_path / "report.pdf"
    source.write_bytes(case.data)
    return source, keys


def test_markdown_to_a_file_with_vllm_url(ocrflux_server: Any, tmp_path: Path) -> None:
    source, _ = _report_pdf(ocrflux_server, tmp_path)
    out = tmp_path / "report.md"
    done = _convert(
        str(source), "-o", str(out), "--vllm-url", ocrflux_server.url, "--engine", "vllm"
    )
    assert done.returncode == 0, done.stderr
    # Figures are cropped by default: the one on page 3 is linked where it stood.
    link = "![Figure 1, page 3](<report_figures/figure-001-page-3.png>)"
    caption = "A caption after the figure."
    assert out.read_text() == REPORT_TEXT.replace(caption, f"{link}\n\n{caption}") + "\n"
    assert (tmp_path / "report_figures" / "figure-001-page-3.png").stat().st_size > 0
    assert "page 12/12" in done.stderr


def test_the_pages_come_from_the_head_start(ocrflux_server: Any, tmp_path: Path) -> None:
    # The command forks a process rendering the pages while it imports its driver
    # (ocrflux.head_start); the figure crop is cut from the command's own copy of the PDF.
    source, _ = _report_pdf(ocrflux_server, tmp_path)
    out = tmp_path / "report.md"
    done = _convert(
        str(source),
        "-o",
        str(out),
        "--engine",
        "vllm",
        "--debug",
        env={"VLLM_URL": ocrflux_server.url},
    )
    assert done.returncode == 0, done.stderr
    assert "the document's pages come from the head start" in done.stderr
    assert "A caption after the figure." in out.read_text()
    assert (tmp_path / "report_figures" / "figure-001-page-3.png").stat().st_size > 0


def test_text_format_and_json_result(ocrflux_server: Any, tmp_path: Path) -> None:
    source, _ = _report_pdf(ocrflux_server, tmp_path)
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
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_partial_result_exits_3_unless_allowed(ocrflux_server: Any, tmp_path: Path) -> None:
    source, keys = _report_pdf(ocrflux_server, tmp_path)
    ocrflux_server.add_fault("invalid_json", task="page", pages=[keys[10]])
    env = {"VLLM_URL": ocrflux_server.url, "OCRFLUX_ENGINE": "vllm", "MAX_PAGE_RETRIES": "1"}
    partial = _convert(str(source), "-o", str(tmp_path / "report.md"), env=env)
    assert partial.returncode == 3, partial.stderr
    assert "report.pdf partial: task_failed: 1 of 12 page(s)" in partial.stderr
    assert "pages [10] (0-based)" in partial.stderr
    assert "Page ten stands alone." in (tmp_path / "report.md").read_text()
    allowed = _convert(str(source), "--allow-partial", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert "Final page." in allowed.stdout and "partial" in allowed.stderr


def test_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    folder = os.fsencode(tmp_path)
    source = folder + b"/caf\xe9\n.pdf"
    Path(os.fsdecode(source)).write_bytes(pdf_with_lines([["Hello from a strange name"]]))
    as_json = _convert(source, "--json", "--engine", "local")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["source"] == "caf\\xe9\n.pdf"  # valid UTF-8, bytes kept
    assert "caf\\xe9\\x0a.pdf: page 1/1" in as_json.stderr  # one line, nothing undecodable
    to_file = _convert(source, "-o", folder + b"/caf\xe9.md", "--engine", "local")
    assert to_file.returncode == 0, to_file.stderr
    assert Path(os.fsdecode(folder + b"/caf\xe9.md")).read_text() == "Hello from a strange name\n"


def test_missing_output_folders_are_created(tmp_path: Path) -> None:
    source = tmp_path / "page.pdf"
    source.write_bytes(pdf_with_lines([["One page"]]))
    out = tmp_path / "missing" / "dir" / "out.md"
    done = _convert(str(source), "-o", str(out), "--engine", "local")
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "One page\n"


def test_unwritable_output_stops_before_converting(ocrflux_server: Any, tmp_path: Path) -> None:
    source, _ = _report_pdf(ocrflux_server, tmp_path)
    (tmp_path / "plain-file").write_text("not a folder")
    for out in ["plain-file/sub/out.md", "."]:
        done = _convert(
            str(source),
            "-o",
            str(tmp_path / out),
            "--vllm-url",
            ocrflux_server.url,
            "--engine",
            "vllm",
        )
        assert done.returncode == 1, done.stderr
        [message] = [line for line in done.stderr.splitlines() if "INFO" not in line]
        assert message.startswith("ocrflux: error: cannot write")
    assert ocrflux_server.requests() == []  # nothing was converted only to be thrown away


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_write_error_after_converting_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "page.pdf"
    source.write_bytes(pdf_with_lines([["One page"]]))
    done = _convert(str(source), "-o", "/dev/full", "--engine", "local")
    assert done.returncode == 1
    assert "ocrflux: error: cannot write /dev/full: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr


def test_warnings_are_printed(tmp_path: Path) -> None:
    data = pdf_with_lines([["first"], ["second"]])
    source = tmp_path / "damaged.pdf"
    source.write_bytes(data[: data.rindex(b"xref")])  # PyMuPDF repairs it on opening
    done = _convert(str(source), "--engine", "local")
    assert "first" in done.stdout
    assert "ocrflux: damaged.pdf: warning: repaired: the file was damaged" in done.stderr


def test_help_documents_the_exit_codes() -> None:
    done = _convert("--help")
    assert "exit status:" in done.stdout and "3    partial" in done.stdout
