"""The changelog-backed table on the real broker: writes go to the record's partition, a fresh
table restores exactly what was written, deletes and all, and forgets revoked partitions."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from streams.kafka import KafkaSettings, ensure_topics
from streams.runtime.clients import Producer
from streams.runtime.delivery import CURRENT, Deliveries
from streams.runtime.table import ChangelogTable

pytestmark = pytest.mark.kafka


class Value(BaseModel):
    n: int


def _decode(data: bytes) -> Value:
    return Value.model_validate_json(data)


async def test_restore_rebuilds_the_written_state(kafka_bootstrap: str, unique_name: str) -> None:
    settings = KafkaSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        ocrflux_topic_prefix=unique_name,
        kafka_topic_partitions=3,
    )
    ensure_topics(settings)
    topic = settings.topics.assembly_state
    producer = Producer(settings, client_id="table-test")
    await producer.start()
    try:
        table = ChangelogTable(producer, topic, _decode, settings.aiokafka_options())
        for partition, key in [(0, "a"), (1, "b"), (2, "c"), (1, "d")]:
            table.current_partition = partition
            table[key] = Value(n=1)
        table.current_partition = 0
        table["b"] = Value(n=2)  # an existing key keeps its partition (1)
        del table["d"]
        deliveries = Deliveries()
        CURRENT.set(deliveries)
        await table.sync()
        await deliveries.settle()
        CURRENT.set(None)

        fresh = ChangelogTable(producer, topic, _decode, settings.aiokafka_options())
        assert await fresh.restore({1, 2}) == 5  # b, c, d, b again, d's tombstone
        assert dict(fresh) == {"b": Value(n=2), "c": Value(n=1)}
        fresh.drop({2})
        assert dict(fresh) == {"b": Value(n=2)}
        assert await fresh.restore({0}) == 1
        assert dict(fresh) == {"a": Value(n=1), "b": Value(n=2)}
        with pytest.raises(RuntimeError, match="partition of the record"):
            fresh["new"] = Value(n=0)  # no record is being handled
    finally:
        await producer.stop()
