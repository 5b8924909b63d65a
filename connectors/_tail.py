"""Reading topics with a throwaway confluent-kafka consumer: whole, or from a mark.

Partitions are assigned (no consumer group membership, nothing committed), so any number of
readers can read the same topics side by side. A reader yields the records it sees and, once,
`CAUGHT_UP` when every partition has reached the end it had when reading began; topics that do
not exist yet count as empty and are picked up when they appear. A reader started at a mark
(`end_offsets`, taken before a submission) reads only what was written since, however much
history the topics hold.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from pydantic import BaseModel, ValidationError

from schemas.records import decode
from streams.kafka import LIBRDKAFKA_LOGGER, KafkaClientError, KafkaSettings

log = logging.getLogger(__name__)


class _CaughtUp:
    def __repr__(self) -> str:
        return "CAUGHT_UP"


CAUGHT_UP: Final = _CaughtUp()

_BATCH = 500
# How long one wait for a message lasts before the reader checks its deadline and topics.
_POLL_S = 0.1
# The broker holds an empty fetch this long (default 500 ms): it bounds how long the end of a
# partition takes to be noticed, at a few small requests per second while following.
_FETCH_WAIT_MS = 100
#: How often topics missing at the start are looked up again.
_TOPIC_RECHECK_S = 2.0
#: Errors of a partition whose leader is being elected, and how soon to ask again.
_LEADER_MOVING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
_LEADER_RETRY_S = 0.05


def _partitions(
    consumer: Consumer, topic: str, timeout_s: float, bootstrap: str, start: Mark | None = None
) -> list[TopicPartition] | None:
    """The topic's partitions at their `start` offset (default: the beginning), or None when
    the topic does not exist."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaClientError(f"no answer from Kafka at {bootstrap}: {exc}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return None
    marks = start or {}
    return [
        TopicPartition(topic, p, marks.get((topic, p), OFFSET_BEGINNING))
        for p in sorted(found.partitions)
    ]


#: Where each partition (`(topic, partition)`) of some topics ended when a mark was taken.
Mark = dict[tuple[str, int], int]


def end_offsets(
    settings: KafkaSettings, topics: Sequence[str], *, metadata_timeout_s: float = 10.0
) -> Mark:
    """Where each partition of `topics` ends now (topics that do not exist have none)."""
    consumer = Consumer(
        settings.consumer_config(
            f"ocrflux-reader-{uuid.uuid4().hex}", **{"logger": LIBRDKAFKA_LOGGER}
        )
    )
    bootstrap = settings.kafka_bootstrap_servers
    try:
        found = [
            TopicPartition(topic, tp.partition, OFFSET_END)
            for topic in topics
            for tp in _partitions(consumer, topic, metadata_timeout_s, bootstrap) or []
        ]
        if not found:
            return {}
        deadline = time.monotonic() + metadata_timeout_s
        while True:
            answer = _list_ends(consumer, found, metadata_timeout_s)
            if isinstance(answer, dict):
                return answer
            # A topic created a moment ago has no leader known to every broker yet.
            if answer.code() not in _LEADER_MOVING or time.monotonic() >= deadline:
                raise KafkaClientError(f"no answer from Kafka at {bootstrap}: {answer.str()}")
            time.sleep(_LEADER_RETRY_S)
    finally:
        consumer.close()


def _list_ends(
    consumer: Consumer, partitions: list[TopicPartition], timeout_s: float
) -> Mark | KafkaError:
    """One ListOffsets request for every partition ("timestamp" -1 asks for the end, as far as
    this read_committed consumer can read), where a watermark query per partition took a round
    trip each (30-45 instead of 6 ms for 8 partitions on loopback); or the error."""
    try:
        ends = consumer.offsets_for_times(partitions, timeout=timeout_s)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        return error
    failed = [tp.error for tp in ends if tp.error is not None]
    return failed[0] if failed else {(tp.topic, tp.partition): tp.offset for tp in ends}


