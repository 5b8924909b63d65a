"""A worker's log as JSON lines (`OCRFLUX_LOG_FORMAT=json`): the split and assemble handlers'
lines about a document carry its `doc_id`."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.scenarios import generated_cases, register
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka

DEADLINE_S = 60.0


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_per_document_lines_carry_the_doc_id(pipeline: Pipeline) -> None:
    [case] = generated_cases(1, seed=13)
    register(pipeline.server, case)
    pipeline.start_worker("worker", OCRFLUX_LOG_FORMAT="json")  # with --loglevel info
    doc_id = pipeline.client.submit(case.data, filename=case.name)
    assert pipeline.results([doc_id])[doc_id].status == "completed"
    deadline = time.monotonic() + DEADLINE_S
    while True:
        mine = [
            line
            for line in _json_lines(pipeline.processes.log("worker"))
            if line.get("doc_id") == doc_id
        ]
        loggers = {line["logger"] for line in mine}
        if {"streams.split_agent", "streams.assemble_agent"} <= loggers:
            break
        assert time.monotonic() < deadline, mine
        time.sleep(0.2)  # poll interval on the worker's log
    messages = [str(line["message"]) for line in mine]
    assert f"split {doc_id}: {len(case.model_pages)} page records handed to Kafka" in messages
    assert any(m.startswith(f"assembled {doc_id}: completed") for m in messages), messages
    assert all(line["level"] == "info" and "time" in line for line in mine)
    ready = _json_lines(pipeline.processes.log("worker"))
    assert any(line["message"].startswith("worker worker ready") for line in ready)
