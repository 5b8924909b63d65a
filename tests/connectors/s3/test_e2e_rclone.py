"""The S3 connector end to end on `rclone serve s3` (a real S3 server with SigV4
authentication, no event notifications): listing discovery, a killed source, the sink, and
wrong credentials."""

from __future__ import annotations

import asyncio
import itertools
import re
import urllib.request
from datetime import datetime

import pytest

from deploy.kafka_broker import free_port
from schemas.records import ResultRecord
from streams.kafka import KafkaSettings
from tests.connectors.fixtures import S3Endpoint, produce
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
from tests.fixtures.processes import ProcessGroup
from tests.scenarios import register
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka


def _flags(endpoint: S3Endpoint, secret: str | None = None) -> list[str]:
    return [
        "--endpoint-url",
        endpoint.url,
        "--region",
        endpoint.region,
        "--access-key-id",
        endpoint.key_id,
        "--secret-access-key",
        secret or endpoint.secret,
    ]


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def test_listing_twenty_objects_with_a_killed_source(
    pipeline: Pipeline, rclone_s3: S3Endpoint, rclone_bucket: str, aws_isolation: dict[str, str]
) -> None:
    bucket = rclone_bucket
    cases = pdf_cases(21, seed=72)
    docs, replacement = cases[:20], cases[20]
    for case in cases:
        register(pipeline.server, case)
    s3 = boto_client(rclone_s3)
    processes = pipeline.processes
    pipeline.start_worker("worker", **aws_env(rclone_s3, aws_isolation))
    connector_env = kafka_env(pipeline.kafka)  # S3 settings by flags here
    metrics_port = free_port()
    source_args = [
        "s3-source",
        "--bucket",
        bucket,
        "--prefix",
        "docs/",
        "--poll-interval",
        "0.5",
        "--metrics-port",
        str(metrics_port),
        *_flags(rclone_s3),
    ]
    sink_args = ["s3-sink", "--bucket", bucket, "--out-prefix", "results", *_flags(rclone_s3)]
    sink = start_connector(processes, "sink", sink_args, connector_env)
    source = start_connector(processes, "source-1", source_args, connector_env)
    for name, process in (("source-1", source), ("sink", sink)):
        wait_for(
            lambda n=name: "ready:" in processes.log(n),
            f"{name} ready",
            alive=process_alive(processes, name, process),
        )

    for case in docs[:10]:
        s3.put_object(Bucket=bucket, Key=f"docs/{case.name}", Body=case.data)
    wait_for(
        lambda: processes.log("source-1").count("submitted s3://") >= 3,
        "the first submissions",
        interval_s=0.02,
    )
    processes.kill(source)
    for case in docs[10:]:
        s3.put_object(Bucket=bucket, Key=f"docs/{case.name}", Body=case.data)

    source = start_connector(processes, "source-2", source_args, connector_env)
    alive = process_alive(processes, "source-2", source)
    # What the ledger held when the restarted source had fenced its predecessor (a commit in
    # flight at the kill completes first, an open transaction is aborted): submitted before.
    killed_at = ledger_size_at_start(processes, "source-2", source)
    assert 3 <= killed_at <= 10
    wait_for(lambda: len(document_requests(pipeline.kafka)) >= 20, "20 submissions", alive=alive)
    # One more full pass over the 20 objects must submit nothing.
    seen = _metric(metrics_port, "ocrflux_s3_source_objects_seen_total")
    wait_for(
        lambda: _metric(metrics_port, "ocrflux_s3_source_objects_seen_total") >= seen + 20,
        "another listing pass",
        alive=alive,
    )
    requests = document_requests(pipeline.kafka)
    assert len(requests) == 20, f"{len(requests)} requests (killed at {killed_at})"
    assert set(by_version(requests).values()) == {1}
    assert {r.metadata["s3.key"] for r in requests} == {f"docs/{c.name}" for c in docs}
    assert all(r.content is None and r.content_ref for r in requests)

    expected = {f"results/docs/{c.name}.{ext}" for c in docs for ext in ("md", "json")}
    wait_for(
        lambda: expected <= set(object_keys(s3, bucket, "results/")),
        "40 outputs in the bucket",
        alive=process_alive(processes, "sink", sink),
    )
    case = docs[3]
    body = s3.get_object(Bucket=bucket, Key=f"results/docs/{case.name}.md")["Body"].read()
    assert body.decode() == asyncio.run(pipeline.direct(case)).document_text + "\n"

    key = f"docs/{docs[0].name}"
    s3.put_object(Bucket=bucket, Key=key, Body=replacement.data)
    newer = asyncio.run(pipeline.direct(replacement)).document_text + "\n"
    wait_for(
        lambda: (
            s3.get_object(Bucket=bucket, Key=f"results/{key}.md")["Body"].read().decode() == newer
        ),
        "the new version's output",
        alive=alive,
    )
    seen = _metric(metrics_port, "ocrflux_s3_source_objects_seen_total")
    wait_for(
        lambda: _metric(metrics_port, "ocrflux_s3_source_objects_seen_total") >= seen + 20,
        "another listing pass",
        alive=alive,
    )
    requests = document_requests(pipeline.kafka)
    assert len(requests) == 21
    assert len(by_version(requests)) == 21
    assert _metric(metrics_port, "ocrflux_s3_source_submitted_total") == 21 - killed_at
    assert processes.stop(source) == 0
    assert processes.stop(sink) == 0
    assert "Traceback" not in processes.log("source-2") + processes.log("sink")


