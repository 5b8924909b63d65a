"""Kafka settings from the environment, topic names, and topic creation on the real broker."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from deploy.kafka_broker import DEFAULT_MESSAGE_MAX_BYTES, BrokerError
from streams.kafka import KafkaSettings, TopicNames, ensure_topics


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "ocr")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("KAFKA_SSL_CA_LOCATION", "/etc/ca.pem")
    monkeypatch.setenv("OCRFLUX_TOPIC_PREFIX", "acme")
    settings = KafkaSettings()
    assert settings.as_librdkafka_dict() == {
        "bootstrap.servers": "k1:9092,k2:9092",
        "reconnect.backoff.ms": 20,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "ocr",
        "sasl.password": "hunter2",
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert "hunter2" not in repr(settings)
    assert settings.topics.results == "acme.results"
    assert settings.kafka_message_max_bytes == DEFAULT_MESSAGE_MAX_BYTES
    with pytest.raises(Exception, match="frozen"):
        settings.ocrflux_topic_prefix = "other"  # type: ignore[misc]


def test_plain_settings_carry_no_security_keys() -> None:
    settings = KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1")
    # A new client reconnects after its bootstrap connection in 10 ms, not librdkafka's 50.
    assert settings.as_librdkafka_dict() == {
        "bootstrap.servers": "127.0.0.1:1",
        "reconnect.backoff.ms": 20,
    }
    producer = settings.producer_config()
    assert producer["enable.idempotence"] is True
    assert producer["acks"] == "all"
    consumer = settings.consumer_config("g")
    assert consumer["enable.auto.commit"] is False
    assert consumer["receive.message.max.bytes"] > consumer["fetch.max.bytes"]


def test_no_broker_anywhere_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("OCRFLUX_HOME", str(tmp_path))  # no broker state file there
    with pytest.raises(BrokerError, match=r"KAFKA_BOOTSTRAP_SERVERS.*ocrflux broker start"):
        KafkaSettings()


def test_topic_names() -> None:
    names = TopicNames.from_prefix("p")
    assert names.all() == (
        "p.documents",
        "p.pages",
        "p.page-results",
        "p.results",
        "p.progress",
        "p.dlq",
        "p.assembly-state",
        "p.cancels",
    )


@pytest.mark.kafka
def test_ensure_topics_creates_missing_topics_once(kafka_bootstrap: str, unique_name: str) -> None:
    settings = KafkaSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        ocrflux_topic_prefix=unique_name,
        kafka_message_max_bytes=4 * 1024 * 1024,
    )
    topics = settings.topics
    created = ensure_topics(settings, partitions={topics.pages: 3}, timeout_s=30)
    assert created == sorted(topics.all())
    assert ensure_topics(settings) == []

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    assert len(metadata[topics.pages].partitions) == 3
    assert len(metadata[topics.documents].partitions) == settings.kafka_topic_partitions
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics.all()]
    configs = {
        resource.name: future.result(timeout=30)
        for resource, future in admin.describe_configs(resources).items()
    }
    assert configs[topics.results]["cleanup.policy"].value == "compact"
    assert configs[topics.assembly_state]["cleanup.policy"].value == "compact"
    assert configs[topics.cancels]["cleanup.policy"].value == "compact"
    assert configs[topics.documents]["cleanup.policy"].value == "delete"
    for name in topics.all():
        assert configs[name]["max.message.bytes"].value == str(4 * 1024 * 1024)


PROTOCOLS = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
MECHANISMS = [None, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_both_clients_get_the_same_security_settings(protocol: str, mechanism: str | None) -> None:
    """confluent-kafka (SDK, CLI) and aiokafka (workers, API, connectors) are configured from one
    settings object: for every protocol and SASL mechanism they connect the same way."""
    ca_file = certifi.where()
    settings = KafkaSettings(
        kafka_bootstrap_servers="k1:9092, k2:9093",
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="ocr" if mechanism else None,
        kafka_sasl_password="hunter2" if mechanism else None,
        kafka_ssl_ca_location=ca_file,
    )
    librdkafka = settings.as_librdkafka_dict()
    aiokafka = settings.aiokafka_options()

    assert aiokafka["bootstrap_servers"] == ["k1:9092", "k2:9093"]
    assert librdkafka["bootstrap.servers"] == "k1:9092, k2:9093"
    assert librdkafka["security.protocol"] == aiokafka["security_protocol"] == protocol
    uses_tls = protocol in ("SSL", "SASL_SSL")
    assert isinstance(aiokafka.get("ssl_context"), ssl.SSLContext) is uses_tls
    if uses_tls:  # the context trusts exactly the CA bundle librdkafka is given
        assert librdkafka["ssl.ca.location"] == ca_file
        assert aiokafka["ssl_context"].cert_store_stats()["x509_ca"] == len(
            ssl.create_default_context(cafile=ca_file).get_ca_certs()
        )
    assert librdkafka.get("sasl.mechanism") == aiokafka.get("sasl_mechanism") == mechanism
    assert librdkafka.get("sasl.username") == aiokafka.get("sasl_plain_username")
    assert librdkafka.get("sasl.password") == aiokafka.get("sasl_plain_password")
