"""`ocrflux submit` and `ocrflux results` as the user runs them: separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.kafka_config import KafkaSettings
from schemas.records import DocumentRequest, ProgressEvent, ResultRecord, decode
from schemas.results import ErrorInfo
from tests.connectors.fixtures import consume, produce
from tests.fixtures.processes import REPO_ROOT

TIMEOUT_S = 120
PDF = b"%PDF-1.4\n% cli test\n"


def _env(tmp_path: Path, settings: KafkaSettings | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["OCRFLUX_HOME"] = str(tmp_path / "home")  # no local broker state file in there
    env["OCRFLUX_BLOB_DIR"] = str(tmp_path / "blobs")
    if settings is not None:
        env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
        env["OCRFLUX_TOPIC_PREFIX"] = settings.ocrflux_topic_prefix
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ocrflux.cli", *args]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize("args", [["submit", "x.pdf"], ["results"], ["results", "--follow"]])
def test_no_broker_is_a_clear_error(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "x.pdf").write_bytes(PDF)
    done = subprocess.run(
        _command(*args),
        cwd=tmp_path,
        env=_env(tmp_path, None),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in done.stderr
    assert "ocrflux broker start" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.kafka
def test_submit_prints_one_doc_id_per_file(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    first, second = tmp_path / "one.pdf", tmp_path / "two.pdf"
    first.write_bytes(PDF)
    second.write_bytes(PDF + b"2")
    done = _run(
        _env(tmp_path, kafka_settings), "submit", "--format", "text", str(first), str(second)
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert [path for _, path in lines] == [str(first), str(second)]
    requests = {}
    for message in consume(kafka_settings, kafka_settings.topics.documents, 2):
        record = decode(message.value())
        assert isinstance(record, DocumentRequest)
        requests[record.doc_id] = record
    assert set(requests) == {doc_id for doc_id, _ in lines}
    assert {r.options.output_format for r in requests.values()} == {"text"}


@pytest.mark.kafka
def test_results_prints_what_is_on_the_topic(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    produce(
        kafka_settings,
        kafka_settings.topics.results,
        [
            ("d1", ResultRecord(doc_id="d1", status="completed", num_pages=3, source="a.pdf")),
            (
                "d2",
                ResultRecord(
                    doc_id="d2",
                    status="failed",
                    error=ErrorInfo(code="encrypted", message="the PDF is encrypted"),
                ),
            ),
            ("d3", ResultRecord(doc_id="d3", status="partial", num_pages=4, fallback_pages=[1, 3])),
        ],
    )
    env = _env(tmp_path, kafka_settings)

    done = _run(env, "results")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert set(lines) == {"d1", "d2", "d3"}
    assert lines["d1"].split() == ["d1", "completed", "pages=3", "fallback=-", "a.pdf"]
    assert "encrypted: the PDF is encrypted" in lines["d2"]
    assert "fallback=1,3" in lines["d3"]

    as_json = _run(env, "results", "--json", "d3")
    assert as_json.returncode == 0, as_json.stderr
    [record] = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert record["doc_id"] == "d3"
    assert record["fallback_pages"] == [1, 3]

    missing = _run(env, "results", "d1", "nope")
    assert missing.returncode == 1
    assert missing.stdout.split()[0] == "d1"
    assert "no result for nope" in missing.stderr


@pytest.mark.kafka
def test_submit_wait_writes_results_and_summarizes(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good.pdf", tmp_path / "bad.pdf"
    good.write_bytes(PDF)
    bad.write_bytes(b"PK\x03\x04 not a pdf")
    out = tmp_path / "out"
    log = (tmp_path / "submit.log").open("w+")
    process = subprocess.Popen(
        _command("submit", "--wait", "--out", str(out), "--timeout", "90", str(good), str(bad)),
        cwd=REPO_ROOT,
        env=_env(tmp_path, kafka_settings),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        # Act as the worker: answer each request on the documents topic.
        requests = [
            decode(m.value()) for m in consume(kafka_settings, kafka_settings.topics.documents, 2)
        ]
        by_name = {r.filename: r.doc_id for r in requests if isinstance(r, DocumentRequest)}
        good_id, bad_id = by_name["good.pdf"], by_name["bad.pdf"]
        produce(
            kafka_settings,
            kafka_settings.topics.progress,
            [
                (
                    good_id,
                    ProgressEvent(doc_id=good_id, stage="recognize", pages_done=1, pages_total=2),
                ),
                (
                    good_id,
                    ProgressEvent(doc_id=good_id, stage="completed", pages_done=2, pages_total=2),
                ),
            ],
        )
        produce(
            kafka_settings,
            kafka_settings.topics.results,
            [
                (
                    good_id,
                    ResultRecord(
                        doc_id=good_id, status="completed", num_pages=2, content="# Good\n"
                    ),
                ),
                (
                    bad_id,
                    ResultRecord(
                        doc_id=bad_id,
                        status="failed",
                        error=ErrorInfo(code="unsupported_type", message="a ZIP archive"),
                    ),
                ),
            ],
        )
        stdout, _ = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log.seek(0)
    stderr = log.read()
    assert process.returncode == 1, stderr
    assert (out / "good.md").read_text() == "# Good\n"
    assert not (out / "bad.md").exists()
    assert f"{good_id}  {good}" in stdout
    assert "2 documents: 1 completed, 0 partial, 1 failed" in stdout
    assert "unsupported_type: a ZIP archive" in stdout
    assert "good.pdf" in stderr and "completed" in stderr  # the progress lines (no TTY)
