"""`ocrflux.logs`: one logging setup for every command and server (text or JSON lines), and the
worker's repeat limiter on top of it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from ocrflux import logs
from streams.runtime.log_limit import limit_repeats


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`configure` changes the root logger and exports its choice: undo both after each test."""
    for name in ("OCRFLUX_LOG_LEVEL", "OCRFLUX_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_carry_the_context_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    log = logging.getLogger("streams.split_agent")
    log.info("split %s: %d pages", "doc-1", 3, extra={"doc_id": "doc-1"})
    log.debug("not at info level")
    log.warning("page %s/%s", "doc-1", 2, extra={"doc_id": "doc-1", "page": 2})
    logging.getLogger("connectors.api").info("job", extra={"job_id": "j", "request_id": "r"})
    first, second, third = _json_lines(capsys.readouterr().err)
    assert first["message"] == "split doc-1: 3 pages" and first["doc_id"] == "doc-1"
    assert first["level"] == "info" and first["logger"] == "streams.split_agent"
    assert str(first["time"]).endswith("+00:00") and "T" in str(first["time"])
    assert "page" not in first and "exc" not in first
    assert second["level"] == "warning" and second["page"] == 2
    assert third["job_id"] == "j" and third["request_id"] == "r"


def test_an_exception_is_a_field_of_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    try:
        raise RuntimeError("boom\nwith a second line")
    except RuntimeError:
        logging.getLogger("x").exception("handler raised", extra={"doc_id": "d"})
    [line] = _json_lines(capsys.readouterr().err)
    assert line["message"] == "handler raised" and line["doc_id"] == "d"
    assert "Traceback" in str(line["exc"]) and "RuntimeError: boom" in str(line["exc"])


def test_text_is_the_default_and_the_environment_chooses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = logs.configure()
    assert chosen.ocrflux_log_level == "info" and chosen.ocrflux_log_format == "text"
    logging.getLogger("a.b").info("hello %s", "there")
    assert capsys.readouterr().err.strip().endswith(" INFO a.b: hello there")

    monkeypatch.setenv("OCRFLUX_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("OCRFLUX_LOG_FORMAT", "JSON")
    logs.configure()
    logging.getLogger("a.b").info("hidden")
    logging.getLogger("a.b").error("shown")
    [line] = _json_lines(capsys.readouterr().err)  # one handler: configuring again replaced it
    assert line["message"] == "shown"


def test_a_flag_wins_and_the_choice_reaches_child_processes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCRFLUX_LOG_LEVEL", "error")
    logs.configure("debug")
    logging.getLogger("a").debug("shown")
    assert "shown" in capsys.readouterr().err
    assert os.environ["OCRFLUX_LOG_LEVEL"] == "debug"
    assert os.environ["OCRFLUX_LOG_FORMAT"] == "text"


def test_invalid_values_are_settings_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRFLUX_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="'text' or 'json'"):
        logs.configure()


def test_the_repeat_limiter_works_on_the_configured_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):  # as in a worker: the configured handler alone
        root.removeHandler(handler)
    logs.configure("info", "json")
    limit_repeats(interval_s=3600)
    kafka_log = logging.getLogger("aiokafka.conn")
    for node in range(5):
        kafka_log.error("connect to %s failed", node)
    logging.getLogger("streams.worker").info("other lines pass")
    lines = _json_lines(capsys.readouterr().err)
    assert [line["message"] for line in lines] == ["connect to 0 failed", "other lines pass"]


def test_old_worker_levels() -> None:
    assert [logs.old_level(v) for v in ("crit", "error", "warn", "info", "debug", "WARN")] == [
        "critical",
        "error",
        "warning",
        "info",
        "debug",
        "warning",
    ]
