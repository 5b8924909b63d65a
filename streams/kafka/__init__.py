"""The Kafka layer every role and edge shares: connection settings that configure both clients
(confluent-kafka and aiokafka), topic names, and topic administration."""

from streams.kafka.settings import (
    LIBRDKAFKA_LOGGER,
    KafkaClientError,
    KafkaNotConfigured,
    KafkaSettings,
    LibrdkafkaConfig,
    TopicNames,
    bootstrap_from_environment,
)
from streams.kafka.topics import ensure_topics, partition_counts, topic_configs

__all__ = [
    "LIBRDKAFKA_LOGGER",
    "KafkaClientError",
    "KafkaNotConfigured",
    "KafkaSettings",
    "LibrdkafkaConfig",
    "TopicNames",
    "bootstrap_from_environment",
    "ensure_topics",
    "partition_counts",
    "topic_configs",
]
