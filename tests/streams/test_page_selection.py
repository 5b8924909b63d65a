"""Page selections and the json and chunks formats through Kafka: the SDK, `ocrflux submit`,
and a documents record written by the previous version (`page_range`)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from confluent_kafka import Producer

from schemas.options import ConversionOptions
from tests.fixtures.processes import REPO_ROOT
from tests.formats import (
    SELECTED_DETECTIONS,
    SELECTED_TEXT,
    SELECTION,
    check_chunks_json,
    check_result_json,
    check_selected_chunks,
    check_selected_result,
    register_selected,
)
from tests.scenarios import REPORT_PAGE_TEXTS
from tests.streams.fixtures import Pipeline


def test_sdk_selection_as_json_matches_the_direct_driver(pipeline: Pipeline) -> None:
    data = register_selected(pipeline.server)
    pipeline.start_worker("w1")
    options = ConversionOptions(pages=SELECTION, output_format="json")
    doc_id = pipeline.client.submit(data, options, filename="report.pdf")
    result = pipeline.results([doc_id])[doc_id]
    check_selected_result(check_result_json(result.model_dump(mode="json")))
    assert result.content == SELECTED_TEXT
    detections = pipeline.server.stats()["by_task"]["detect"]
    assert sum(detections.values()) == SELECTED_DETECTIONS


def test_submit_writes_chunks_of_a_selection(pipeline: Pipeline, tmp_path: Path) -> None:
    source = tmp_path / "report.pdf"
    source.write_bytes(register_selected(pipeline.server))
    pipeline.start_worker("w1")
    out = tmp_path / "out"
    env = {**os.environ, **pipeline.env()}
    # `--figures none`: the selection's expected text leaves the report's figure out
    flags = [
        "--format",
        "chunks",
        "--chunk-tokens",
        "40",
        "--pages",
        SELECTION,
        "--figures",
        "none",
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ocrflux.cli",
            "submit",
            str(source),
            "--wait",
            "--out",
            str(out),
            *flags,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    chunks = check_chunks_json((out / "report.chunks.json").read_text())
    assert chunks["max_tokens"] == 40
    check_selected_chunks(chunks)


def test_a_request_of_the_previous_version_with_page_range_is_converted(
    pipeline: Pipeline,
) -> None:
    data = register_selected(pipeline.server)
    pipeline.start_worker("w1")
    old = {
        "kind": "document_request",
        "schema_version": 1,
        "doc_id": "old-page-range",
        "content": base64.b64encode(data).decode(),
        "filename": "report.pdf",
        "options": {"output_format": "markdown", "page_range": [10, 12]},
    }
    producer = Producer(pipeline.kafka.producer_config())
    producer.produce(pipeline.kafka.topics.documents, json.dumps(old).encode(), b"old-page-range")
    assert producer.flush(30) == 0
    result = pipeline.results(["old-page-range"])["old-page-range"]
    assert result.status == "completed"
    assert result.page_texts == {p: REPORT_PAGE_TEXTS[p] for p in ("9", "10", "11")}
    assert [page.index for page in result.pages] == [9, 10, 11]
