"""Topic administration: create the prefix's topics with their configuration, count partitions.

Administration runs once at a process's start (or from the CLI), so it uses confluent-kafka's
blocking AdminClient everywhere; asyncio processes call it before their loop's work begins.
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.kafka.settings import LIBRDKAFKA_LOGGER, KafkaClientError, KafkaSettings

__all__ = ["ensure_topics", "partition_counts", "topic_configs"]


def topic_configs(settings: KafkaSettings) -> dict[str, dict[str, str]]:
    """Per-topic configuration: every topic takes the largest record; results are compacted
    (the latest result per doc_id is the answer), and so are the assembler's changelog and the
    cancels (the latest cancel per doc_id)."""
    topics = settings.topics
    base = {"max.message.bytes": str(settings.kafka_message_max_bytes)}
    configs = {name: dict(base) for name in topics.all()}
    configs[topics.results]["cleanup.policy"] = "compact"
    configs[topics.assembly_state]["cleanup.policy"] = "compact"
    configs[topics.cancels]["cleanup.policy"] = "compact"
    return configs


def ensure_topics(
    settings: KafkaSettings,
    *,
    partitions: int | Mapping[str, int] | None = None,
    replication_factor: int | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the prefix's topics that do not exist yet; returns the names it created.

    `partitions` is one count for every topic or a count per topic name (others take
    `settings.kafka_topic_partitions`). Existing topics are left as they are.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    default_partitions = settings.kafka_topic_partitions
    per_topic = partitions if isinstance(partitions, Mapping) else {}
    if isinstance(partitions, int):
        default_partitions = partitions
    replicas = replication_factor or settings.kafka_replication_factor
    admin = AdminClient({**settings.as_librdkafka_dict(), "logger": LIBRDKAFKA_LOGGER})  # type: ignore[dict-item]
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise KafkaClientError(
            f"cannot list topics at {settings.kafka_bootstrap_servers}: {exc}"
        ) from exc
    wanted = [
        NewTopic(name, per_topic.get(name, default_partitions), replicas, config=config)
        for name, config in topic_configs(settings).items()
        if name not in existing
    ]
    if not wanted:
        return []
    created: list[str] = []
    futures = admin.create_topics(wanted, operation_timeout=timeout_s, request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another process created it meanwhile
            raise KafkaClientError(f"cannot create topic {name}: {exc}") from exc
        except TimeoutError as exc:
            raise KafkaClientError(f"creating topic {name} timed out after {timeout_s}s") from exc
        created.append(name)
    return sorted(created)


def partition_counts(
    settings: KafkaSettings, topics: list[str], timeout_s: float = 30.0
) -> dict[str, int]:
    """How many partitions each of `topics` has (0 for a topic that does not exist)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.as_librdkafka_dict())
    try:
        metadata = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise KafkaClientError(
            f"cannot list topics at {settings.kafka_bootstrap_servers}: {exc}"
        ) from exc
    return {t: len(metadata[t].partitions) if t in metadata else 0 for t in topics}
