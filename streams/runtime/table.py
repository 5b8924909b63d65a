"""A key-value table whose every change is also written to a compacted changelog topic.

Its partitions follow the source topic's: a change made while handling a record of source
partition p goes to changelog partition p, and a worker that is assigned p first reads changelog
partition p from the beginning. Writes are queued in order and sent by `sync()`, joining the
handled record's deliveries: the runner commits the source offset only once they are
acknowledged, so the state a committed record caused is always on Kafka. A write whose delivery
failed is replaced by the key's value *at the time of sending again* (or a tombstone), so a
later write to the same key that landed first is never overtaken by a stale one. Values are
pydantic models, encoded as JSON and decoded with `decode`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, MutableMapping
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from schemas.codec import json_bytes
from streams.runtime.clients import Producer

_log = logging.getLogger(__name__)


class ChangelogTable(MutableMapping[str, Any]):
    def __init__(
        self,
        producer: Producer,
        topic: str,
        decode: Callable[[bytes], Any],
        consumer_options: dict[str, Any],
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._decode = decode
        self._consumer_options = consumer_options
        self._values: dict[str, Any] = {}
        self._partition_of: dict[str, int] = {}
        self._writes: list[tuple[int, bytes, bytes | None]] = []
        self.current_partition: int | None = None  # set by the runner around each record

    # -- MutableMapping -----------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: BaseModel) -> None:
        partition = self._partition_for(key)
        self._values[key] = value
        self._partition_of[key] = partition
        self._writes.append((partition, key.encode(), json_bytes(value)))

    def __delitem__(self, key: str) -> None:
        partition = self._partition_of.pop(key)
        del self._values[key]
        self._writes.append((partition, key.encode(), None))  # a tombstone

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def _partition_for(self, key: str) -> int:
        known = self._partition_of.get(key)
        if known is not None:
            return known
        if self.current_partition is None:
            raise RuntimeError("a new table key needs the partition of the record being handled")
        return self.current_partition

    # -- changelog ------------------------------------------------------------------------
    async def sync(self) -> None:
        """Hand the queued changes to the producer, in the order they were made."""
        writes, self._writes = self._writes, []
        for partition, key, value in writes:
            await self._producer.send(
                self._topic,
                key,
                value,
                partition=partition,
                resend=partial(self._send_current, partition, key),
            )

    async def _send_current(self, partition: int, key: bytes) -> asyncio.Future[Any]:
        """Write `key`'s value as it is now: what a failed write is replaced by."""
        value = self._values.get(key.decode())
        encoded = json_bytes(value) if value is not None else None
        return await self._producer.hand_over(self._topic, key, encoded, partition)

    async def restore(self, partitions: set[int]) -> int:
        """Load the given partitions from the changelog; returns the number of records read."""
        if not partitions:
            return 0
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        consumer = AIOKafkaConsumer(
            **self._consumer_options, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        read = 0
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, records in batch.items():
                    for record in records:
                        self._apply(tp.partition, record.key, record.value)
                        read += 1
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        _log.info(
            "restored %d changelog record(s) of %s partitions %s",
            read,
            self._topic,
            sorted(partitions),
        )
        return read

    def _apply(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode()
        if value is None:
            self._values.pop(name, None)
            self._partition_of.pop(name, None)
        else:
            self._values[name] = self._decode(value)
            self._partition_of[name] = partition

    def drop(self, partitions: set[int]) -> None:
        """Forget the state of partitions this worker no longer owns."""
        for key in [k for k, p in self._partition_of.items() if p in partitions]:
            del self._partition_of[key]
            self._values.pop(key, None)
