"""A local view of a compacted topic: every partition read from the beginning by a consumer
outside any group, each record handed to `apply`. `follow()` keeps it current in the
background; `catch_up()` returns once everything on the topic when it was called is applied.

A view that is only caught up with (`followed=False`) pauses its partitions in between: the
consumer's background fetcher would otherwise keep a long-polling fetch waiting at the broker,
and the broker answers one request of a connection at a time, so the next catch-up's end
offsets waited behind it (100-700 ms a document in split's finished-documents lookup)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from streams.runtime.delivery import backoff_s

__all__ = ["TopicView"]

_log = logging.getLogger(__name__)

#: How long one fetch waits for new records while following.
_FETCH_WAIT_MS = 200
#: How long the broker holds a fetch of a view that is only caught up with: it only asks for
#: records already there, and a request waiting at the broker delays the next one.
_CATCH_UP_BROKER_WAIT_MS = 10
#: How long one fetch waits while catching up. Short: a fetch that only moves past a
#: transaction marker returns no record, and aiokafka's `getmany` then waits out its whole
#: timeout although the position has moved (a 200 ms wait cost split that much per document).
_CATCH_UP_WAIT_MS = 5

Apply = Callable[[ConsumerRecord[bytes, bytes]], None]


class TopicView:
    def __init__(
        self, topic: str, options: dict[str, Any], apply: Apply, *, followed: bool = True
    ) -> None:
        """`followed=False`: only `catch_up()` will be used (its partitions rest in between)."""
        self._topic = topic
        self._apply = apply
        self._followed = followed
        broker_wait = {} if followed else {"fetch_max_wait_ms": _CATCH_UP_BROKER_WAIT_MS}
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            **{k: v for k, v in options.items() if k != "group_id"},
            **broker_wait,
        )
        self._started = False
        self._partitions: list[TopicPartition] = []
        self._lock = asyncio.Lock()

    async def _start(self) -> None:
        if self._partitions:
            return
        if not self._started:
            await self._consumer.start()
            self._started = True
        # A consumer outside any group learns a topic's partitions once asked about one of
        # them; every topic has a partition 0.
        await self._consumer.end_offsets([TopicPartition(self._topic, 0)])
        numbers = self._consumer.partitions_for_topic(self._topic) or ()
        partitions = [TopicPartition(self._topic, p) for p in sorted(numbers)]
        self._consumer.assign(partitions)
        if not self._followed:
            self._consumer.pause(*partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._partitions = partitions

    async def catch_up(self) -> None:
        """Apply every record the topic holds now."""
        async with self._lock:
            await self._start()
            ends = await self._consumer.end_offsets(self._partitions)
            try:
                while True:
                    behind = [
                        tp
                        for tp in self._partitions
                        if await self._consumer.position(tp) < ends[tp]
                    ]
                    if not behind:
                        return
                    self._consumer.resume(*behind)
                    await self._fetch(*behind, wait_ms=_CATCH_UP_WAIT_MS)
            finally:
                if not self._followed:
                    self._consumer.pause(*self._partitions)

    async def follow(self) -> None:
        """Apply new records as they come, until cancelled (a view made with `followed=True`)."""
        assert self._followed, "a view made with followed=False is only caught up with"
        failures = 0
        while True:
            try:
                async with self._lock:
                    await self._start()
                    await self._fetch(*self._partitions, wait_ms=_FETCH_WAIT_MS)
                failures = 0
            except KafkaError as exc:
                _log.warning("reading %s failed (%r); trying again", self._topic, exc)
                await asyncio.sleep(backoff_s(failures))  # Kafka is unreachable
                failures += 1

    async def _fetch(self, *partitions: TopicPartition, wait_ms: int) -> None:
        batch = await self._consumer.getmany(*partitions, timeout_ms=wait_ms)
        for messages in batch.values():
            for message in messages:
                self._apply(message)

    async def close(self) -> None:
        await self._consumer.stop()
