"""One role's consume loop: a consumer group, a bounded number of records in hand, commits that
never run ahead of the work.

- At most `concurrency` records are being handled at once; with 1 they are handled in order.
- Every `commit_interval_s` the producer is flushed, then each partition's position below which
  all records finished is committed. A crash therefore re-delivers only records whose effects
  may be missing, and the handlers are idempotent.
- On revocation the runner stops taking records of those partitions, waits (bounded) for the
  ones in hand, flushes, commits and calls `on_revoke`. On assignment it calls `on_assign`
  (table restore) before it hands out any record of the new partitions; records fetched too
  early are given back by seeking to their offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from streams.runtime.clients import Producer
from streams.runtime.offsets import OffsetTracker

_log = logging.getLogger(__name__)

Handler = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]
PartitionsHook = Callable[[set[int]], Awaitable[None]]


async def _nothing(_partitions: set[int]) -> None:
    return None


class RoleRunner:
    def __init__(
        self,
        name: str,
        *,
        topic: str,
        group_id: str,
        handler: Handler,
        producer: Producer | None,
        consumer_options: dict[str, Any],
        concurrency: int = 1,
        commit_interval_s: float = 1.0,
        drain_timeout_s: float = 30.0,
        on_assign: PartitionsHook = _nothing,
        on_revoke: PartitionsHook = _nothing,
    ) -> None:
        self.name = name
        self.topic = topic
        self._handler = handler
        self._producer = producer
        self._concurrency = concurrency
        self._commit_interval_s = commit_interval_s
        self._drain_timeout_s = drain_timeout_s
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._consumer = AIOKafkaConsumer(
            topic,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            **consumer_options,
        )
        self._offsets = OffsetTracker()
        self._tasks: dict[tuple[int, int], asyncio.Task[None]] = {}
        self._ready: set[int] = set()  # partitions whose records may be handed out
        self._progress = asyncio.Event()  # set whenever a record finishes
        self._stopping = False
        self.failure: BaseException | None = None
        self.assigned: set[int] = set()
        self.rebalanced = False  # set after the first assignment, even an empty one

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Consume until `stop()`; commits what finished before returning."""
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        await self._consumer.start()
        committer = asyncio.create_task(self._commit_forever(), name=f"{self.name}-commits")
        try:
            await self._consume()
        finally:
            committer.cancel()
            await self._drain(set(self._offsets.partitions()), self._drain_timeout_s)
            await self._commit(set(self._offsets.partitions()))
            await self._consumer.stop()

    def stop(self) -> None:
        self._stopping = True
        self._progress.set()

    # -- consuming ------------------------------------------------------------------------
    async def _consume(self) -> None:
        while not self._stopping:
            free = self._concurrency - len(self._tasks)
            if free <= 0:
                self._progress.clear()
                await self._progress.wait()
                continue
            batch = await self._consumer.getmany(timeout_ms=200, max_records=free)
            for tp, records in batch.items():
                if tp.partition not in self._ready:
                    # fetched before `on_assign` finished: give them back
                    self._consumer.seek(tp, records[0].offset)
                    continue
                for record in records:
                    self._start(record)
        if self.failure is not None:
            raise self.failure

    def _start(self, record: ConsumerRecord[bytes, bytes]) -> None:
        key = (record.partition, record.offset)
        self._offsets.started(record.partition, record.offset)
        task = asyncio.create_task(self._handle(record), name=f"{self.name}-{key}")
        self._tasks[key] = task

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        key = (record.partition, record.offset)
        try:
            await self._handler(record)
            self._offsets.finished(record.partition, record.offset)
        except asyncio.CancelledError:
            raise  # left uncommitted: the partition's next owner handles it again
        except Exception:  # handlers answer bad records themselves; this is a bug: keep going
            _log.exception(
                "%s: record %s/%d@%d raised; it is skipped",
                self.name,
                record.topic,
                record.partition,
                record.offset,
            )
            self._offsets.finished(record.partition, record.offset)
        finally:
            self._tasks.pop(key, None)
            self._progress.set()

    # -- committing -----------------------------------------------------------------------
    async def _commit_forever(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval_s)  # the commit interval
            await self._commit(set(self._offsets.partitions()))

    async def _commit(self, partitions: set[int]) -> None:
        positions = {
            p: pos for p in partitions if (pos := self._offsets.commit_position(p)) is not None
        }
        if not positions:
            return
        if self._producer is not None:
            await self._producer.flush()  # everything these records caused is on Kafka first
        try:
            await self._consumer.commit(
                {TopicPartition(self.topic, p): pos for p, pos in positions.items()}
            )
        except (CommitFailedError, KafkaError) as exc:
            _log.warning(
                "%s: commit of %s failed (%s); those records may be handled again",
                self.name,
                positions,
                exc,
            )
            return
        for partition, position in positions.items():
            self._offsets.committed(partition, position)

    # -- rebalancing ----------------------------------------------------------------------
    async def _drain(self, partitions: set[int], timeout_s: float) -> None:
        """Wait for the records in hand of `partitions`; cancel the rest after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while any(p in partitions for p, _ in self._tasks):
            left = deadline - time.monotonic()
            if left <= 0:
                late = [t for (p, _), t in self._tasks.items() if p in partitions]
                _log.warning(
                    "%s: %d record(s) still in hand after %.0fs; they will be handled "
                    "again by the partitions' next owner",
                    self.name,
                    len(late),
                    timeout_s,
                )
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
                break
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), left)
            except TimeoutError:
                continue

    async def revoked(self, partitions: set[int]) -> None:
        self._ready -= partitions
        self.assigned -= partitions
        await self._drain(partitions, self._drain_timeout_s)
        await self._commit(partitions)
        for partition in partitions:
            self._offsets.drop(partition)
        await self._on_revoke(partitions)

    async def assigned_now(self, partitions: set[int]) -> None:
        try:
            await self._on_assign(partitions)
        except Exception as exc:  # without its state a partition must not be processed
            _log.exception(
                "%s: preparing partitions %s failed; stopping", self.name, sorted(partitions)
            )
            self.failure = exc
            self.stop()
            return
        self.assigned |= partitions
        self._ready |= partitions
        self.rebalanced = True
        _log.info("%s: assigned %s partitions %s", self.name, self.topic, sorted(self.assigned))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: RoleRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.assigned_now({tp.partition for tp in assigned})
