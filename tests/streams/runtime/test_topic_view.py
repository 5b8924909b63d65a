"""A topic view on the real broker: `catch_up()` applies everything on the topic when it was
called (committed transactions, every partition, records written between catch-ups), and a view
that is only caught up with keeps no fetch waiting at the broker in between: the broker answers
one request of a connection at a time, so a long-polling fetch delayed the next catch-up's end
offsets (split's finished-documents lookup waited 100-700 ms for it on every document)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from confluent_kafka import Producer as SyncProducer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka import KafkaSettings
from streams.runtime.topic_view import TopicView

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def _create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)]).values():
        future.result(30)


def _produce(bootstrap: str, topic: str, keys: list[str], *, abort: bool = False) -> None:
    """One record per key, each in its own partition (round robin), in one transaction."""
    producer = SyncProducer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"view-test-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for n, key in enumerate(keys):
        producer.produce(topic, key=key.encode(), value=b"v", partition=n % PARTITIONS)
    if abort:
        producer.abort_transaction(30)
    else:
        producer.commit_transaction(30)


def _view(bootstrap: str, topic: str, seen: list[str], *, followed: bool) -> TopicView:
    options = KafkaSettings(kafka_bootstrap_servers=bootstrap).aiokafka_options()

    def apply(message: ConsumerRecord[bytes, bytes]) -> None:
        seen.append((message.key or b"").decode())

    return TopicView(topic, options, apply, followed=followed)


async def test_catch_up_applies_what_was_committed_before_each_call(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"{unique_name}.view"
    _create(kafka_bootstrap, topic)
    seen: list[str] = []
    view = _view(kafka_bootstrap, topic, seen, followed=False)
    try:
        await view.catch_up()  # an empty topic
        assert seen == []
        for round_ in range(3):
            keys = [f"r{round_}-{n}" for n in range(4)]
            _produce(kafka_bootstrap, topic, keys)
            _produce(kafka_bootstrap, topic, [f"aborted-{round_}"], abort=True)
            await view.catch_up()
            assert sorted(seen[-4:]) == keys, f"round {round_}: {seen}"
        assert len(seen) == 12 and not any(key.startswith("aborted") for key in seen)
    finally:
        await view.close()


async def test_a_view_only_caught_up_with_fetches_nothing_between_catch_ups(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"{unique_name}.view"
    _create(kafka_bootstrap, topic)
    _produce(kafka_bootstrap, topic, ["a", "b", "c"])
    seen: list[str] = []
    view = _view(kafka_bootstrap, topic, seen, followed=False)
    try:
        await view.catch_up()
        assert sorted(seen) == ["a", "b", "c"]
        everything = {TopicPartition(topic, p) for p in range(PARTITIONS)}
        # Paused partitions are never in a fetch request (aiokafka's fetcher skips them).
        assert view._consumer.paused() == everything
        with pytest.raises(AssertionError):
            await view.follow()
    finally:
        await view.close()


async def test_a_followed_view_keeps_fetching(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"{unique_name}.view"
    _create(kafka_bootstrap, topic)
    _produce(kafka_bootstrap, topic, ["a"])
    seen: list[str] = []
    view = _view(kafka_bootstrap, topic, seen, followed=True)
    try:
        await view.catch_up()
        assert seen == ["a"]
        assert view._consumer.paused() == set()
    finally:
        await view.close()
