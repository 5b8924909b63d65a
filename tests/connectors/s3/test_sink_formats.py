"""The S3 sink's json and chunks formats: what a result becomes, and the sink writing chunks
on moto and the session broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.s3.settings import S3SinkSettings
from connectors.s3.sink import render
from schemas.records import ResultRecord
from schemas.results import ErrorInfo
from streams.kafka import KafkaSettings
from tests.connectors.fixtures import S3Endpoint, produce
from tests.connectors.s3.fixtures import boto_client, object_keys
from tests.connectors.s3.test_sink import _connection, _count, _results, _run_sink
from tests.formats import check_chunks_json, check_result_json, result_of
from tests.scenarios import REPORT_TEXT, twelve_page_report

META = {"s3.bucket": "src", "s3.key": "in/report.pdf", "s3.revision": "1"}


def _report() -> ResultRecord:
    result = result_of(twelve_page_report())
    return ResultRecord(**{**result.model_dump(), "doc_id": "r1"}, metadata=META)


def test_json_format_writes_only_the_whole_result() -> None:
    output = render(_report(), "out", "json")
    assert output.document is None and output.document_key is None
    assert output.json_key == "out/in/report.pdf.json"
    data = check_result_json(output.json)
    assert data["document_text"] == REPORT_TEXT and len(data["blocks"]) == 13


def test_chunks_format_writes_chunks_next_to_the_result() -> None:
    output = render(_report(), "out", "chunks", 64)
    assert output.document_key == "out/in/report.pdf.chunks.json"
    assert output.document is not None
    chunks = check_chunks_json(output.document, REPORT_TEXT)
    assert chunks["max_tokens"] == 64 and chunks["doc_id"] == "r1"
    failed = ResultRecord(
        doc_id="r2", status="failed", error=ErrorInfo(code="corrupt_input", message="x")
    )
    assert render(failed, "out", "chunks").document is None


@pytest.mark.kafka
async def test_the_sink_writes_chunks(
    kafka_settings: KafkaSettings,
    moto_s3: S3Endpoint,
    s3_bucket: str,
    aws_isolation: dict[str, str],
    tmp_path: Path,
) -> None:
    produce(kafka_settings, kafka_settings.topics.results, [("r1", _report())])
    settings = S3SinkSettings(
        kafka_bootstrap_servers=kafka_settings.kafka_bootstrap_servers,
        ocrflux_topic_prefix=kafka_settings.ocrflux_topic_prefix,
        ocrflux_s3_bucket=s3_bucket,
        ocrflux_s3_out_prefix="out",
        ocrflux_s3_format="chunks",
        ocrflux_s3_chunk_tokens=40,
        ocrflux_blob_dir=tmp_path / "blobs",
        **_connection(moto_s3),
    )
    metrics = await _run_sink(settings, lambda m: _results(m) >= 1)
    assert _count(metrics, "written") == 2
    s3 = boto_client(moto_s3)
    assert set(object_keys(s3, s3_bucket)) == {
        "out/in/report.pdf.chunks.json",
        "out/in/report.pdf.json",
    }
    body = s3.get_object(Bucket=s3_bucket, Key="out/in/report.pdf.chunks.json")["Body"].read()
    chunks = check_chunks_json(body, REPORT_TEXT)
    assert chunks["max_tokens"] == 40
    paragraph = next(c for c in chunks["chunks"] if "continues on the next page" in c["text"])
    assert paragraph["pages"] == [0, 1]
    stored = s3.get_object(Bucket=s3_bucket, Key="out/in/report.pdf.json")["Body"].read()
    assert json.loads(stored)["blocks"] == _report().model_dump(mode="json")["blocks"]
