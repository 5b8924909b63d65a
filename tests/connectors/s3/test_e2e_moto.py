"""The S3 connector end to end on moto (S3 + SQS event notifications), the session broker, a
worker with the OCRFlux-3B test double, and the source and sink as processes."""

from __future__ import annotations

import asyncio
import json
import os

import pymupdf
import pytest

from tests.connectors.fixtures import S3Endpoint
from tests.connectors.s3.fixtures import (
    aws_env,
    boto_client,
    by_version,
    document_requests,
    kafka_env,
    ledger_size_at_start,
    object_keys,
    pdf_cases,
    process_alive,
    start_connector,
    wait_for,
)
from tests.scenarios import register
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka


def _queue_drained(sqs: object, queue_url: str) -> bool:
    attributes = sqs.get_queue_attributes(  # type: ignore[attr-defined]
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(value) == 0 for value in attributes.values())


def test_sqs_events_fifty_pdfs_with_a_killed_source(
    pipeline: Pipeline,
    moto_s3: S3Endpoint,
    s3_events: tuple[str, str],
    aws_isolation: dict[str, str],
) -> None:
    bucket, queue_url = s3_events
    cases = pdf_cases(51, seed=71)
    docs, replacement = cases[:50], cases[50]
    for case in cases:
        register(pipeline.server, case)
    s3, sqs = boto_client(moto_s3), boto_client(moto_s3, "sqs")
    env = aws_env(moto_s3, aws_isolation)
    connector_env = {**kafka_env(pipeline.kafka), **env}
    processes = pipeline.processes
    source_args = [
        "s3-source",
        "--bucket",
        bucket,
        "--prefix",
        "in/",
        "--discovery",
        "sqs",
        "--queue-url",
        queue_url,
        "--poll-interval",
        "1",
        "--visibility-timeout",
        "3",
        "--figures",  # compared with the direct driver's default result
        "none",
    ]
    pipeline.start_worker("worker", **env)
    sink = start_connector(
        processes, "sink", ["s3-sink", "--bucket", bucket, "--out-prefix", "out"], connector_env
    )
    source = start_connector(processes, "source-1", source_args, connector_env)
    for name, process in (("source-1", source), ("sink", sink)):
        wait_for(
            lambda n=name: "ready:" in processes.log(n),
            f"{name} ready",
            alive=process_alive(processes, name, process),
        )

    for case in docs[:25]:
        s3.put_object(Bucket=bucket, Key=f"in/{case.name}", Body=case.data)
    wait_for(
        lambda: processes.log("source-1").count("submitted s3://") >= 8,
        "the first submissions",
        interval_s=0.02,
    )
    processes.kill(source)  # SIGKILL midway: no shutdown, maybe a transaction left open
    for case in docs[25:]:
        s3.put_object(Bucket=bucket, Key=f"in/{case.name}", Body=case.data)

    source = start_connector(processes, "source-2", source_args, connector_env)
    alive = process_alive(processes, "source-2", source)
    # What the ledger held when the restarted source had fenced its predecessor (a commit in
    # flight at the kill completes first, an open transaction is aborted): submitted before.
    killed_at = ledger_size_at_start(processes, "source-2", source)
    assert 8 <= killed_at <= 25
    wait_for(
        lambda: len(document_requests(pipeline.kafka)) >= 50 and _queue_drained(sqs, queue_url),
        "50 submissions and an empty queue",
        alive=alive,
    )
    requests = document_requests(pipeline.kafka)
    versions = by_version(requests)
    assert len(requests) == 50, f"{len(requests)} requests (killed at {killed_at})"
    assert set(versions.values()) == {1}
    assert {key for key, _ in versions} == {f"in/{case.name}" for case in docs}
    for request in requests:
        assert request.content is None
        assert request.content_ref == f"s3://{bucket}/{request.metadata['s3.key']}"
        assert request.content_sha256 and request.content_length
        assert request.metadata["s3.revision"] == "1"

    expected = {f"out/in/{case.name}.{ext}" for case in docs for ext in ("md", "json")}
    wait_for(
        lambda: expected <= set(object_keys(s3, bucket, "out/")),
        "100 outputs in the sink bucket",
        alive=process_alive(processes, "sink", sink),
    )
    for case in docs[:5]:
        direct = asyncio.run(pipeline.direct(case))
        body = s3.get_object(Bucket=bucket, Key=f"out/in/{case.name}.md")["Body"].read()
        assert body.decode() == direct.document_text + "\n"
        result = json.loads(
            s3.get_object(Bucket=bucket, Key=f"out/in/{case.name}.json")["Body"].read()
        )
        assert result["status"] == "completed"
        assert result["metadata"]["s3.key"] == f"in/{case.name}"

    # A new version of one object: exactly one more request, and the outputs follow it.
    key = f"in/{docs[0].name}"
    s3.put_object(Bucket=bucket, Key=key, Body=replacement.data)
    wait_for(lambda: len(document_requests(pipeline.kafka)) >= 51, "the new version", alive=alive)
    newer = asyncio.run(pipeline.direct(replacement)).document_text + "\n"
    wait_for(
        lambda: s3.get_object(Bucket=bucket, Key=f"out/{key}.md")["Body"].read().decode() == newer,
        "the new version's output",
    )
    wait_for(lambda: _queue_drained(sqs, queue_url), "an empty queue", alive=alive)
    requests = document_requests(pipeline.kafka)
    assert len(requests) == 51
    revisions = sorted(r.metadata["s3.revision"] for r in requests if r.metadata["s3.key"] == key)
    assert revisions == ["1", "2"]
    assert len(by_version(requests)) == 51

    # Graceful shutdown: SIGTERM ends both with status 0.
    assert processes.stop(source) == 0
    assert processes.stop(sink) == 0
    assert "s3-source stopped" in processes.log("source-2")
    assert "Traceback" not in processes.log("source-2") + processes.log("sink")


