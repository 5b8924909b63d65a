"""The source's ledger: which object versions were submitted, in a compacted Kafka topic.

    topic   <prefix>.s3-ledger (cleanup.policy=compact)
    key     "<bucket>/<key>"
    value   LedgerEntry (JSON): etag, doc_id, content_sha256, size, revision, submitted_at

The source reads the topic fully when it starts (read_committed), and writes one entry per
submitted version in the same Kafka transaction as the document request (`submitter`), so the
two are visible together or not at all: a restart re-submits nothing that was submitted, and
a crash mid-submission leaves nothing behind that would stop it from being submitted again.

`revision` counts the versions of one key that were submitted (1, 2, ...). It is part of the
doc_id, so that a key that returns to earlier content (A, B, A) still gets a fresh result, and
it lets the sink refuse to overwrite a newer version's output with an older one's.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ocrflux.identity import doc_id_for
from schemas.codec import json_bytes
from schemas.options import ConversionOptions
from streams.kafka import LIBRDKAFKA_LOGGER, KafkaClientError, KafkaSettings

log = logging.getLogger(__name__)

LEDGER_SUFFIX = "s3-ledger"
_TIMEOUT_S = 30.0
#: The broker holds an empty fetch this long while the ledger is read.
_FETCH_WAIT_MS = 500


def ledger_topic(settings: KafkaSettings) -> str:
    return f"{settings.ocrflux_topic_prefix}.{LEDGER_SUFFIX}"


def ledger_key(bucket: str, key: str) -> str:
    return f"{bucket}/{key}"


class LedgerEntry(BaseModel):
    """One submitted object version."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["s3_ledger_entry"] = "s3_ledger_entry"
    schema_version: Literal[1] = 1
    bucket: str
    key: str
    etag: str
    doc_id: str
    content_sha256: str
    size: int = Field(ge=0)
    revision: int = Field(ge=1)
    submitted_at: float = Field(default_factory=time.time)

    @property
    def ledger_key(self) -> str:
        return ledger_key(self.bucket, self.key)

    def encode(self) -> bytes:
        return json_bytes(self)


def object_doc_id(
    content_sha256: str, bucket: str, key: str, revision: int, options: ConversionOptions
) -> str:
    """The doc_id of one submitted object version: the content hash, the object's address and
    its revision, and the options (`ocrflux.identity.doc_id_for`). Equal inputs give equal ids,
    so a submission repeated after a crash is the same document to the stream processor."""
    identity = hashlib.sha256(
        f"{content_sha256}\ns3://{bucket}/{key}\n{revision}".encode()
    ).hexdigest()
    return doc_id_for(identity, options)


class Known(NamedTuple):
    """What the source keeps of a ledger entry: enough to decide, small for big buckets."""

    etag: str
    revision: int


@dataclass
class Ledger:
    """The latest submitted version per object of one bucket (and prefix), in memory."""

    bucket: str
    prefix: str = ""

    def __post_init__(self) -> None:
        self._entries: dict[str, Known] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Known | None:
        return self._entries.get(key)

    def submitted(self, key: str, etag: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.etag == etag

    def next_revision(self, key: str) -> int:
        entry = self._entries.get(key)
        return entry.revision + 1 if entry is not None else 1

    def record(self, entry: LedgerEntry) -> None:
        if entry.bucket == self.bucket and entry.key.startswith(self.prefix):
            self._entries[entry.key] = Known(entry.etag, entry.revision)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


async def load_ledger(settings: KafkaSettings, bucket: str, prefix: str = "") -> Ledger:
    """Read the whole ledger topic (committed records only, up to where it ended when reading
    began) into a `Ledger` for one bucket."""
    ledger = Ledger(bucket, prefix)
    wanted = f"{bucket}/"
    topic = ledger_topic(settings)
    most = settings.kafka_message_max_bytes
    consumer = AIOKafkaConsumer(
        **settings.aiokafka_options(),
        client_id="ocrflux-s3-ledger",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_bytes=most,
        max_partition_fetch_bytes=most,
        request_timeout_ms=int(_TIMEOUT_S * 1000),
    )
    try:
        await consumer.start()
        # A consumer outside any group learns a topic's partitions once asked about one of
        # them; every topic has a partition 0.
        await consumer.end_offsets([TopicPartition(topic, 0)])
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=_FETCH_WAIT_MS)
            for messages in batches.values():
                for message in messages:
                    _read_entry(ledger, wanted, message.key, message.value)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    except KafkaError as exc:
        raise KafkaClientError(
            f"cannot read the ledger topic {topic} at {settings.kafka_bootstrap_servers}: {exc}"
        ) from exc
    finally:
        await consumer.stop()
    return ledger


def _read_entry(ledger: Ledger, wanted: str, key: bytes | None, value: bytes | None) -> None:
    """Apply one ledger record of the topic to `ledger` (if it is of the ledger's bucket)."""
    name = key.decode(errors="replace") if key else ""
    if not name.startswith(wanted):
        return
    if value is None:  # a tombstone forgets the object
        ledger.forget(name[len(wanted) :])
        return
    try:
        ledger.record(LedgerEntry.model_validate_json(value))
    except ValidationError as exc:
        log.warning("skipping an unreadable ledger entry for %s: %s", name, exc)


def ensure_ledger_topic(settings: KafkaSettings) -> bool:
    """Create the compacted ledger topic unless it exists; True if this call created it."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    name = ledger_topic(settings)
    admin = AdminClient({**settings.as_librdkafka_dict(), "logger": LIBRDKAFKA_LOGGER})  # type: ignore[dict-item]
    try:
        if name in admin.list_topics(timeout=_TIMEOUT_S).topics:
            return False
    except KafkaException as exc:
        raise KafkaClientError(
            f"cannot list topics at {settings.kafka_bootstrap_servers}: {exc}"
        ) from exc
    topic = NewTopic(
        name,
        settings.kafka_topic_partitions,
        settings.kafka_replication_factor,
        config={"cleanup.policy": "compact"},
    )
    future = admin.create_topics([topic], operation_timeout=_TIMEOUT_S)[name]
    try:
        future.result(timeout=_TIMEOUT_S)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise KafkaClientError(f"cannot create topic {name}: {exc}") from exc
    return True
