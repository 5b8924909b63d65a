"""Records read back from a topic by position: the assembler answers a new submission of a
document it has finished with the result it emitted (it keeps only where the result is, not the
result), and the figures of a finished document and the text layer of a page the model failed
come from the request the document was submitted with (`streams.submitted`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from schemas.records import DocumentRequest, ResultRecord, decode

__all__ = ["DocumentReader", "PositionReader", "ResultReader"]

T = TypeVar("T")

#: A read that has not found the record by then gives up (the caller does without it).
_READ_TIMEOUT_S = 30.0
_FETCH_WAIT_MS = 500


class PositionReader:
    """Reads one partition at a time, from a consumer outside any group (started on first use)."""

    def __init__(self, topic: str, options: dict[str, Any]) -> None:
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False, isolation_level="read_committed", **options
        )
        self._started = False
        self._lock = asyncio.Lock()

    async def first(
        self,
        partition: int,
        offset: int,
        accept: Callable[[ConsumerRecord[bytes, bytes]], T | None],
    ) -> T | None:
        """The first record at or after `offset` of `partition` that `accept` turns into a value;
        None when the partition ends first (or the read times out)."""
        async with self._lock:
            if not self._started:
                await self._consumer.start()
                self._started = True
            where = TopicPartition(self._topic, partition)
            self._consumer.assign([where])
            self._consumer.seek(where, offset)
            end = (await self._consumer.end_offsets([where]))[where]
            deadline = time.monotonic() + _READ_TIMEOUT_S
            while await self._consumer.position(where) < end and time.monotonic() < deadline:
                batch = await self._consumer.getmany(where, timeout_ms=_FETCH_WAIT_MS)
                for message in batch.get(where, []):
                    value = accept(message)
                    if value is not None:
                        return value
            return None

    async def close(self) -> None:
        await self._consumer.stop()  # also when never started: it marks the consumer closed


def _decoded(message: ConsumerRecord[bytes, bytes]) -> object | None:
    if message.value is None:
        return None
    try:
        return decode(message.value)
    except ValidationError:
        return None


class ResultReader(PositionReader):
    async def read(self, doc_id: str, partition: int, offset: int) -> ResultRecord | None:
        """The first result for `doc_id` at or after `offset` of `partition`.

        Compaction may have removed the record at `offset` in favour of a later copy of the same
        result, hence the scan forward, which stops at the first record with the key."""
        key = doc_id.encode()

        def result(message: ConsumerRecord[bytes, bytes]) -> ResultRecord | None:
            record = _decoded(message) if message.key == key else None
            return record if isinstance(record, ResultRecord) else None

        return await self.first(partition, offset, result)


class DocumentReader(PositionReader):
    async def request_at(self, submission: str) -> DocumentRequest | None:
        """The request read at `submission` (`DocumentInfo.submission`, "partition@offset" of
        the documents topic); None when it is gone (retention) or is not a request."""
        partition, _, offset = submission.partition("@")
        if not (partition.isdigit() and offset.isdigit()):
            return None
        at = int(offset)

        def request(message: ConsumerRecord[bytes, bytes]) -> tuple[object | None] | None:
            # The scan ends at `at`, or past it when that record is gone (then with nothing).
            if message.offset < at:
                return None
            return (_decoded(message) if message.offset == at else None,)

        found = await self.first(int(partition), at, request)
        record = found[0] if found is not None else None
        return record if isinstance(record, DocumentRequest) else None
