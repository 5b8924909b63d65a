"""`ocrflux submit --json`: JSON lines on stdout, one per file sent, or with `--wait` one per
document result (then one per document without a result and per unreadable file)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from schemas.records import DocumentRequest, ResultRecord, decode
from schemas.results import ErrorInfo
from streams.kafka import KafkaSettings
from tests.connectors.fixtures import consume, produce
from tests.connectors.test_cli_commands import PDF, TIMEOUT_S, _command, _env
from tests.fixtures.processes import REPO_ROOT

pytestmark = pytest.mark.kafka


def test_submit_json_prints_one_line_per_file(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    first, second = tmp_path / "one.pdf", tmp_path / "two.pdf"
    first.write_bytes(PDF)
    second.write_bytes(PDF + b"2")
    done = subprocess.run(
        _command("submit", "--json", str(first), str(second), str(tmp_path / "gone.pdf")),
        cwd=REPO_ROOT,
        env=_env(tmp_path, kafka_settings),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 1  # a file could not be read
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(first), str(second)]
    requests = [
        decode(m.value()) for m in consume(kafka_settings, kafka_settings.topics.documents, 2)
    ]
    assert {line["doc_id"] for line in lines} == {
        r.doc_id for r in requests if isinstance(r, DocumentRequest)
    }
    assert "cannot read" in done.stderr and "gone.pdf" in done.stderr


def test_submit_wait_json_prints_one_line_per_result(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    good, bad, slow = tmp_path / "good.pdf", tmp_path / "bad.pdf", tmp_path / "slow.pdf"
    good.write_bytes(PDF)
    bad.write_bytes(PDF + b"bad")
    slow.write_bytes(PDF + b"slow")
    out = tmp_path / "out"
    args = ["--wait", "--json", "--timeout", "20", "--out", str(out)]
    process = subprocess.Popen(
        _command("submit", *args, str(good), str(bad), str(slow), str(tmp_path / "gone.pdf")),
        cwd=REPO_ROOT,
        env=_env(tmp_path, kafka_settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages = consume(kafka_settings, kafka_settings.topics.documents, 3)
        requests = [decode(m.value()) for m in messages]
        ids = {r.filename: r.doc_id for r in requests if isinstance(r, DocumentRequest)}
        produce(
            kafka_settings,
            kafka_settings.topics.results,
            [
                (
                    ids["good.pdf"],
                    ResultRecord(
                        doc_id=ids["good.pdf"], status="completed", num_pages=1, content="# Good"
                    ),
                ),
                (
                    ids["bad.pdf"],
                    ResultRecord(
                        doc_id=ids["bad.pdf"],
                        status="failed",
                        error=ErrorInfo(code="corrupt", message="no pages"),
                    ),
                ),
            ],
        )
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr
    lines = {line["files"][0]: line for line in map(json.loads, stdout.splitlines())}
    assert set(lines) == {str(good), str(bad), str(slow), str(tmp_path / "gone.pdf")}
    assert lines[str(good)] == {
        "doc_id": ids["good.pdf"],
        "status": "completed",
        "files": [str(good)],
        "outputs": [str(out / "good.md")],
        "num_pages": 1,
        "fallback_pages": [],
        "error": None,
        "warnings": [],
        "problems": [],
    }
    assert (out / "good.md").read_text() == "# Good\n"
    assert lines[str(bad)]["status"] == "failed"
    assert lines[str(bad)]["error"] == {"code": "corrupt", "message": "no pages"}
    assert lines[str(slow)] == {
        "doc_id": ids["slow.pdf"],
        "status": "missing",
        "files": [str(slow)],
    }
    assert lines[str(tmp_path / "gone.pdf")]["status"] == "unreadable"
    statuses = [json.loads(line)["status"] for line in stdout.splitlines()]
    assert statuses[2:] == ["missing", "unreadable"]  # after the results, as they arrived
