"""confluent-kafka against the real broker: idempotent producer, manual-commit consumer group."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.kafka

RECORDS = 1000
KEYS = 10
PARTITIONS = 3


def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)


def _consume(consumer: Consumer, limit: int, deadline_s: float = 60.0) -> list[Message]:
    """Consume up to `limit` records, committing each one's offset after it is processed."""
    seen: list[Message] = []
    deadline = time.monotonic() + deadline_s
    while len(seen) < limit and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        assert message.error() is None, message.error()
        seen.append(message)
        consumer.commit(message=message, asynchronous=False)
    return seen


def test_every_record_seen_once_and_in_order_across_a_group_handover(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"{unique_name}.roundtrip"
    _create_topic(kafka_bootstrap, topic, PARTITIONS)

    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    for n in range(RECORDS):
        key = f"k{n % KEYS}"
        producer.produce(
            topic,
            key=key,
            value=json.dumps({"key": key, "seq": n // KEYS}),
            on_delivery=on_delivery,
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []

    config = {
        "bootstrap.servers": kafka_bootstrap,
        "group.id": f"{unique_name}-group",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    first = Consumer(config)
    first.subscribe([topic])
    seen = _consume(first, RECORDS // 2)
    first.close()
    # A second member of the same group resumes exactly after the committed offsets.
    second = Consumer(config)
    second.subscribe([topic])
    seen += _consume(second, RECORDS - len(seen))
    assert second.poll(2.0) is None, "a record arrived twice or beyond the produced count"
    second.close()

    positions = [(m.partition(), m.offset()) for m in seen]
    assert len(positions) == RECORDS
    assert len(set(positions)) == RECORDS, "a record was delivered twice"

    offsets_by_partition: dict[int, list[int]] = defaultdict(list)
    seqs_by_key: dict[str, list[int]] = defaultdict(list)
    for message in seen:
        offsets_by_partition[message.partition()].append(message.offset())
        payload = json.loads(message.value())
        assert message.key().decode() == payload["key"]
        seqs_by_key[payload["key"]].append(payload["seq"])
    for offsets in offsets_by_partition.values():
        assert offsets == sorted(offsets)
    assert len(offsets_by_partition) == PARTITIONS
    for seqs in seqs_by_key.values():
        assert seqs == list(range(RECORDS // KEYS)), "per-key order was not kept"


def test_committed_position_survives_consumer_restart(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"{unique_name}.commits"
    _create_topic(kafka_bootstrap, topic, 1)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for n in range(10):
        producer.produce(topic, value=str(n))
    assert producer.flush(30) == 0

    config = {
        "bootstrap.servers": kafka_bootstrap,
        "group.id": f"{unique_name}-group",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    consumer = Consumer(config)
    consumer.subscribe([topic])
    _consume(consumer, 4)
    consumer.close()

    observer = Consumer(config)
    committed = observer.committed([TopicPartition(topic, 0)], timeout=10)
    observer.close()
    assert committed[0].offset == 4
