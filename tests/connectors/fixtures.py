"""Fixtures of the connectors' tests: a real S3 server (moto, as its own process, ended by its
PID) and a loopback HTTP server for `http(s)://` references.

    moto_s3         session: `S3Endpoint(url, region, key_id, secret)` of `python -m moto.server`
    s3_bucket       a fresh bucket on it, by name
    s3_env          the AWS_* variables that point botocore's default chain at the server
    http_blobs      an aiohttp server on 127.0.0.1 serving fixed routes (see `_blob_app`);
                    fetch from it with `LOOPBACK` allowed
    kafka_settings  `KafkaSettings` for the session broker with this test's own topics, created

and helpers to write and read topics directly: `produce` and `consume`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from pydantic import BaseModel

from deploy.kafka_broker import free_port
from schemas.records import encode
from streams.kafka import KafkaSettings, ensure_topics
from tests.fixtures.processes import ProcessGroup, wait_listening

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    region: str = "us-east-1"
    key_id: str = "testing"
    secret: str = "testing"

    def client_args(self) -> dict[str, str]:
        """Explicit constructor arguments for `S3BlobStore`."""
        return {
            "endpoint_url": self.url,
            "region_name": self.region,
            "aws_access_key_id": self.key_id,
            "aws_secret_access_key": self.secret,
        }

    def env(self) -> dict[str, str]:
        """The usual AWS variables, for code that relies on botocore's default chain."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
        }


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_listening(process, port, "moto server", log_path, STARTUP_TIMEOUT_S)
        yield S3Endpoint(f"http://127.0.0.1:{port}")
    finally:
        ProcessGroup.stop(process, STOP_TIMEOUT_S)


@pytest.fixture
def s3_bucket(moto_s3: S3Endpoint) -> str:
    import boto3

    name = f"bucket-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", **moto_s3.client_args())
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_env(moto_s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Endpoint:
    for name, value in moto_s3.env().items():
        monkeypatch.setenv(name, value)
    # No profile or config file of the machine may leak into the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_s3


# --- http --------------------------------------------------------------------------------------

DOC_BYTES = b"%PDF-1.4\n" + bytes(range(256)) * 8
#: The SSRF policy refuses loopback: tests reaching `http_blobs` allow it explicitly.
LOOPBACK = "127.0.0.1/32"
BIG_BYTES = 64 * 1024


@dataclass(frozen=True)
class HttpBlobs:
    url: str
    stalled: asyncio.Event


def _blob_app(release: asyncio.Event) -> web.Application:
    async def doc(_request: web.Request) -> web.Response:
        return web.Response(body=DOC_BYTES, content_type="application/pdf")

    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=b"x" * BIG_BYTES)

    async def chunked(request: web.Request) -> web.StreamResponse:
        """`BIG_BYTES` without a Content-Length, so only counting can catch it."""
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(BIG_BYTES // 1024):
            await response.write(b"y" * 1024)
        await response.write_eof()
        return response

    async def stall(_request: web.Request) -> web.Response:
        await release.wait()  # answers only when the test ends
        return web.Response(body=b"late")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query.get("to", "/doc"))

    app = web.Application()
    app.router.add_get("/doc", doc)
    app.router.add_get("/big", big)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/stall", stall)
    app.router.add_get("/redirect", redirect)
    return app


@pytest.fixture
async def http_blobs() -> AsyncIterator[HttpBlobs]:
    release = asyncio.Event()
    runner = web.AppRunner(_blob_app(release))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield HttpBlobs(f"http://127.0.0.1:{port}", release)
    finally:
        release.set()
        await runner.cleanup()


# --- kafka -------------------------------------------------------------------------------------

#: Partitions of each test topic: more than one, so that readers must cover them all.
TEST_PARTITIONS = 2


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, unique_name: str) -> KafkaSettings:
    settings = KafkaSettings(
        kafka_bootstrap_servers=kafka_bootstrap, ocrflux_topic_prefix=unique_name
    )
    ensure_topics(settings, partitions=TEST_PARTITIONS)
    return settings


def produce(
    settings: KafkaSettings, topic: str, records: Iterable[tuple[str, BaseModel | None]]
) -> None:
    """Write `(key, record)` pairs in order (None is a tombstone) and wait for every ack."""
    producer = Producer(settings.producer_config())
    failures: list[object] = []
    for key, record in records:
        producer.produce(
            topic,
            key=key.encode(),
            value=None if record is None else encode(record),
            on_delivery=lambda error, _m: failures.append(error) if error else None,
        )
    assert producer.flush(30) == 0
    assert failures == []


def consume(
    settings: KafkaSettings, topic: str, count: int, timeout_s: float = 30
) -> list[Message]:
    """The first `count` messages of `topic` (all partitions), failing after `timeout_s`."""
    consumer = Consumer(settings.consumer_config(f"test-{uuid.uuid4().hex}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        seen: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(seen) < count:
            assert time.monotonic() < deadline, f"only {len(seen)} of {count} records in {topic}"
            for message in consumer.consume(count - len(seen), 0.2):
                assert message.error() is None, message.error()
                seen.append(message)
        return seen
    finally:
        consumer.close()
