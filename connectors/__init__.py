"""The edges of the system: the Kafka client SDK and the CLI's stream commands, the HTTP gateway
(`api/`) and the object-storage source and sink (`s3/`).

Connectors move bytes and records in and out. They may import `streams/` (the Kafka layer, blob
stores, runtime), `ocrflux/`, `schemas/` and `deploy/`; nothing below imports them. Must not
live here: any part of the OCRFlux algorithm (prompts, parsing, merging), or stream roles.
"""

from connectors.client import OcrfluxClient
from streams.kafka import KafkaClientError, KafkaSettings, TopicNames, ensure_topics

__all__ = ["KafkaClientError", "KafkaSettings", "OcrfluxClient", "TopicNames", "ensure_topics"]
