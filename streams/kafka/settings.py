"""Kafka connection settings and topic names: one object that configures both Kafka clients.

`KafkaSettings` is the one place that reads the Kafka environment variables:

    KAFKA_BOOTSTRAP_SERVERS   host:port[,host:port]; unset means the local broker's state file
                              (`ocrflux broker start`), else a `BrokerError` saying what to do
    KAFKA_SECURITY_PROTOCOL   PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    KAFKA_SASL_MECHANISM      PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 | ...
    KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD
    KAFKA_SSL_CA_LOCATION     path of a CA bundle (PEM)
    OCRFLUX_TOPIC_PREFIX      default "ocrflux"
    KAFKA_MESSAGE_MAX_BYTES   the largest record; producers, consumers and topics agree on it
    KAFKA_TOPIC_PARTITIONS    partitions of topics that `ensure_topics` creates
    KAFKA_REPLICATION_FACTOR  replication factor of topics that `ensure_topics` creates
    KAFKA_DELIVERY_TIMEOUT_S  how long a producer tries to deliver one record

The last four are ours and also answer to `OCRFLUX_KAFKA_...` (which wins); the connection
names keep the spelling Kafka tools share. `KAFKA_SASL_PASSWORD` can also be a file in
`OCRFLUX_SECRETS_DIR` (see `ocrflux.settings_base`).
"""

from __future__ import annotations

import logging
from dataclasses import astuple, dataclass
from typing import Any, Literal

from pydantic import Field, SecretStr

from deploy.common import BrokerError
from deploy.kafka_broker import DEFAULT_MESSAGE_MAX_BYTES, resolve_bootstrap
from ocrflux.settings_base import OcrfluxSettings, prefixed

__all__ = [
    "KafkaClientError",
    "KafkaNotConfigured",
    "KafkaSettings",
    "LibrdkafkaConfig",
    "TopicNames",
]

#: Where librdkafka's own log lines go (instead of raw lines on stderr) for our clients.
LIBRDKAFKA_LOGGER = logging.getLogger("streams.kafka.librdkafka")

#: A confluent-kafka (librdkafka) client configuration.
LibrdkafkaConfig = dict[str, str | int | float | bool]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

# A fetch response carries a little framing around the largest record it may hold.
_FETCH_OVERHEAD_BYTES = 64 * 1024
_RECONNECT_BACKOFF_MS = 20


class KafkaClientError(RuntimeError):
    """Kafka refused or did not answer a request of ours (delivery, metadata, topic creation)."""


class KafkaNotConfigured(BrokerError):
    """No Kafka address anywhere: neither `KAFKA_BOOTSTRAP_SERVERS` nor a local broker."""


def bootstrap_from_environment() -> str:
    """`KAFKA_BOOTSTRAP_SERVERS`, else the local broker's address, else `KafkaNotConfigured`
    saying how to name or start a broker."""
    try:
        return resolve_bootstrap()
    except BrokerError as exc:
        raise KafkaNotConfigured(str(exc)) from exc


class KafkaSettings(OcrfluxSettings):
    """How to reach Kafka and which topics to use (frozen; built once at a process's entry)."""

    kafka_bootstrap_servers: str = Field(
        default_factory=bootstrap_from_environment,
        description="Unset: the local broker's state file, else a BrokerError saying what to do",
    )
    kafka_security_protocol: SecurityProtocol | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None
    ocrflux_topic_prefix: str = Field(default="ocrflux", min_length=1)
    kafka_message_max_bytes: int = Field(
        default=DEFAULT_MESSAGE_MAX_BYTES,
        ge=1024,
        validation_alias=prefixed("kafka_message_max_bytes"),
    )
    kafka_topic_partitions: int = Field(
        default=4, ge=1, validation_alias=prefixed("kafka_topic_partitions")
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, validation_alias=prefixed("kafka_replication_factor")
    )
    kafka_delivery_timeout_s: float = Field(
        default=60.0,
        ge=1.0,
        validation_alias=prefixed("kafka_delivery_timeout_s"),
        description="How long a producer tries to deliver a record before reporting it failed "
        "(workers then send it again; the input record stays uncommitted meanwhile)",
    )

    @property
    def topics(self) -> TopicNames:
        return TopicNames.from_prefix(self.ocrflux_topic_prefix)

    def as_librdkafka_dict(self) -> LibrdkafkaConfig:
        """Connection properties for any confluent-kafka client (producer, consumer, admin)."""
        config: LibrdkafkaConfig = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            # librdkafka 2.x drops its bootstrap connection once the broker's id is known and
            # waits half this backoff (default 100 ms) before it connects again, so every new
            # client's first request took 55-60 ms on loopback, 15-20 with 20 ms. Later
            # reconnects back off exponentially from here to `reconnect.backoff.max.ms` (10 s).
            "reconnect.backoff.ms": _RECONNECT_BACKOFF_MS,
        }
        optional = {
            "security.protocol": self.kafka_security_protocol,
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            ),
            "ssl.ca.location": self.kafka_ssl_ca_location,
        }
        config.update({key: value for key, value in optional.items() if value is not None})
        return config

    def aiokafka_options(self) -> dict[str, Any]:
        """The same connection as `as_librdkafka_dict`, in aiokafka's keyword arguments."""
        options: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.kafka_bootstrap_servers.split(",")],
        }
        protocol = self.kafka_security_protocol
        if protocol:
            options["security_protocol"] = protocol
            if protocol in ("SSL", "SASL_SSL"):
                from aiokafka.helpers import create_ssl_context

                options["ssl_context"] = create_ssl_context(cafile=self.kafka_ssl_ca_location)
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            password = self.kafka_sasl_password
            options["sasl_plain_password"] = password.get_secret_value() if password else None
        return options

    def producer_config(self, **overrides: Any) -> LibrdkafkaConfig:
        """An idempotent, acks=all producer whose largest record is `kafka_message_max_bytes`."""
        return {
            **self.as_librdkafka_dict(),
            "enable.idempotence": True,
            "acks": "all",
            "message.max.bytes": self.kafka_message_max_bytes,
            "delivery.timeout.ms": int(self.kafka_delivery_timeout_s * 1000),
            **overrides,
        }

    def consumer_config(self, group_id: str, **overrides: Any) -> LibrdkafkaConfig:
        """A consumer that can fetch the largest record and commits nothing by itself."""
        most = self.kafka_message_max_bytes
        return {
            **self.as_librdkafka_dict(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "message.max.bytes": most,
            "fetch.max.bytes": most,
            "max.partition.fetch.bytes": most,
            "receive.message.max.bytes": most + _FETCH_OVERHEAD_BYTES,
            **overrides,
        }


@dataclass(frozen=True)
class TopicNames:
    """The stream processor's topics for one prefix."""

    documents: str
    pages: str
    page_results: str
    results: str
    progress: str
    dlq: str
    assembly_state: str  # the assembler's changelog: co-partitioned with page_results
    cancels: str  # compacted; every worker reads all of it (streams/cancels.py)

    @classmethod
    def from_prefix(cls, prefix: str = "ocrflux") -> TopicNames:
        return cls(
            documents=f"{prefix}.documents",
            pages=f"{prefix}.pages",
            page_results=f"{prefix}.page-results",
            results=f"{prefix}.results",
            progress=f"{prefix}.progress",
            dlq=f"{prefix}.dlq",
            assembly_state=f"{prefix}.assembly-state",
            cancels=f"{prefix}.cancels",
        )

    def all(self) -> tuple[str, ...]:
        return astuple(self)
