"""The sink: what a result becomes (no servers), and the sink itself on moto and the session
broker: idempotent writes, versions that arrive out of order, failed results, result_ref."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.s3.metrics import SinkMetrics
from connectors.s3.settings import S3SinkSettings
from connectors.s3.sink import S3Sink, is_stale, render
from schemas.records import ResultRecord
from schemas.results import ErrorInfo
from streams.blobstore import FileBlobStore
from streams.kafka import KafkaSettings
from tests.connectors.fixtures import S3Endpoint, produce
from tests.connectors.s3.fixtures import boto_client, object_keys

MARKDOWN = "# Title\n\n<table><tr><td>a</td><td>b</td></tr></table>"


def _result(doc_id: str, key: str | None, revision: int = 1, **fields: object) -> ResultRecord:
    metadata = {}
    if key is not None:
        metadata = {
            "s3.bucket": "src",
            "s3.key": key,
            "s3.etag": f"etag{revision}",
            "s3.revision": str(revision),
            "s3.submitted_at": f"{1000.0 + revision:.6f}",
        }
    values: dict[str, object] = {
        "doc_id": doc_id,
        "status": "completed",
        "document_text": MARKDOWN,
        "content": MARKDOWN,
        "num_pages": 1,
        "metadata": metadata,
        **fields,
    }
    return ResultRecord.model_validate(values)


def test_render_markdown_text_and_failed() -> None:
    result = _result("d1", "in/a.pdf")
    output = render(result, "out", "markdown")
    assert output.document_key == "out/in/a.pdf.md" and output.json_key == "out/in/a.pdf.json"
    assert output.document == (MARKDOWN + "\n").encode()
    assert json.loads(output.json)["doc_id"] == "d1"
    assert output.version == (1, 1001.0)
    text = render(result, "", "text")
    assert text.document_key == "in/a.pdf.txt"
    assert text.document == b"Title\n\na\tb\n"
    failed = _result("d2", None, status="failed", error=ErrorInfo(code="corrupt", message="x"))
    output = render(failed, "out", "markdown")
    assert output.document is None and output.json_key == "out/d2.json"
    assert output.version is None
    cancelled = _result(
        "d4", None, status="cancelled", error=ErrorInfo(code="cancelled", message="x")
    )
    output = render(cancelled, "out", "markdown")
    assert output.document is None and json.loads(output.json)["status"] == "cancelled"


def test_older_versions_are_stale() -> None:
    newer = render(_result("d2", "k", revision=2), "o", "markdown").json
    assert is_stale((1, 1001.0), newer)
    assert not is_stale((2, 1002.0), newer)
    assert not is_stale((3, 1003.0), newer)
    assert not is_stale((1, 2000.0), newer)  # a reset ledger: a later submission wins
    assert not is_stale(None, newer)
    assert not is_stale((1, 1001.0), None)
    assert not is_stale((1, 1001.0), b"not json")


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)  # poll interval, bounded by the deadline


async def _run_sink(settings: S3SinkSettings, done: Callable[[SinkMetrics], bool]) -> SinkMetrics:
    metrics = SinkMetrics()
    sink = S3Sink(settings, stop=asyncio.Event(), metrics=metrics)
    task = asyncio.ensure_future(sink.run())
    try:
        await _until(lambda: done(metrics) or task.done(), "the sink")
    finally:
        sink.stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    return metrics


def _count(metrics: SinkMetrics, outcome: str) -> float:
    return metrics.writes.labels(outcome)._value.get()  # type: ignore[no-any-return]


def _results(metrics: SinkMetrics) -> float:
    return sum(metrics.results.labels(s)._value.get() for s in ("completed", "partial", "failed"))


@pytest.mark.kafka
async def test_the_sink_writes_each_result_once_and_never_rolls_back(
    kafka_settings: KafkaSettings,
    moto_s3: S3Endpoint,
    s3_bucket: str,
    aws_isolation: dict[str, str],
    tmp_path: Path,
) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    full = _result("big", "in/big.pdf", document_text="# Big\n", content="# Big\n")
    ref = await blobs.put(full.model_dump_json().encode(), "results/big.json")
    pointer = full.model_copy(update={"document_text": "", "content": "", "result_ref": ref})
    produce(
        kafka_settings,
        kafka_settings.topics.results,
        [
            ("d1", _result("d1", "in/a.pdf")),
            ("plain", _result("plain", None)),
            ("big", pointer),
        ],
    )
    settings = S3SinkSettings(
        kafka_bootstrap_servers=kafka_settings.kafka_bootstrap_servers,
        ocrflux_topic_prefix=kafka_settings.ocrflux_topic_prefix,
        ocrflux_s3_bucket=s3_bucket,
        ocrflux_s3_out_prefix="out",
        ocrflux_blob_dir=tmp_path / "blobs",
        **_connection(moto_s3),
    )
    metrics = await _run_sink(settings, lambda m: _results(m) >= 3)
    assert _count(metrics, "written") == 6
    s3 = boto_client(moto_s3)
    assert set(object_keys(s3, s3_bucket)) == {
        "out/in/a.pdf.md",
        "out/in/a.pdf.json",
        "out/plain.md",
        "out/plain.json",
        "out/in/big.pdf.md",
        "out/in/big.pdf.json",
    }
    big = s3.get_object(Bucket=s3_bucket, Key="out/in/big.pdf.md")["Body"].read()
    assert big == b"# Big\n"
    first = {
        k: s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read() for k in object_keys(s3, s3_bucket)
    }

    # Everything again (a new group reads from the start): nothing changes.
    again = settings.model_copy(update={"ocrflux_s3_group_id": "again"})
    metrics = await _run_sink(again, lambda m: _results(m) >= 3)
    assert _count(metrics, "written") == 0 and _count(metrics, "unchanged") == 6
    now = {
        k: s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read() for k in object_keys(s3, s3_bucket)
    }
    assert now == first

    # A newer version fails; the older version's result shows up late and must not win.
    failed = _result("d3", "in/a.pdf", revision=3, status="failed", document_text="", content="")
    produce(kafka_settings, kafka_settings.topics.results, [("d3", failed)])
    metrics = await _run_sink(settings, lambda m: _results(m) >= 1)
    assert _count(metrics, "deleted") == 1
    produce(kafka_settings, kafka_settings.topics.results, [("d2", _result("d2", "in/a.pdf", 2))])
    metrics = await _run_sink(settings, lambda m: _count(m, "stale") >= 1)
    assert _count(metrics, "written") == 0
    keys = set(object_keys(s3, s3_bucket, "out/in/a"))
    assert keys == {"out/in/a.pdf.json"}
    written = json.loads(s3.get_object(Bucket=s3_bucket, Key="out/in/a.pdf.json")["Body"].read())
    assert written["doc_id"] == "d3" and written["status"] == "failed"


def _connection(endpoint: S3Endpoint) -> dict[str, str]:
    return {
        "ocrflux_s3_endpoint_url": endpoint.url,
        "ocrflux_s3_region": endpoint.region,
        "ocrflux_s3_access_key_id": endpoint.key_id,
        "ocrflux_s3_secret_access_key": endpoint.secret,
    }