_LINE_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ERROR ", re.MULTILINE)


def _error_times(log: str) -> list[datetime]:
    return [datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f") for t in _LINE_TIME.findall(log)]


def test_wrong_credentials_give_one_clear_line_per_attempt_and_back_off(
    kafka_settings: KafkaSettings,
    processes: ProcessGroup,
    rclone_s3: S3Endpoint,
    rclone_bucket: str,
    aws_isolation: dict[str, str],
) -> None:
    retry = ["--retry-initial", "0.2", "--retry-max", "30"]
    env = kafka_env(kafka_settings)
    source = start_connector(
        processes,
        "source",
        ["s3-source", "--bucket", rclone_bucket, *retry, *_flags(rclone_s3, "wrong-secret")],
        env,
    )
    sink = start_connector(
        processes,
        "sink",
        ["s3-sink", "--bucket", rclone_bucket, *retry, *_flags(rclone_s3, "wrong-secret")],
        env,
    )
    wait_for(
        lambda: "ready:" in processes.log("sink"),
        "sink ready",
        alive=process_alive(processes, "sink", sink),
    )
    result = ResultRecord(
        doc_id="d1",
        status="completed",
        document_text="# Hi",
        content="# Hi",
        metadata={"s3.bucket": rclone_bucket, "s3.key": "a.pdf", "s3.revision": "1"},
    )
    produce(kafka_settings, kafka_settings.topics.results, [("d1", result)])

    for name, process in (("source", source), ("sink", sink)):
        times = wait_for(
            lambda n=name: (t := _error_times(processes.log(n))) and len(t) >= 5 and t,
            f"{name}: five failed attempts",
            alive=process_alive(processes, name, process),
        )
        log = processes.log(name)
        errors = [line for line in log.splitlines() if " ERROR " in line]
        assert all("access denied (SignatureDoesNotMatch" in line for line in errors), errors
        assert all("check the credentials" in line and "retrying in" in line for line in errors)
        assert "Traceback" not in log
        # One line per attempt, each naming the delay before the next: full jitter under a
        # ceiling of 0.2, 0.4, 0.8, ... s (the log rounds to three digits).
        delays = [float(d) for d in re.findall(r"retrying in ([\d.e-]+)s", log)]
        assert len(delays) >= 5, log
        ceilings = [0.2, 0.4, 0.8, 1.6, 3.2]
        assert all(0 <= d <= c * 1.001 for d, c in zip(delays, ceilings, strict=False)), delays
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert all(gap >= delay * 0.999 - 0.01 for gap, delay in zip(gaps, delays, strict=False))
        assert process.poll() is None, f"{name} exited instead of backing off"

    # Asked to stop while backing off, each ends at once with status 0.
    assert processes.stop(source, timeout_s=10) == 0
    assert processes.stop(sink, timeout_s=10) == 0
