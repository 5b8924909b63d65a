"""aiokafka clients configured from the one `KafkaSettings` object."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from connectors.kafka_config import KafkaSettings


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection options shared by every aiokafka client of a worker."""
    options: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in settings.kafka_bootstrap_servers.split(",")],
    }
    protocol = settings.kafka_security_protocol
    if protocol:
        options["security_protocol"] = protocol
        if protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_ca_location)
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def new_producer(settings: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    """Idempotent, acks from every in-sync replica, records up to the configured maximum."""
    return AIOKafkaProducer(
        **client_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.kafka_message_max_bytes,
        linger_ms=5,
    )


class Producer:
    """The worker's one producer: `send` hands a record over and returns its delivery future."""

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self._producer = new_producer(settings, client_id)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> asyncio.Future[Any]:
        return await self._producer.send(topic, value=value, key=key, partition=partition)

    async def flush(self) -> None:
        await self._producer.flush()
