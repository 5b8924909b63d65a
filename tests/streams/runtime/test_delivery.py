"""A record is finished only when what it caused is on Kafka, on the real broker.

The broker refuses a record larger than its topic's `max.message.bytes`: a real delivery failure,
on demand. A handler that sends one never finishes (its offset is never committed past), a
changelog write that fails is replaced by the key's current value, and a handler that raises is
answered by `on_error` and committed past like any other record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from confluent_kafka import Producer as SyncProducer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import BaseModel

from streams.kafka import KafkaSettings
from streams.runtime.clients import Producer
from streams.runtime.delivery import CURRENT, Deliveries
from streams.runtime.runner import RoleRunner
from streams.runtime.table import ChangelogTable

pytestmark = pytest.mark.kafka

#: The small topic's record limit; `BIG` is over it, `SMALL` well under.
LIMIT = 2048
BIG = b"x" * (4 * LIMIT)
SMALL = b"ok"


class Value(BaseModel):
    text: str


def _create(bootstrap: str, *topics: tuple[str, int, dict[str, str]]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=parts, config=config) for name, parts, config in topics]
    )
    for future in futures.values():
        future.result(30)


def _settings(bootstrap: str, prefix: str) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap_servers=bootstrap, ocrflux_topic_prefix=prefix)


async def _until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)  # poll interval


async def _committed(settings: KafkaSettings, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(**settings.aiokafka_options(), group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


def _runner(
    settings: KafkaSettings,
    topic: str,
    group: str,
    handler: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]],
    **extra: Any,
) -> RoleRunner:
    return RoleRunner(
        "test",
        topic=topic,
        group_id=group,
        handler=handler,
        consumer_options={**settings.aiokafka_options(), "session_timeout_ms": 10000},
        commit_interval_s=0.1,
        drain_timeout_s=1.0,
        **extra,
    )


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    sync = SyncProducer({"bootstrap.servers": bootstrap})
    for value in values:
        sync.produce(topic, value=value, partition=0)
    assert sync.flush(30) == 0


async def test_a_record_whose_output_was_refused_is_never_committed_past(
    kafka_bootstrap: str, unique_name: str
) -> None:
    settings = _settings(kafka_bootstrap, unique_name)
    source, small = f"{unique_name}.in", f"{unique_name}.small"
    _create(kafka_bootstrap, (source, 1, {}), (small, 1, {"max.message.bytes": str(LIMIT)}))
    _produce(kafka_bootstrap, source, [b"0", b"big", b"2"])
    producer = Producer(settings, client_id="delivery-test")
    await producer.start()
    handled: list[bytes] = []
    resent: list[bytes] = []

    async def handle(record: ConsumerRecord[bytes, bytes]) -> None:
        handled.append(record.value or b"")
        value = BIG if record.value == b"big" else SMALL

        async def resend() -> asyncio.Future[Any]:
            resent.append(value)
            return await producer.hand_over(small, None, value)

        await producer.send(small, None, value, resend=resend)

    group = f"{unique_name}.g"
    runner = _runner(settings, source, group, handle, concurrency=3)
    task = asyncio.create_task(runner.run())
    tp = TopicPartition(source, 0)
    try:
        # Records 0 and 2 finish; "big" is sent again and again, so the committed position
        # stops at it, and stays there through the final commit.
        await _until(lambda: len(handled) == 3 and len(resent) >= 2)
    finally:
        runner.stop()
        await task
        await producer.stop()
    assert await _committed(settings, group, tp) == 1


async def test_a_handler_that_raises_is_answered_and_committed_past(
    kafka_bootstrap: str, unique_name: str
) -> None:
    settings = _settings(kafka_bootstrap, unique_name)
    source = f"{unique_name}.in"
    _create(kafka_bootstrap, (source, 1, {}))
    _produce(kafka_bootstrap, source, [b"0", b"boom", b"2"])
    answered: list[tuple[bytes, str]] = []

    async def handle(record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value == b"boom":
            raise ValueError("a bug")

    async def on_error(record: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
        answered.append((record.value or b"", str(exc)))

    group = f"{unique_name}.g"
    runner = _runner(settings, source, group, handle, on_error=on_error)
    task = asyncio.create_task(runner.run())
    try:
        await _until(lambda: len(answered) == 1)
    finally:
        runner.stop()
        await task
    assert answered == [(b"boom", "a bug")]
    assert await _committed(settings, group, TopicPartition(source, 0)) == 3


async def test_a_failed_changelog_write_is_replaced_by_the_current_value(
    kafka_bootstrap: str, unique_name: str
) -> None:
    settings = _settings(kafka_bootstrap, unique_name)
    changelog = f"{unique_name}.state"
    _create(kafka_bootstrap, (changelog, 1, {"max.message.bytes": str(LIMIT)}))
    producer = Producer(settings, client_id="table-test")
    await producer.start()
    try:
        table = ChangelogTable(
            producer, changelog, Value.model_validate_json, settings.aiokafka_options()
        )
        table.current_partition = 0
        deliveries = Deliveries()
        CURRENT.set(deliveries)
        table["k"] = Value(text=BIG.decode())  # refused by the broker
        table["k"] = Value(text="final")
        table["other"] = Value(text="kept")
        await table.sync()
        repeated = await deliveries.settle(retry_first_s=0.01)
        CURRENT.set(None)
        fresh = ChangelogTable(
            producer, changelog, Value.model_validate_json, settings.aiokafka_options()
        )
        await fresh.restore({0})
    finally:
        await producer.stop()
    assert repeated >= 1  # the refused write (and whatever shared its batch) went again
    assert dict(fresh) == {"k": Value(text="final"), "other": Value(text="kept")}


async def test_acknowledged_sends_are_let_go_and_refused_ones_kept_until_settled(
    kafka_bootstrap: str, unique_name: str
) -> None:
    """Split sends a whole document's pages while handling one record: what Kafka has
    acknowledged must not stay in memory until the handler returns."""
    topic, roomy = f"{unique_name}.small", f"{unique_name}.roomy"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics(
        [
            NewTopic(topic, num_partitions=1, config={"max.message.bytes": str(LIMIT)}),
            NewTopic(roomy, num_partitions=1),
        ]
    ).values():
        future.result(30)
    settings = KafkaSettings(
        kafka_bootstrap_servers=kafka_bootstrap, ocrflux_topic_prefix=unique_name
    )
    producer = Producer(settings, client_id="deliveries-memory-test")
    await producer.start()
    try:
        deliveries = Deliveries()
        CURRENT.set(deliveries)
        futures = [await producer.send(roomy, None, b"x" * 100_000) for _ in range(50)]
        await asyncio.wait(futures)
        assert all(f.exception() is None for f in futures)
        assert len(deliveries) == 0  # acknowledged: no record bytes held any more
        big = await producer.send(topic, None, b"x" * (4 * LIMIT))
        await asyncio.wait([big])
        assert big.exception() is not None
        assert len(deliveries) == 1  # refused: kept to be sent again
        sent_again: list[bytes] = []

        async def smaller() -> asyncio.Future[object]:
            sent_again.append(b"ok")
            return await producer.hand_over(topic, None, b"ok")

        deliveries = Deliveries()
        CURRENT.set(deliveries)
        await producer.send(topic, None, b"x" * (4 * LIMIT), resend=smaller)
        assert await deliveries.settle(retry_first_s=0.01) == 1
        assert sent_again == [b"ok"] and len(deliveries) == 0
        CURRENT.set(None)
    finally:
        await producer.stop()
