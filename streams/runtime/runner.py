"""One role's consume loop: a consumer group, a bounded number of records in hand, commits that
never run ahead of the work.

- At most `concurrency` records are being handled at once; with 1 they are handled in order.
- A record is finished only when its handler has returned and everything the handler sent is
  acknowledged by Kafka (`delivery.Deliveries`: failed deliveries are sent again until they
  land). A handler that fails because Kafka is unreachable runs again after a back-off; any
  other exception is a bug or bad input the handler missed: `on_error` answers it (the roles
  send a failed result and a dlq record) and the record finishes.
- Every `commit_interval_s` each partition's position below which all records finished is
  committed. A crash therefore re-delivers only records whose effects may be missing, and the
  handlers are idempotent.
- While every slot is taken, or while `hold()` says so (the model is unreachable), no record is
  taken; when nothing finishes for `HOLD_POLL_S`, fetching is paused and the consumer polls, so
  the group keeps the member and Kafka keeps the records until they can be worked on.
- On revocation the runner stops taking records of those partitions, waits (bounded) for the
  ones in hand, commits and calls `on_revoke`. On assignment it calls `on_assign` (table
  restore) before it hands out any record of the new partitions; records fetched too early are
  given back by seeking to their offset.
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

from streams.runtime.delivery import CURRENT, Deliveries, backoff_s
from streams.runtime.log_limit import OUTAGE_LOGGER
from streams.runtime.offsets import OffsetTracker

_log = logging.getLogger(__name__)
_outage_log = logging.getLogger(OUTAGE_LOGGER)

Handler = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]
ErrorHook = Callable[[ConsumerRecord[bytes, bytes], Exception], Awaitable[None]]
PartitionsHook = Callable[[set[int]], Awaitable[None]]

#: While fetching is paused, how often the consumer polls (keeps its group membership alive).
HOLD_POLL_S = 0.2


async def _nothing(_partitions: set[int]) -> None:
    return None


async def _log_error(record: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
    _log.error(
        "record %s[%d]@%d raised",
        record.topic,
        record.partition,
        record.offset,
        exc_info=exc,
    )


def _never() -> bool:
    return False


class RoleRunner:
    def __init__(
        self,
        name: str,
        *,
        topic: str,
        group_id: str,
        handler: Handler,
        consumer_options: dict[str, Any],
        concurrency: int = 1,
        commit_interval_s: float = 1.0,
        drain_timeout_s: float = 30.0,
        on_assign: PartitionsHook = _nothing,
        on_revoke: PartitionsHook = _nothing,
        on_error: ErrorHook = _log_error,
        hold: Callable[[], bool] = _never,
    ) -> None:
        self.name = name
        self.topic = topic
        self._handler = handler
        self._on_error = on_error
        self._hold = hold
        self._held = False
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
            full = len(self._tasks) >= self._concurrency
            held = self._hold()
            if held != self._held:
                self._held = held
                _log.warning(
                    "%s: %s taking records (%d in hand)",
                    self.name,
                    "stopped" if held else "resumed",
                    len(self._tasks),
                )
            if full or held:
                self._progress.clear()
                try:
                    await asyncio.wait_for(self._progress.wait(), HOLD_POLL_S)
                except TimeoutError:
                    # Nothing finished meanwhile: a poll with every partition paused returns
                    # nothing but keeps the member alive. Only then: aiokafka throws away the
                    # records it fetched ahead for a partition polled while paused, so a poll
                    # after every finished record fetched each record again.
                    self._pause(True)
                    self._give_back(await self._consumer.getmany(timeout_ms=0))
                continue
            self._pause(False)
            batch = await self._consumer.getmany(
                timeout_ms=200, max_records=self._concurrency - len(self._tasks)
            )
            for tp, records in batch.items():
                if tp.partition not in self._ready:
                    # fetched before `on_assign` finished: give them back
                    self._consumer.seek(tp, records[0].offset)
                    continue
                for record in records:
                    self._start(record)
        if self.failure is not None:
            raise self.failure

    def _pause(self, pause: bool) -> None:
        assigned = self._consumer.assignment()
        if pause:
            self._consumer.pause(*assigned)
        elif paused := self._consumer.paused():
            self._consumer.resume(*paused)

    def _give_back(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Records of a partition assigned while fetching was paused go back to Kafka."""
        for tp, records in batch.items():
            self._consumer.seek(tp, records[0].offset)

    def _start(self, record: ConsumerRecord[bytes, bytes]) -> None:
        key = (record.partition, record.offset)
        self._offsets.started(record.partition, record.offset)
        task = asyncio.create_task(self._handle(record), name=f"{self.name}-{key}")
        self._tasks[key] = task

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        key = (record.partition, record.offset)
        try:
            await self._handle_until_delivered(record)
            self._offsets.finished(record.partition, record.offset)
        finally:
            self._tasks.pop(key, None)
            self._progress.set()

    async def _handle_until_delivered(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Run the handler until it completes without a Kafka error, then settle its sends.

        Cancellation (revocation past the drain timeout, shutdown) leaves the record
        unfinished: the partition's next owner handles it again."""
        retries = 0
        while True:
            deliveries = Deliveries()
            CURRENT.set(deliveries)  # this task's context only: sends below join `deliveries`
            try:
                await self._handler(record)
            except KafkaError as exc:
                # Kafka unreachable mid-handler: what was sent lands first, then all again.
                _outage_log.warning(
                    "%s: record %s[%d]@%d could not be handled (Kafka: %r); trying again",
                    self.name,
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
                await deliveries.settle()
                await asyncio.sleep(backoff_s(retries))  # Kafka is unreachable: back off
                retries += 1
                continue
            except Exception as exc:  # the handler missed it: answer it and move on
                await self._answer_error(record, exc)
            await deliveries.settle()
            return

    async def _answer_error(self, record: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
        try:
            await self._on_error(record, exc)
        except Exception:  # nothing more can be done for this record than saying so
            _log.exception(
                "%s: record %s[%d]@%d raised %r and could not be answered; it is skipped",
                self.name,
                record.topic,
                record.partition,
                record.offset,
                exc,
            )

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
