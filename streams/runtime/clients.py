"""The worker's aiokafka producer, configured from the one `KafkaSettings` object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.structs import RecordMetadata

from streams.kafka import KafkaSettings
from streams.runtime.delivery import CURRENT, Deliveries, Resend, backoff_s, resend_once
from streams.runtime.log_limit import OUTAGE_LOGGER

_log = logging.getLogger(OUTAGE_LOGGER)

#: Answers after which an aiokafka producer sends nothing more.
_FATAL = (OutOfOrderSequenceNumber, ProducerFenced, InvalidProducerEpoch, UnknownProducerId)
#: Beyond the delivery timeout, how long an acknowledgement may take before it counts as lost
#: (and how long a dead producer gets to stop).
_ACK_MARGIN_S = 10.0


def new_producer(settings: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    """Idempotent, acks from every in-sync replica, records up to the configured maximum."""
    return AIOKafkaProducer(
        **settings.aiokafka_options(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.kafka_message_max_bytes,
        # No linger: the assembler waits for each record's changelog acknowledgement before the
        # next record, so a linger is added to every record it handles (5 ms held it to about
        # 130 records a second). aiokafka keeps one request in flight per broker, so records
        # sent meanwhile still go out together.
        linger_ms=0,
        # aiokafka fails a batch it could not deliver in this time (its only delivery timeout)
        request_timeout_ms=int(settings.kafka_delivery_timeout_s * 1000),
    )


class Producer:
    """The worker's one producer.

    `send` hands a record over and returns its delivery future; inside a runner's handler the
    record also joins the handled record's `Deliveries`, which the runner settles (sending
    failed ones again) before the input record counts as finished. `deliver` waits for the
    acknowledgement itself, for code that needs the record's position or runs outside a
    handler.

    An idempotent aiokafka producer does not survive a batch that expired undelivered: the
    broker then answers its next batch with `OutOfOrderSequenceNumber`, which stops the
    producer's sender for good. The first such fatal answer replaces it with a new producer (a
    new producer id), and the failed records are sent again through that one.
    """

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer = new_producer(settings, client_id)
        self._renewal: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()
        #: How long to wait for an acknowledgement before taking a delivery for lost.
        self.ack_timeout_s = settings.kafka_delivery_timeout_s + _ACK_MARGIN_S
        self.renewals = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        if self._renewal is not None:
            await asyncio.gather(self._renewal, return_exceptions=True)
        await asyncio.gather(*self._retired, return_exceptions=True)
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        *,
        resend: Resend | None = None,
    ) -> asyncio.Future[Any]:
        """Hand a record to the producer. `resend` sends what should replace it if its delivery
        fails (default: the same record again). Inside a handler a refused send comes back as a
        failed future, to be sent again when the record settles; elsewhere it raises."""
        first = partial(self.hand_over, topic, key, value, partition)
        deliveries = CURRENT.get()
        if deliveries is None:
            return await first()
        future = await resend_once(first)
        deliveries.add(future, resend or first, self.ack_timeout_s)
        return future

    async def settle(self) -> None:
        """Inside a handler: wait until what it has sent so far is acknowledged, sending failed
        records again, as the runner does once the handler returns. Outside one: nothing."""
        deliveries = CURRENT.get()
        if deliveries is not None:
            await deliveries.settle()

    async def deliver(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> RecordMetadata:
        """Send and wait for the acknowledgement, sending again after failures."""
        again = partial(self.hand_over, topic, key, value, partition)
        sent = Deliveries()
        record = sent.add(await resend_once(again), again, self.ack_timeout_s)
        await sent.settle()
        return record.future.result()

    async def hand_over(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> asyncio.Future[Any]:
        """The producer's own send: no delivery tracking (resend functions use it)."""
        if self._renewal is not None:
            await asyncio.shield(self._renewal)
        producer = self._producer
        future = await producer.send(topic, value=value, key=key, partition=partition)
        future.add_done_callback(partial(self._check, producer))
        return future

    def _check(self, producer: AIOKafkaProducer, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or not isinstance(future.exception(), _FATAL):
            return
        if producer is self._producer and self._renewal is None:
            self._renewal = asyncio.create_task(self._renew(future.exception()))

    async def _renew(self, cause: BaseException | None) -> None:
        _log.warning("the Kafka producer stopped (%r); starting a new one", cause)
        old = self._producer
        fresh = new_producer(self._settings, self._client_id)
        try:
            while True:
                try:
                    await fresh.start()
                    break
                except KafkaError as exc:  # the broker may still be coming back
                    _log.warning("starting a new Kafka producer failed (%r); trying again", exc)
                    await asyncio.sleep(backoff_s(self.renewals))  # Kafka is unreachable
            self._producer = fresh
            self.renewals += 1
        finally:
            self._renewal = None
        retire = asyncio.create_task(_stop_quietly(old))
        self._retired.add(retire)
        retire.add_done_callback(self._retired.discard)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    """Stop a producer whose sender has died; records still in it are sent again elsewhere."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), _ACK_MARGIN_S)
