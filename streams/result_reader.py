"""One document result read back from the results topic: how the assembler answers a new
submission of a document it has finished (it keeps only where the result is, not the result)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.records import ResultRecord, decode

__all__ = ["ResultReader"]

#: A read that has not found the record by then gives up (the caller converts again instead).
_READ_TIMEOUT_S = 30.0
_FETCH_WAIT_MS = 500


class ResultReader:
    """Reads one partition at a time, from a consumer outside any group (started on first use)."""

    def __init__(self, topic: str, options: dict[str, Any]) -> None:
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False, isolation_level="read_committed", **options
        )
        self._started = False
        self._lock = asyncio.Lock()

    async def read(self, doc_id: str, partition: int, offset: int) -> ResultRecord | None:
        """The first result for `doc_id` at or after `offset` of `partition`; None when the
        partition ends first (or the read times out).

        Compaction may have removed the record at `offset` in favour of a later copy of the same
        result, hence the scan forward, which stops at the first record with the key."""
        async with self._lock:
            if not self._started:
                await self._consumer.start()
                self._started = True
            where = TopicPartition(self._topic, partition)
            self._consumer.assign([where])
            self._consumer.seek(where, offset)
            end = (await self._consumer.end_offsets([where]))[where]
            deadline = time.monotonic() + _READ_TIMEOUT_S
            key = doc_id.encode()
            while await self._consumer.position(where) < end and time.monotonic() < deadline:
                batch = await self._consumer.getmany(where, timeout_ms=_FETCH_WAIT_MS)
                for message in batch.get(where, []):
                    if message.key != key or message.value is None:
                        continue
                    try:
                        record = decode(message.value)
                    except ValidationError:
                        continue
                    if isinstance(record, ResultRecord):
                        return record
            return None

    async def close(self) -> None:
        await self._consumer.stop()  # also when never started: it marks the consumer closed