def read_topics(
    settings: KafkaSettings,
    topics: Sequence[str],
    *,
    deadline: float | None = None,
    start: Mark | None = None,
    metadata_timeout_s: float = 10.0,
) -> Generator[Any, None, None]:
    """Yield raw messages of `topics` from their beginning, and `CAUGHT_UP` once every partition
    has reached the end it had when reading began; or from `start` (an `end_offsets` mark: a
    partition it does not name is newer, and read whole), with `CAUGHT_UP` first.

    Ends when `deadline` (a `time.monotonic()` value) passes, or when the caller stops iterating;
    the consumer is closed either way.
    """
    consumer = Consumer(
        settings.consumer_config(
            f"ocrflux-reader-{uuid.uuid4().hex}",
            **{
                "enable.partition.eof": True,
                "fetch.wait.max.ms": _FETCH_WAIT_MS,
                "logger": LIBRDKAFKA_LOGGER,
            },
        )
    )
    bootstrap = settings.kafka_bootstrap_servers
    try:
        missing: list[str] = []
        assigned: list[TopicPartition] = []
        for topic in topics:
            found = _partitions(consumer, topic, metadata_timeout_s, bootstrap, start)
            if found is None:
                missing.append(topic)
            else:
                assigned += found
        # From a mark everything is new: there is no history to catch up with.
        pending = set() if start is not None else {(tp.topic, tp.partition) for tp in assigned}
        if assigned:
            consumer.assign(assigned)
        caught_up = False
        next_recheck = time.monotonic() + _TOPIC_RECHECK_S
        while True:
            if not caught_up and not pending:
                caught_up = True
                yield CAUGHT_UP
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if missing and now >= next_recheck:
                missing = _assign_new(consumer, missing, metadata_timeout_s, bootstrap, start)
                next_recheck = now + _TOPIC_RECHECK_S
            wait = _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - now))
            if not consumer.assignment():
                # Nothing to read yet: wait for a missing topic to appear, within the deadline.
                time.sleep(wait)
                continue
            for message in _next_batch(consumer, wait):
                error = message.error()
                if error is None:
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((message.topic(), message.partition()))
                elif error.fatal():
                    raise KafkaClientError(f"Kafka consumer failed: {error.str()}")
                else:
                    log.warning("Kafka consumer: %s", error.str())
    finally:
        consumer.close()


def _next_batch(consumer: Consumer, wait_s: float) -> list[Message]:
    """What has arrived (up to `_BATCH` messages), or else the first to arrive within `wait_s`:
    `consume` with a timeout waits for a full batch or the whole timeout, which held every
    record a reader follows live (a result, an end of partition) up to `_POLL_S` longer."""
    batch: list[Message] = consumer.consume(_BATCH, 0)
    if batch:
        return batch
    message = consumer.poll(wait_s)
    return [] if message is None else [message]


def _assign_new(
    consumer: Consumer, missing: list[str], timeout_s: float, bootstrap: str, start: Mark | None
) -> list[str]:
    """Assign the partitions of topics that appeared since; returns those still missing."""
    still: list[str] = []
    for topic in missing:
        found = _partitions(consumer, topic, timeout_s, bootstrap, start)
        if found is None:
            still.append(topic)
        else:
            consumer.incremental_assign(found)
    return still


def decode_value(message: Any) -> BaseModel | None:
    """The record in a message; None (logged) for a tombstone or a value that is no record."""
    value = message.value()
    if value is None:
        return None
    try:
        return decode(value)
    except ValidationError as exc:
        log.warning(
            "skipping an undecodable record at %s[%d]@%d: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            exc.errors()[0]["msg"] if exc.errors() else exc,
        )
        return None


def latest_then_live(
    messages: Iterator[Any], key_of: Callable[[Any, BaseModel | None], str | None]
) -> Iterator[tuple[str, BaseModel] | _CaughtUp]:
    """Collapse the history before `CAUGHT_UP` to the latest record per topic and key (a
    tombstone forgets the key), yield those, then `CAUGHT_UP`, then every later record as it
    arrives. Records come as `(key, record)`.

    `key_of(message, record)` returns the key of a record to keep, or None to drop it; `record`
    is None for a tombstone.
    """
    latest: dict[tuple[str, str], tuple[str, BaseModel]] = {}
    caught_up = False
    for message in messages:
        if message is CAUGHT_UP:
            caught_up = True
            yield from latest.values()
            latest.clear()
            yield CAUGHT_UP
            continue
        record = decode_value(message)
        if record is None and message.value() is not None:
            continue  # undecodable, already logged
        key = key_of(message, record)
        if key is None:
            continue
        if caught_up:
            if record is not None:
                yield key, record
            continue
        slot = (message.topic(), key)
        latest.pop(slot, None)
        if record is not None:
            latest[slot] = (key, record)
