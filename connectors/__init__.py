"""The edges of the system: the Kafka client SDK used by the CLI and by users, the HTTP gateway,
the blob store behind the claim-check pattern, and the object-storage source and sink.

Connectors move bytes and records in and out; they use `ocrflux/` and `schemas/`. Must not live
here: any part of the OCRFlux algorithm (prompts, parsing, merging), or faust agents.
"""

from connectors.client import OcrfluxClient
from connectors.kafka_config import KafkaClientError, KafkaSettings, TopicNames, ensure_topics

__all__ = ["KafkaClientError", "KafkaSettings", "OcrfluxClient", "TopicNames", "ensure_topics"]
