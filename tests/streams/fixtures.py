"""A stream-processor deployment for one test: its own topics on the session broker, worker
processes started and ended by PID, the OCRFlux-3B test double, and the client SDK.

    pipeline            a `Pipeline`: `.start_worker(name, roles=..., **env)`, `.client`,
                        `.kafka`, `.server` (the double), `.direct(case)` (the direct driver's
                        result for a case)
    own_broker          a broker of this test's own, which it may stop, kill and start again
    broker_pipeline     a `Pipeline` on `own_broker` (`.broker`)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.client import OcrfluxClient
from deploy import kafka_broker
from deploy.processes import stop_pid
from ocrflux.convert import convert_document
from ocrflux.engines.vllm import VllmEngine
from ocrflux.vllm_client import VllmClient
from schemas.options import ConversionOptions
from schemas.records import decode
from schemas.results import DocumentResult
from streams.blobstore import BlobSettings
from streams.kafka import KafkaSettings
from tests.fixtures.processes import ProcessGroup
from tests.scenarios import DocumentCase

WORKER_READY_TIMEOUT_S = 90.0
PARTITIONS = 4


@dataclass
class Pipeline:
    kafka: KafkaSettings
    server: Any
    processes: ProcessGroup
    blob_dir: Path
    client: OcrfluxClient
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    broker: OwnBroker | None = None  # set when the test runs its own broker

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.kafka_bootstrap_servers,
            "OCRFLUX_TOPIC_PREFIX": self.kafka.ocrflux_topic_prefix,
            "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
            "KAFKA_MESSAGE_MAX_BYTES": str(self.kafka.kafka_message_max_bytes),
            "VLLM_URL": self.server.url,
            "OCRFLUX_ENGINE": "vllm",
            "OCRFLUX_BLOB_DIR": str(self.blob_dir),
            "OCRFLUX_SWEEP_INTERVAL_S": "1",
            "VLLM_RETRY_BUDGET_S": "10",
            "OCRFLUX_SESSION_TIMEOUT_S": "10",
            **extra,
        }

    def start_worker(
        self, name: str, roles: str = "split,recognize,assemble", *, wait: bool = True, **env: str
    ) -> subprocess.Popen[bytes]:
        process = self.processes.python(
            name,
            ["-m", "ocrflux.cli", "worker", "--roles", roles, "--loglevel", "info"],
            self.env(OCRFLUX_WORKER_ID=name, **env),
        )
        self.workers[name] = process
        if wait:
            self.wait_ready(name)
        return process

    def wait_ready(self, name: str) -> None:
        """Until the worker's log says every role has its partitions."""
        self.wait_log(name, f"worker {name} ready")

    def wait_log(self, name: str, text: str, count: int = 1) -> None:
        """Until `text` shows `count` times in the worker's log; fails if the worker exits."""
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while self.processes.log(name).count(text) < count:
            process = self.workers[name]
            assert process.poll() is None, f"{name} exited:\n{self.processes.log(name)[-4000:]}"
            assert time.monotonic() < deadline, (
                f"{name}: no {text!r} in\n{self.processes.log(name)[-4000:]}"
            )
            time.sleep(0.2)  # poll interval on the worker's log

    def results(self, doc_ids: list[str], timeout_s: float = 180.0) -> dict[str, Any]:
        found = {r.doc_id: r for r in self.client.results(doc_ids, timeout_s=timeout_s)}
        missing = set(doc_ids) - set(found)
        logs = "\n".join(f"--- {n}\n{self.processes.log(n)[-3000:]}" for n in self.workers)
        assert not missing, f"no result for {sorted(missing)}\n{logs}"
        return found

    def raw(self, topic: str, timeout_s: float = 10.0) -> list[tuple[str | None, bytes]]:
        """Every record of one of this pipeline's topics, from the beginning (key, value)."""
        name = getattr(self.kafka.topics, topic)
        consumer = Consumer(
            self.kafka.consumer_config(
                f"raw-{time.monotonic_ns()}", **{"enable.auto.commit": False}
            )
        )
        try:
            metadata = consumer.list_topics(name, timeout=timeout_s).topics[name]
            parts = [TopicPartition(name, p, OFFSET_BEGINNING) for p in metadata.partitions]
            ends = {
                p.partition: consumer.get_watermark_offsets(p, timeout=timeout_s)[1] for p in parts
            }
            consumer.assign(parts)
            out: list[tuple[str | None, bytes]] = []
            remaining = {p for p, end in ends.items() if end > 0}
            deadline = time.monotonic() + timeout_s
            while remaining and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                key = message.key().decode() if message.key() else None
                out.append((key, message.value()))
                if message.offset() + 1 >= ends[message.partition()]:
                    remaining.discard(message.partition())
            return out
        finally:
            consumer.close()

    def records(self, topic: str) -> list[Any]:
        return [decode(value) for _, value in self.raw(topic)]

    async def direct(
        self, case: DocumentCase, options: ConversionOptions | None = None
    ) -> DocumentResult:
        """The direct driver's result for the same input against the same double."""
        async with VllmClient([self.server.url]) as client:
            engine = VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)
            return await convert_document(
                case.data, engine=engine, options=options, source=case.name
            )


class OwnBroker:
    """A single-node broker in a folder of the test's: restarts keep its ports and data."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.state = kafka_broker.start_broker(work_dir)

    @property
    def bootstrap(self) -> str:
        return self.state.bootstrap

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL if it does not end."""
        stop_pid(self.state.pid)

    def kill(self) -> None:
        os.kill(self.state.pid, signal.SIGKILL)
        stop_pid(self.state.pid)  # reaps it

    def start(self) -> None:
        self.state = kafka_broker.start_broker(self.work_dir)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    broker = OwnBroker(tmp_path / "own-broker")
    try:
        yield broker
    finally:
        broker.stop()


def _pipeline(
    bootstrap: str, prefix: str, server: Any, processes: ProcessGroup, tmp_path: Path
) -> Iterator[Pipeline]:
    kafka = KafkaSettings(
        kafka_bootstrap_servers=bootstrap,
        ocrflux_topic_prefix=prefix,
        kafka_topic_partitions=PARTITIONS,
    )
    blob_dir = tmp_path / "blobs"
    client = OcrfluxClient(kafka, blob_settings=BlobSettings(ocrflux_blob_dir=blob_dir))
    with client:
        yield Pipeline(
            kafka=kafka,
            server=server,
            processes=processes,
            blob_dir=blob_dir,
            client=client,
        )


@pytest.fixture
def pipeline(
    kafka_bootstrap: str,
    unique_name: str,
    ocrflux_server: Any,
    processes: ProcessGroup,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    yield from _pipeline(kafka_bootstrap, unique_name, ocrflux_server, processes, tmp_path)


@pytest.fixture
def broker_pipeline(
    own_broker: OwnBroker,
    unique_name: str,
    ocrflux_server: Any,
    processes: ProcessGroup,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    for pipeline in _pipeline(
        own_broker.bootstrap, unique_name, ocrflux_server, processes, tmp_path
    ):
        pipeline.broker = own_broker
        yield pipeline


def dump(result: Any) -> str:
    return json.dumps(result.model_dump(mode="json"), sort_keys=True)
