"""`ocrflux submit` and `ocrflux results` as the user runs them: separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.records import DocumentRequest, ProgressEvent, ResultRecord, decode
from schemas.results import ErrorInfo
from streams.kafka import KafkaSettings
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


# --- submit: exit codes, output names, file names ----------------------------------------------


def _submit_as_worker(
    settings: KafkaSettings,
    tmp_path: Path,
    args: list[str | bytes],
    answer: Callable[[dict[str, str]], list[ResultRecord]] | None = None,
    requests_so_far: int = 0,
) -> tuple[int, str, str]:
    """Run `ocrflux submit --wait ARGS` and act as the worker: once the documents topic holds
    `requests_so_far` records, produce `answer({filename: doc_id})`. (code, stdout, stderr)."""
    with (tmp_path / "submit.log").open("w+") as log:
        process = subprocess.Popen(
            [*_command("submit", "--wait", "--timeout", "90"), *args],
            cwd=REPO_ROOT,
            env=_env(tmp_path, settings),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            if answer is not None:
                messages = consume(settings, settings.topics.documents, requests_so_far)
                requests = [decode(m.value()) for m in messages]
                by_name = {
                    r.filename or "": r.doc_id or ""
                    for r in requests
                    if isinstance(r, DocumentRequest)
                }
                produce(
                    settings,
                    settings.topics.results,
                    [(result.doc_id, result) for result in answer(by_name)],
                )
            stdout, _ = process.communicate(timeout=TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        log.seek(0)
        return process.returncode, stdout, log.read()


@pytest.mark.kafka
def test_submit_wait_partial_and_colliding_names(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    inputs = {name: tmp_path / name for name in ("image.webp", "image.bmp", "a.pdf", "b.pdf")}
    inputs["image.webp"].write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 webp")
    inputs["image.bmp"].write_bytes(b"BM bmp")
    inputs["a.pdf"].write_bytes(PDF)
    inputs["b.pdf"].write_bytes(PDF)  # the same bytes: one doc_id, one result, two outputs
    out = tmp_path / "out"
    args = ["--out", str(out), *map(str, inputs.values())]

    def answer(ids: dict[str, str]) -> list[ResultRecord]:
        assert ids["a.pdf"] == ids["b.pdf"]
        return [
            ResultRecord(doc_id=ids["image.webp"], status="completed", content="# webp"),
            ResultRecord(
                doc_id=ids["image.bmp"],
                status="partial",
                num_pages=2,
                fallback_pages=[1],
                content="# bmp",
                error=ErrorInfo(code="task_failed", message="1 of 2 page(s) not recognized"),
            ),
            ResultRecord(doc_id=ids["a.pdf"], status="completed", content="# same"),
        ]

    code, stdout, stderr = _submit_as_worker(kafka_settings, tmp_path, args, answer, 4)
    assert code == 3, stderr
    written = {
        "image.webp": out / "image.webp.md",
        "image.bmp": out / "image.bmp.md",
        "a.pdf": out / "a.md",
        "b.pdf": out / "b.md",
    }
    contents = {name: path.read_text() for name, path in written.items()}
    assert contents == {
        "image.webp": "# webp\n",
        "image.bmp": "# bmp\n",
        "a.pdf": "# same\n",
        "b.pdf": "# same\n",
    }
    assert not (out / "image.md").exists()
    for name, path in written.items():
        assert f"{inputs[name]} -> {path}" in stdout
    assert "4 documents" not in stdout and "3 documents: 2 completed, 1 partial, 0 failed" in stdout
    assert "task_failed: 1 of 2 page(s) not recognized  fallback pages [1]" in stdout

    # A partial result is not final: sent again, the documents get a new answer.
    again = ["--allow-partial", *args]
    code, stdout, stderr = _submit_as_worker(kafka_settings, tmp_path, again, answer, 8)
    assert code == 0, stderr

    # An output that cannot be written is reported in the summary and fails the command.
    written["b.pdf"].unlink()
    written["b.pdf"].mkdir()
    code, stdout, stderr = _submit_as_worker(kafka_settings, tmp_path, again, answer, 12)
    assert code == 1, stderr
    assert f"cannot write {written['b.pdf']}: Is a directory" in stdout
    assert "1 output not written" in stdout and "Traceback" not in stderr

    # A failed document wins over a partial one.
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"PK\x03\x04 not a pdf")

    def fail(ids: dict[str, str]) -> list[ResultRecord]:
        error = ErrorInfo(code="unsupported_type", message="a ZIP archive")
        partial = next(r for r in answer(ids) if r.doc_id == ids["image.bmp"])
        return [partial, ResultRecord(doc_id=ids["bad.pdf"], status="failed", error=error)]

    requests = 4 + 4 + 4 + 2
    args = ["--out", str(tmp_path / "out2"), str(inputs["image.bmp"]), str(bad)]
    code, stdout, stderr = _submit_as_worker(kafka_settings, tmp_path, args, fail, requests)
    assert code == 1, stderr
    assert "2 documents: 0 completed, 1 partial, 1 failed" in stdout


@pytest.mark.kafka
def test_submit_file_names_that_are_not_utf8(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    folder = os.fsencode(tmp_path)
    strange, after = folder + b"/caf\xe9.pdf", folder + b"/after.pdf"
    Path(os.fsdecode(strange)).write_bytes(PDF + b"strange")
    Path(os.fsdecode(after)).write_bytes(PDF + b"after")

    def answer(ids: dict[str, str]) -> list[ResultRecord]:
        assert set(ids) == {"caf\\xe9.pdf", "after.pdf"}  # valid UTF-8 on the record
        return [
            ResultRecord(doc_id=ids["caf\\xe9.pdf"], status="completed", content="# cafe"),
            ResultRecord(doc_id=ids["after.pdf"], status="completed", content="# after"),
        ]

    code, stdout, stderr = _submit_as_worker(kafka_settings, tmp_path, [strange, after], answer, 2)
    assert code == 0, stderr
    assert Path(os.fsdecode(folder + b"/caf\xe9.md")).read_text() == "# cafe\n"  # bytes kept
    assert Path(os.fsdecode(folder + b"/after.md")).read_text() == "# after\n"
    shown = f"{tmp_path}/caf\\xe9.pdf -> {tmp_path}/caf\\xe9.md"
    assert shown in stdout
    assert "caf\\xe9.pdf" in stderr and "Traceback" not in stderr  # the progress lines


@pytest.mark.kafka
def test_submit_wait_prints_warnings(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    source = tmp_path / "damaged.pdf"
    source.write_bytes(PDF + b"damaged")

    def answer(ids: dict[str, str]) -> list[ResultRecord]:
        warning = {"code": "repaired", "message": "the PDF was damaged and has been repaired"}
        record = {"doc_id": ids["damaged.pdf"], "status": "completed", "warnings": [warning]}
        return [ResultRecord.model_validate(record)]

    code, stdout, stderr = _submit_as_worker(kafka_settings, tmp_path, [str(source)], answer, 1)
    assert code == 0, stderr
    assert "warning repaired: the PDF was damaged and has been repaired" in stdout


def test_submit_out_folder_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "x.pdf").write_bytes(PDF)
    (tmp_path / "plain-file").write_text("not a folder")
    done = _run(
        _env(tmp_path, None),
        "submit",
        "--wait",
        "--out",
        str(tmp_path / "plain-file" / "out"),
        str(tmp_path / "x.pdf"),
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"ocrflux: error: cannot create {tmp_path / 'plain-file' / 'out'}: Not a directory"
    )
    assert done.stdout == ""  # nothing sent


def test_submit_help_documents_names_and_exit_codes(tmp_path: Path) -> None:
    done = _run(_env(tmp_path, None), "submit", "--help")
    assert "image.webp.md, image.bmp.md" in done.stdout
    assert "3    with --wait: a document is partial" in done.stdout