def test_a_100_mb_object_travels_as_a_claim_check(
    pipeline: Pipeline, moto_s3: S3Endpoint, s3_bucket: str, aws_isolation: dict[str, str]
) -> None:
    case = pdf_cases(1, seed=100)[0]
    register(pipeline.server, case)
    document = pymupdf.open(stream=case.data, filetype="pdf")
    document.embfile_add("noise.bin", os.urandom(100 * 1024 * 1024))  # incompressible
    big = document.tobytes()
    document.close()
    assert len(big) > 100 * 1024 * 1024
    s3 = boto_client(moto_s3)
    s3.put_object(Bucket=s3_bucket, Key="big/report.pdf", Body=big)
    del big

    env = aws_env(moto_s3, aws_isolation)
    processes = pipeline.processes
    pipeline.start_worker("worker", MAX_FILE_BYTES=str(200 * 1024 * 1024), **env)
    source = start_connector(
        processes,
        "source",
        ["s3-source", "--bucket", s3_bucket, "--poll-interval", "1", "--max-size", "150M"],
        {**kafka_env(pipeline.kafka), **env},
    )
    [request] = wait_for(
        lambda: document_requests(pipeline.kafka),
        "the big object's request",
        alive=process_alive(processes, "source", source),
    )
    assert request.content is None
    assert request.content_ref == f"s3://{s3_bucket}/big/report.pdf"
    assert request.content_length and request.content_length > 100 * 1024 * 1024
    [(_, raw)] = pipeline.raw("documents")
    assert len(raw) < 4096, "the document's bytes entered Kafka"

    # The source hashed the object as it streamed: it never held the 100 MB at once.
    # (About 80 MiB here; holding the object would take it past 180 MiB.)
    assert _peak_rss_bytes(source.pid) < 150 * 2**20
    result = pipeline.results([request.doc_id])[request.doc_id]
    assert result.status == "completed"
    assert result.document_text == asyncio.run(pipeline.direct(case)).document_text
    largest = max(
        len(value)
        for topic in ("documents", "pages", "page_results", "results")
        for _, value in pipeline.raw(topic)
    )
    assert largest < 5 * 1024 * 1024
    assert processes.stop(source) == 0


def _peak_rss_bytes(pid: int) -> int:
    """VmHWM of a running process (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")
